//! The SMTP daemon (`mailctl serve`), built bottom-up: the protocol pieces that need no socket come first, each
//! testable on its own (and fuzzable later): [`command`] parses command lines, [`data`] reads a DATA stream
//! safely, [`deliver`] puts messages on stable storage. The listener and session that tie them together follow.

pub mod checks;
pub mod command;
pub mod data;
pub mod deliver;
pub mod dsn;
pub mod metrics;
pub mod outbound;
pub mod queue;
pub mod recipients;
pub mod server;
pub mod session;
pub mod settings;
