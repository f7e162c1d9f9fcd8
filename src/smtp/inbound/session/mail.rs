//! MAIL FROM: opens a transaction. On submission listeners the client must be logged in and may only use a
//! sender address it owns; on the MX listener the connect-time checks (iprev, DNSBL) and SPF run here.

use super::{Session, Transaction, sender_text, temporary_failure};
use crate::model::Address;
use crate::smtp::inbound::command::{MailParams, Reply, ReversePath};
use crate::smtp::inbound::recipients::{self, SendAs};
use crate::smtp::metrics::RejectReason;
use crate::smtp::queue::QueueId;
use crate::smtp::settings::ListenerKind;

impl Session {
    pub(super) async fn mail(&mut self, from: ReversePath, params: MailParams) -> Reply {
        if let Some(refusal) = self.mail_refusal(&from, &params) {
            return refusal;
        }
        let sender = sender_text(&from);
        let mut sending = None;
        if let Some(login) = self.login.clone() {
            match self.sender_check(&login, &from).await {
                Ok(SendAs::Allowed) => {}
                Ok(SendAs::LoginOff) => {
                    self.server.metrics.rejected(RejectReason::Disabled);
                    tracing::info!(target: "mailctl::smtp", client = %self.peer.ip(), login = %login,
                        "MAIL refused: SMTP is turned off for the login");
                    return Reply::new(
                        550,
                        Some((5, 7, 1)),
                        format!("Sending is turned off for {login}; ask the postmaster"),
                    );
                }
                Ok(SendAs::NotOwned) => {
                    self.server.metrics.rejected(RejectReason::SenderMismatch);
                    tracing::info!(target: "mailctl::smtp", client = %self.peer.ip(), login = %login,
                        sender = %sender.escape_debug(), "sender not owned by login");
                    return Reply::new(
                        553,
                        Some((5, 7, 1)),
                        format!("Sender address <{sender}> not owned by user {login}"),
                    );
                }
                Err(()) => {
                    self.server.metrics.rejected(RejectReason::Tempfail);
                    return temporary_failure();
                }
            }
            match self.sending_limits(&login).await {
                Ok(limits) => sending = limits,
                Err(reply) => return reply,
            }
        }
        let mut spf = None;
        if self.kind == ListenerKind::Smtp && self.login.is_none() {
            let ip = self.peer.ip();
            if self.connect_checks.is_none() {
                self.connect_checks = Some(self.server.checks.connect(ip).await);
            }
            let conn = self.connect_checks.clone().unwrap_or_default();
            if let Some(reject) = &conn.reject {
                self.server
                    .metrics
                    .rejected(conn.reason.unwrap_or(RejectReason::Dnsbl));
                return reject.clone();
            }
            let helo = self.helo.as_ref().map(|h| h.0.clone()).unwrap_or_default();
            let result = self
                .server
                .checks
                .mail_from(&conn, ip, &helo, &sender)
                .await;
            if let Some(reject) = &result.reject {
                self.server.metrics.rejected(RejectReason::Spf);
                tracing::info!(target: "mailctl::smtp", client = %ip, sender = %sender.escape_debug(),
                    reply = %reject.text(), "MAIL refused by SPF");
                return reject.clone();
            }
            spf = Some(result);
        }
        self.txn = Some(Transaction {
            id: QueueId::generate(chrono::Utc::now()),
            sender,
            params,
            spf,
            recipients: Vec::new(),
            targets: Vec::new(),
            remote: Vec::new(),
            forwarders: Vec::new(),
            returned: Vec::new(),
            quotas: Vec::new(),
            refused: Vec::new(),
            via: Vec::new(),
            led_to: Vec::new(),
            overshoot: 0,
            sending,
        });
        Reply::new(250, Some((2, 1, 0)), "Ok")
    }

    /// The refusals that need no lookup: sequence, authentication, parameters, size.
    fn mail_refusal(&self, from: &ReversePath, params: &MailParams) -> Option<Reply> {
        if self.helo.is_none() {
            return Some(Reply::new(503, Some((5, 5, 1)), "Send EHLO/HELO first"));
        }
        if self.txn.is_some() {
            return Some(Reply::new(503, Some((5, 5, 1)), "Nested MAIL command"));
        }
        if self.kind.offers_auth() && self.login.is_none() {
            self.server.metrics.rejected(RejectReason::AuthRequired);
            return Some(Reply::new(530, Some((5, 7, 0)), "Authentication required"));
        }
        if let Err(e) = params.check_supported(&[]) {
            return Some(e.reply());
        }
        if let ReversePath::Path(path) = from
            && path.utf8
            && !params.smtputf8
        {
            return Some(Reply::new(
                553,
                Some((5, 6, 7)),
                "Non-ASCII address requires the SMTPUTF8 parameter",
            ));
        }
        let max = self.server.settings.limits.max_message_size;
        if params.size.is_some_and(|size| size > max) {
            self.server.metrics.rejected(RejectReason::Size);
            return Some(Reply::new(
                552,
                Some((5, 3, 4)),
                "Message size exceeds fixed maximum message size",
            ));
        }
        None
    }

    /// Whether the logged-in user may send as `from`: the null sender needs no ownership, but a login switched
    /// off (by the admin, or the breaker after this session logged in) may send nothing.
    async fn sender_check(&self, login: &Address, from: &ReversePath) -> Result<SendAs, ()> {
        let sender = match from {
            ReversePath::Null => None,
            ReversePath::Path(path) => match path.to_string().parse::<Address>() {
                Ok(sender) => Some(sender),
                Err(_) => return Ok(SendAs::NotOwned),
            },
        };
        let check = async {
            let mut tx = self.server.store.begin().await?;
            let decided =
                recipients::sender_check(&mut tx, login, sender.as_ref(), Some('+')).await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(decided)
        };
        self.lookup("MAIL", check).await
    }
}
