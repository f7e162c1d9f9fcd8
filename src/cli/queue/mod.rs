//! `mailctl queue list|show|flush|hold|release|delete|stats`: inspect and manage the outbound queue.
//!
//! Works while `serve` runs: reads need no lock, every change takes the entry lock and respects delivery
//! leases (a message being delivered cannot be deleted), and a running `serve` picks up flushed or released
//! messages at its next poll. With `backend = "database"` it works from any node sharing the database.
//! Read-only commands never create a spool directory: a missing one is an empty queue.

mod bounce;
mod show;
mod view;

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use clap::Subcommand;
use serde_json::json;

use super::Ctx;
use crate::error::{Error, Result};
use crate::smtp::queue::{self, Admin, Envelope, QueueError, QueueId, Stats};
use crate::smtp::settings::QueueBackend;

use bounce::Bounce;

/// Queue subcommands.
#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state
    List,
    /// Show one message: envelope, DKIM, per-recipient status, lease, and its headers
    Show {
        /// Queue id (24 hex digits, as `queue list` prints it)
        id: String,
        /// Print the whole message instead of its header block
        #[arg(long)]
        body: bool,
    },
    /// Make one message, or all, due now (retry now); a running serve picks them up at its next poll
    Flush {
        /// Queue id [default: every queued message]
        id: Option<String>,
    },
    /// Hold a message: it is not delivered until released (a delivery already running finishes)
    Hold {
        /// Queue id
        id: String,
    },
    /// Release a held message
    Release {
        /// Queue id
        id: String,
    },
    /// Delete a message from the queue (refused while a running serve is delivering it)
    Delete {
        /// Queue id
        id: String,
        /// Send the sender a bounce naming every recipient not yet delivered
        #[arg(long)]
        bounce: bool,
    },
    /// Counts: messages by state, recipients by status, bytes, age of the oldest message
    Stats,
}

/// The configured queue, or the spool directory that does not exist yet.
enum Opened {
    Queue(Arc<dyn Admin>),
    Missing(PathBuf),
}

impl Opened {
    /// The queue, or for a missing spool the error saying that `id` cannot be in it.
    fn require(self, id: &QueueId) -> Result<Arc<dyn Admin>> {
        match self {
            Opened::Queue(q) => Ok(q),
            Opened::Missing(dir) => Err(Error::refused(format!(
                "queue entry {id} does not exist: no queue at {}",
                dir.display()
            ))),
        }
    }
}

/// Opens the configured queue without ever creating a spool directory.
async fn open(ctx: &Ctx) -> Result<Opened> {
    let settings =
        crate::smtp::settings::queue(&ctx.config.server.queue, &ctx.config.database_url)?;
    let store = match &settings.backend {
        QueueBackend::Spool(dir) => {
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::refused(format!(
                        "queue spool {} is not a directory",
                        dir.display()
                    )));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Ok(Opened::Missing(dir.clone()));
                }
                Err(source) => {
                    return Err(Error::File {
                        action: "cannot read queue spool",
                        path: dir.clone(),
                        source,
                    });
                }
            }
            None
        }
        QueueBackend::Database => Some(ctx.store().await?),
    };
    let queue = blocking(move || queue::open(&settings, store)).await?;
    Ok(Opened::Queue(queue))
}

/// The configured queue, for a command that puts mail into it (`reports send`). A spool that does not exist
/// yet is refused: `serve` creates it, owned by the user it runs as.
pub(crate) async fn open_existing(ctx: &Ctx) -> Result<Arc<dyn Admin>> {
    match open(ctx).await? {
        Opened::Queue(q) => Ok(q),
        Opened::Missing(dir) => Err(Error::refused(format!(
            "no queue at {}: start mailctl serve once to create it",
            dir.display()
        ))),
    }
}

/// Runs blocking queue work (file or database I/O) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::refused(format!("queue operation failed: {e}")))?
}

/// A queue error as the user sees it; file trouble keeps the queue's own wording (`cannot read ...`).
fn user_error(err: QueueError) -> Error {
    match err {
        QueueError::Io { .. } => Error::Refused(err.to_string()),
        other => other.into(),
    }
}

/// Parses a queue id given on the command line (a malformed one is a usage error, exit 2).
fn parse_id(text: &str) -> Result<QueueId> {
    QueueId::parse(text).map_err(Error::from)
}

/// Runs a queue subcommand.
pub async fn run(ctx: &Ctx, cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::List => list(ctx).await,
        QueueCmd::Show { id, body } => show(ctx, &id, body).await,
        QueueCmd::Flush { id } => flush(ctx, id.as_deref()).await,
        QueueCmd::Hold { id } => hold(ctx, &id, true).await,
        QueueCmd::Release { id } => hold(ctx, &id, false).await,
        QueueCmd::Delete { id, bounce } => delete(ctx, &id, bounce).await,
        QueueCmd::Stats => stats(ctx).await,
    }
}

async fn list(ctx: &Ctx) -> Result<()> {
    let now = Utc::now();
    let queued = match open(ctx).await? {
        Opened::Missing(dir) => {
            ctx.out
                .note(format!("no queue at {}: the queue is empty", dir.display()));
            Vec::new()
        }
        Opened::Queue(q) => {
            let queued = blocking(move || q.list(now).map_err(user_error)).await?;
            if queued.is_empty() {
                ctx.out.note("queue is empty");
            }
            queued
        }
    };
    let rows = queued.iter().map(|q| view::Row::new(q, now)).collect();
    ctx.out.emit(&view::List(rows));
    Ok(())
}

async fn show(ctx: &Ctx, id: &str, whole: bool) -> Result<()> {
    let id = parse_id(id)?;
    let q = open(ctx).await?.require(&id)?;
    let now = Utc::now();
    let (queued, body) = blocking(move || {
        let queued = q.show(&id, now).map_err(user_error)?;
        let body = q.body(&id).map_err(user_error)?;
        Ok((queued, body))
    })
    .await?;
    let route = route(ctx, &queued.entry.sender).await?;
    ctx.out
        .emit(&show::Show::new(&queued, &body, route, whole, now));
    Ok(())
}

/// The way the daemon sends mail from `sender` now: its domain's relay route in the database, else
/// `[server.outbound.relay]`, else the recipients' MX hosts (as `serve` decides per delivery attempt).
async fn route(ctx: &Ctx, sender: &str) -> Result<show::Route> {
    let domain = sender
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty());
    let row = match domain {
        Some(domain) => {
            let store = ctx.store().await?;
            let mut tx = store.begin().await?;
            let row = tx.relay_route(&domain).await?;
            tx.rollback().await?;
            row
        }
        None => None,
    };
    let configured = ctx.config.server.outbound.relay.as_ref();
    let relayed = crate::smtp::outbound::relay::relayed(row.as_ref(), configured)?;
    Ok(match (relayed, &row) {
        (None, _) => show::Route::Mx,
        (Some(r), Some(row)) => show::Route::Relay {
            url: r.url,
            source: format!("relay route of {}", row.domain),
        },
        (Some(r), None) => show::Route::Relay {
            url: r.url,
            source: "[server.outbound.relay]".into(),
        },
    })
}

async fn flush(ctx: &Ctx, id: Option<&str>) -> Result<()> {
    let id = id.map(parse_id).transpose()?;
    let q = match (open(ctx).await?, &id) {
        (Opened::Missing(dir), None) => {
            ctx.out.note(format!("no queue at {}", dir.display()));
            ctx.out.done(&json!({ "flushed": 0 }), "nothing to flush");
            return Ok(());
        }
        (opened, Some(id)) => opened.require(id)?,
        (Opened::Queue(q), None) => q,
    };
    let now = Utc::now();
    let one = id.clone();
    let (changed, held) = blocking(move || {
        // For one id, look first: a missing entry is an error, and a held one needs a word.
        let held = match &one {
            Some(id) => q.show(id, now).map_err(user_error)?.entry.hold,
            None => false,
        };
        let changed = q.flush(one.as_ref(), now).map_err(user_error)?;
        Ok((changed, held))
    })
    .await?;
    let message = match &id {
        Some(id) if changed == 0 => format!("queue entry {id} is already due"),
        Some(id) => {
            format!("queue entry {id} is due now; a running serve tries it at its next poll")
        }
        None if changed == 0 => "nothing to flush: no queued message is waiting for a retry".into(),
        None => format!(
            "{changed} message{} due now; a running serve tries them at its next poll",
            if changed == 1 { " is" } else { "s are" }
        ),
    };
    if let (Some(id), true) = (&id, held) {
        ctx.out.note(format!(
            "queue entry {id} is held: it is not delivered until `mailctl queue release {id}`"
        ));
    }
    ctx.out.done(&json!({ "flushed": changed }), message);
    Ok(())
}

async fn hold(ctx: &Ctx, id: &str, hold: bool) -> Result<()> {
    let id = parse_id(id)?;
    let q = open(ctx).await?.require(&id)?;
    let one = id.clone();
    let (was, entry) = blocking(move || {
        let was = q.show(&one, Utc::now()).map_err(user_error)?.entry.hold;
        let entry = if hold {
            q.hold(&one)
        } else {
            q.release_held(&one)
        };
        Ok((was, entry.map_err(user_error)?))
    })
    .await?;
    let message = match (hold, was) {
        (true, true) => format!("queue entry {id} was already held"),
        (true, false) => format!("held queue entry {id}: it is not delivered until released"),
        (false, false) => format!("queue entry {id} was not held"),
        (false, true) => format!("released queue entry {id}: a running serve delivers it when due"),
    };
    ctx.out
        .done(&json!({ "id": entry.id, "held": entry.hold }), message);
    Ok(())
}

async fn delete(ctx: &Ctx, id: &str, bounce: bool) -> Result<()> {
    let id = parse_id(id)?;
    let q = open(ctx).await?.require(&id)?;
    let now = Utc::now();
    if !bounce {
        let one = id.clone();
        blocking(move || q.delete(&one, now).map_err(user_error)).await?;
        ctx.out.done(
            &json!({ "id": id, "deleted": true, "bounce": null }),
            format!("deleted queue entry {id}"),
        );
        return Ok(());
    }
    // The body is read before deleting (it never changes); the bounce is built from the record as deleted,
    // so recipients delivered meanwhile are not reported.
    let one = id.clone();
    let queue = q.clone();
    let (entry, body) = blocking(move || {
        let body = queue.body(&one).map_err(user_error)?;
        let entry = queue.delete(&one, now).map_err(user_error)?;
        Ok((entry, body))
    })
    .await?;
    match bounce::build(&entry, &body, &ctx.config) {
        Bounce::Skip(why) => {
            ctx.out.note(format!("no bounce sent: {why}"));
            ctx.out.done(
                &json!({ "id": id, "deleted": true, "bounce": null }),
                format!("deleted queue entry {id}"),
            );
        }
        Bounce::Send(dsn, recipients) => {
            let to = dsn.recipient.clone();
            let envelope = Envelope {
                sender: crate::smtp::outbound::dsn::Dsn::ENVELOPE_SENDER.to_string(),
                recipients: vec![dsn.recipient],
                dkim: None,
            };
            let queued = blocking(move || {
                q.enqueue(&envelope, &dsn.message, Utc::now())
                    .map_err(user_error)
            })
            .await
            .map_err(|e| {
                Error::refused(format!(
                    "deleted queue entry {id}, but could not queue the bounce to {to}: {e}"
                ))
            })?;
            ctx.out.done(
                &json!({
                    "id": id,
                    "deleted": true,
                    "bounce": { "id": queued, "to": to, "recipients": recipients },
                }),
                format!(
                    "deleted queue entry {id}; queued bounce {queued} to {to} for {} recipient{}",
                    recipients.len(),
                    if recipients.len() == 1 { "" } else { "s" }
                ),
            );
        }
    }
    Ok(())
}

async fn stats(ctx: &Ctx) -> Result<()> {
    let stats = match open(ctx).await? {
        Opened::Missing(dir) => {
            ctx.out
                .note(format!("no queue at {}: the queue is empty", dir.display()));
            Stats::default()
        }
        Opened::Queue(q) => blocking(move || q.stats(Utc::now()).map_err(user_error)).await?,
    };
    ctx.out.emit(&view::StatsView(stats));
    Ok(())
}
