//! The SMTP daemon (`mailctl serve`), in two halves and what connects them:
//!
//! - [`inbound`]: mail arriving (listeners, sessions, command and DATA parsing, recipient resolution, checks);
//! - [`queue`]: the one outbound queue engine (spool or database storage, leases, the delivery manager);
//! - [`outbound`]: mail leaving (MX routing, MTA-STS, the SMTP client, DSNs);
//! - [`deliver`]: putting messages in mailboxes (Maildir with group commit, LMTP);
//! - [`daemon`]: start-up (checks, privileges, binding), wiring the halves, signals and the drain;
//! - [`settings`] (the validated `[server]` config), [`metrics`] (counters and the endpoint), [`shutdown`]
//!   (the stop signal every long-running task holds).

pub mod cached;
pub mod daemon;
pub mod deliver;
pub mod http;
pub mod https;
pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod queue;
pub mod settings;
pub mod shutdown;
