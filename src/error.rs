//! The one error type of mailctl.
//!
//! Every failure that reaches the user passes through [`Error`]: each variant knows its exit code and renders as
//! one line naming the thing that was wrong. Lower layers attach context (which domain, which file, which database)
//! when they create the error, so `main` only prints `error: {err}` and exits with [`Error::exit_code`].

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes shared by every command (documented in README and the man page).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The operation failed: not found, already exists, limit reached, refused.
    pub const FAILED: i32 = 1;
    /// Usage error: bad flags or arguments, invalid names, bad configuration.
    pub const USAGE: i32 = 2;
    /// The database or another backend could not be reached.
    pub const UNREACHABLE: i32 = 3;
}

/// Everything that can go wrong, grouped by what the user should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line, an input value or the configuration is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A named object does not exist (exit 1).
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// What kind of object (`domain`, `mailbox`, ...).
        kind: &'static str,
        /// Its name as the user gave it.
        name: String,
    },
    /// A named object exists already (exit 1).
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        /// What kind of object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The operation was refused by a rule: a limit, a loop, a dependency (exit 1).
    #[error("{0}")]
    Refused(String),
    /// A file could not be read or written (exit 1).
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done (`cannot read`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached at all (exit 3).
    #[error("cannot reach the database {url}: {reason}")]
    Unreachable {
        /// The database URL, password redacted.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// A query failed; `context` says what mailctl was doing (exit 3 when the connection was lost, else 1).
    #[error("database error while {context}: {source}")]
    Database {
        /// What mailctl was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// DNS could not answer (timeout, SERVFAIL, no nameserver reachable): the answer is unknown (exit 3).
    #[error("DNS lookup of {name} failed: {reason}")]
    Dns {
        /// The name looked up.
        name: String,
        /// Why there was no answer.
        reason: String,
    },
    /// Bad arguments to `audit`: exit 3 (UNKNOWN), as monitoring plugins do, so a typo never reads as a finding.
    #[error("{0}")]
    AuditUsage(String),
    /// A server mailctl talks to (an SMTP server under benchmark, an LMTP server) could not be reached (exit 3).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why the connection failed.
        reason: String,
    },
    /// Several input records were wrong (CSV import); each message names its line (exit 1).
    #[error("{summary}")]
    Rows {
        /// The `error:` line.
        summary: String,
        /// One line per failed record, printed before it.
        rows: Vec<String>,
    },
    /// Several things are wrong with the setup of `serve` (its start-up checks); each problem is one line
    /// naming its setting (exit 2, or 3 when every problem is an unreachable backend).
    #[error("{} problems with the setup of serve (listed above)", problems.len())]
    Setup {
        /// One line per problem, printed before the `error:` line.
        problems: Vec<String>,
        /// Every problem is a backend that cannot be reached (exit 3 rather than 2).
        unreachable_only: bool,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Unreachable { .. }
            | Error::Dns { .. }
            | Error::AuditUsage(_)
            | Error::Connect { .. } => exit::UNREACHABLE,
            Error::Database { source, .. } if is_connection_error(source) => exit::UNREACHABLE,
            Error::Setup {
                unreachable_only: true,
                ..
            } => exit::UNREACHABLE,
            Error::Setup { .. } => exit::USAGE,
            _ => exit::FAILED,
        }
    }

    /// Wraps a query error with what mailctl was doing when it happened.
    pub fn db(context: impl Into<String>, source: sqlx::Error) -> Self {
        Error::Database {
            context: context.into(),
            source,
        }
    }

    /// The lines printed before the `error:` line: one per failed row or setup problem.
    pub fn details(&self) -> &[String] {
        match self {
            Error::Rows { rows, .. } => rows,
            Error::Setup { problems, .. } => problems,
            _ => &[],
        }
    }

    /// Shorthand for a usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// Shorthand for a refused operation.
    pub fn refused(msg: impl Into<String>) -> Self {
        Error::Refused(msg.into())
    }

    /// Shorthand for a missing object.
    pub fn not_found(kind: &'static str, name: impl ToString) -> Self {
        Error::NotFound {
            kind,
            name: name.to_string(),
        }
    }

    /// Shorthand for a duplicate object.
    pub fn exists(kind: &'static str, name: impl ToString) -> Self {
        Error::AlreadyExists {
            kind,
            name: name.to_string(),
        }
    }
}

/// True when a query failed because the server went away rather than because of the query.
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    )
}
