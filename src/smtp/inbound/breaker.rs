//! The sending breaker ([`crate::provision::limits`]): what happens once a mailbox looks stolen. The caller
//! has already turned SMTP off for it in the database (`smtp_active = 0`, in the transaction that found the
//! threshold reached, so only one caller ever gets here per trip); this holds the mailbox's queued mail, tells
//! the postmaster of its domain once, logs one `ERROR` line and counts the trip.
//!
//! Two things trip it: attempts to send at ten times the hourly limit (the submission session), and
//! recipients refused as unknown by other servers beyond the daily limit (the queue manager, through the
//! daemon): a spammer's address list is full of dead addresses.

use chrono::Utc;

use super::Context;
use crate::smtp::queue::{QueueError, QueueId};

/// Holds `login`'s queued mail, tells the postmaster why (`why` completes "alice@example.org ..."), logs and
/// counts.
pub async fn tripped(server: &Context, login: &str, why: &str) {
    server.metrics.breaker_tripped();
    tracing::error!(target: "mailctl::smtp", login,
        "breaker: {login} {why}: SMTP turned off, its queued mail held \
         (mailctl mailbox update {login} --smtp true; mailctl queue release)");
    let queue = server.queue.clone();
    let sender = login.to_string();
    let held = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let mut held = 0usize;
        for q in queue.list(now)? {
            if q.entry.sender.eq_ignore_ascii_case(&sender)
                && !q.entry.hold
                && queue.hold(&q.entry.id).is_ok()
            {
                held += 1;
            }
        }
        Ok::<_, QueueError>(held)
    })
    .await;
    let held = match held {
        Ok(Ok(n)) => n,
        _ => {
            tracing::error!(target: "mailctl::smtp", login, "breaker: the queued mail could not be held");
            0
        }
    };
    let domain = login.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let notice = notice(&server.settings.hostname, login, domain, why, held);
    let queued = server
        .queue_generated(format!("postmaster@{domain}"), notice.into_bytes(), None)
        .await;
    if let Err(e) = queued {
        tracing::error!(target: "mailctl::smtp", login, error = %e,
            "breaker: the postmaster notice could not be queued");
    }
}

/// The postmaster's notice of a tripped breaker.
fn notice(hostname: &str, login: &str, domain: &str, why: &str, held: usize) -> String {
    let date = Utc::now().to_rfc2822();
    let id = QueueId::generate(Utc::now());
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <postmaster@{domain}>\r\n\
         Subject: Sending turned off for {login}\r\n\
         Date: {date}\r\n\
         Message-ID: <breaker.{id}@{hostname}>\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         {login} {why}.\r\n\
         That is what a stolen password looks like, so {hostname} turned SMTP off for this mailbox and held\r\n\
         the {held} message(s) it still had in the queue.\r\n\
         \r\n\
         When the password is changed and the account is safe again:\r\n\
         \r\n\
         \x20 mailctl mailbox update {login} --smtp true\r\n\
         \x20 mailctl queue list          (then mailctl queue release ID, or queue delete ID)\r\n"
    )
}
