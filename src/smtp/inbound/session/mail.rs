//! MAIL FROM: opens a transaction. On submission listeners the client must be logged in and may only use a
//! sender address it owns; on the MX listener the connect-time checks (iprev, DNSBL) and SPF run here.

use super::{Session, Transaction, sender_text, temporary_failure};
use crate::model::Address;
use crate::smtp::inbound::command::{MailParams, Reply, ReversePath};
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
            match self.owns_sender(&login, &from).await {
                // The null sender needs no ownership check, but a login switched off may not use it either.
                Ok(true) if !matches!(from, ReversePath::Null) => {}
                Ok(true) | Ok(false) if self.smtp_turned_off(&login).await => {
                    self.server.metrics.rejected(RejectReason::Disabled);
                    tracing::info!(target: "mailctl::smtp", client = %self.peer.ip(), login = %login,
                        "MAIL refused: SMTP is turned off for the login");
                    return Reply::new(
                        550,
                        Some((5, 7, 1)),
                        format!("Sending is turned off for {login}; ask the postmaster"),
                    );
                }
                Ok(false) => {
                    self.server.metrics.rejected(RejectReason::SenderMismatch);
                    tracing::info!(target: "mailctl::smtp", client = %self.peer.ip(), login = %login,
                        sender = %sender.escape_debug(), "sender not owned by login");
                    return Reply::new(
                        553,
                        Some((5, 7, 1)),
                        format!("Sender address <{sender}> not owned by user {login}"),
                    );
                }
                // The null sender of a login that may still send.
                Ok(true) => {}
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

    /// Whether the login's mailbox is gone, inactive or has SMTP turned off now (a session that logged in
    /// before the admin or the sending breaker switched it off); a database error counts as no.
    async fn smtp_turned_off(&self, login: &Address) -> bool {
        let check = async {
            let mut tx = self.server.store.begin().await?;
            let row = tx.mailbox(&login.to_string()).await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(!row.is_some_and(|m| m.active && m.smtp_active))
        };
        self.lookup("MAIL", check).await.unwrap_or(false)
    }

    /// Whether the logged-in user may send as `from`. The null sender is allowed (notifications).
    async fn owns_sender(&self, login: &Address, from: &ReversePath) -> Result<bool, ()> {
        let ReversePath::Path(path) = from else {
            return Ok(true);
        };
        let Ok(sender) = path.to_string().parse::<Address>() else {
            return Ok(false);
        };
        let check = async {
            let mut tx = self.server.store.begin().await?;
            let owned =
                crate::smtp::inbound::recipients::may_send_as(&mut tx, login, &sender, Some('+'))
                    .await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(owned)
        };
        self.lookup("MAIL", check).await
    }
}
