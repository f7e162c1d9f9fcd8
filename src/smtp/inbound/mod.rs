//! The inbound half of `mailctl serve`: mail arriving over SMTP, on the MX listener from other servers and on
//! the submission listeners from logged-in users.
//!
//! Built bottom-up, the protocol pieces that need no socket first, each testable (and fuzzed) on its own:
//! - [`command`] parses command lines, AUTH decoders and replies; [`data`] reads a DATA stream safely
//!   (smuggling-proof, size-limited);
//! - [`recipients`] resolves RCPT addresses (aliases, catch-alls, alias domains) and sender ownership;
//!   [`checks`] runs SPF, DKIM, DMARC, iprev and DNSBL with per-check actions and writes
//!   `Authentication-Results`;
//! - [`vacation`] sends the out-of-office replies (RFC 3834) after delivery;
//! - [`milter`] is the client of the content filters (`[[server.milters]]`) run after DATA;
//! - [`session`] is the state machine of one connection, one file per stage; it takes the shared
//!   [`context::Context`], the [`limits`] and the stop signal, and never the server;
//! - [`server`] is the accept loop of a listener: admission, implicit TLS (the listeners' certificate is
//!   `crate::tls::server`'s), one task per session.
//!
//! Arrows go one way: `server` -> `session` -> (`command`, `data`, `recipients`, `checks`, `context`,
//! `limits`); messages leave through local delivery (`crate::smtp::deliver`) or the queue
//! (`crate::smtp::queue`).

pub mod breaker;
pub mod checks;
pub mod command;
pub mod context;
pub mod data;
pub mod greylist;
pub mod limits;
pub mod milter;
pub mod recipients;
pub mod send_counter;
pub mod server;
pub mod session;
pub mod vacation;

pub use context::Context;
