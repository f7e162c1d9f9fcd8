//! The outbound half of `mailctl serve`: everything needed to hand a queued message to the recipient
//! domain's mail servers, built bottom-up like the inbound side.
//!
//! - [`mx`] turns a recipient domain into an ordered list of hosts and addresses to try (or a verdict: null MX,
//!   permanent or temporary failure), through the one [`crate::dns::Resolver`].
//! - [`client`]: [`Outbound`], the SMTP client that delivers one message to the recipients of one domain
//!   and reports per recipient; [`session`] is one SMTP session with one address (lettre's
//!   `AsyncSmtpConnection`), [`reply`] the envelope commands and outcome texts.
//! - [`mta_sts`]: the recipient domain's MTA-STS policy, cached (whom TLS trusts is `crate::tls::Trust`).
//! - `tls_reports`: each session's TLS outcome, recorded for the recipient domain's TLS reports (RFC 8460).
//!
//! The queue and its retry schedule (`crate::smtp::queue`) call [`Outbound`] through the queue's `Transport`
//! trait.

pub mod client;
pub mod dsn;
pub mod mta_sts;
pub mod mx;
pub mod pool;
pub mod relay;
pub mod reply;
pub mod session;
mod tls_reports;

pub use client::{DATA_TIMEOUT, MAX_SESSIONS, Outbound};
pub use mx::{MAX_MX_HOSTS, MxHost, Route, RouteError, RouteOptions, route, route_with_rng};
