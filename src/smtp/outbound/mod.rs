//! The outbound half of `mailctl serve` (issue 6): everything needed to hand a queued message to the recipient
//! domain's mail servers, built bottom-up like the inbound side. [`mx`] turns a recipient domain into an ordered
//! list of hosts and addresses to try (or a verdict: null MX, permanent or temporary failure), through the one
//! [`crate::dns::Resolver`]. The SMTP client, queue and retry schedule build on it.

pub mod mx;

pub use mx::{MAX_MX_HOSTS, MxHost, Route, RouteError, RouteOptions, route, route_with_rng};
