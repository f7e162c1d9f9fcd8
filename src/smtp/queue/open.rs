//! Opening the configured queue backend, so `serve` and `mailctl queue` hold the same queue (`Arc<dyn Queue>`, each using its role)
//! whichever backend `[server.queue] backend` names.

use std::sync::Arc;

use super::{DatabaseOptions, DatabaseQueue, Queue, QueueError, SpoolOptions, SpoolQueue};
use crate::error::{Error, Result};
use crate::smtp::settings::{QueueBackend, QueueSettings};
use crate::store::Store;

/// Maps a failure to open `what`: file or database trouble names what could not be opened (exit 1); other
/// queue errors keep their own mapping.
fn opening(what: String) -> impl FnOnce(QueueError) -> Error {
    move |err| match err {
        QueueError::Io { .. } => Error::Refused(format!("cannot open {what}: {err}")),
        other => other.into(),
    }
}

/// Opens the queue that `settings` names: the spool directory (created if missing, mode 0700, with crash
/// recovery of what dead processes left behind) or the shared database queue, which needs `store`.
///
/// Blocks (directory creation, fsyncs, the sweep; database calls): async callers run it in `spawn_blocking`
/// on the runtime the store was opened on (the database queue keeps that runtime's handle). Callers that
/// must not create a spool (read-only `mailctl queue` commands) check that the directory exists first.
pub fn open(settings: &QueueSettings, store: Option<Store>) -> Result<Arc<dyn Queue>> {
    match &settings.backend {
        QueueBackend::Spool(dir) => {
            let options = SpoolOptions {
                backoff: settings.backoff,
            };
            let spool = SpoolQueue::open(dir.clone(), options)
                .map_err(opening(format!("the queue spool {}", dir.display())))?;
            Ok(Arc::new(spool))
        }
        QueueBackend::Database => {
            let store = store.ok_or_else(|| {
                Error::usage(
                    "server.queue.backend = \"database\" needs the database to be opened first",
                )
            })?;
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                Error::usage("the database queue must be opened from within the async runtime")
            })?;
            let options = DatabaseOptions {
                backoff: settings.backoff,
            };
            let queue = DatabaseQueue::open(store, runtime, options)
                .map_err(opening("the database queue".into()))?;
            Ok(Arc::new(queue))
        }
    }
}
