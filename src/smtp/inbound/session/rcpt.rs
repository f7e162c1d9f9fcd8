//! RCPT TO: who the message is for. Hosted recipients are resolved through aliases, alias domains and
//! catch-alls at this point, so an unknown user is refused now (550) instead of bounced later (backscatter);
//! anything outside the hosted domains is a relay request, refused unless the client is logged in.

use super::{Session, temporary_failure};
use crate::smtp::deliver::Target;
use crate::smtp::inbound::command::{ForwardPath, RcptParams, Reply};
use crate::smtp::inbound::recipients::{self, Recipient, ResolveLimits};
use crate::smtp::metrics::RejectReason;

impl Session {
    /// RCPT TO, within the sending limits of a logged-in user.
    pub(super) async fn rcpt(&mut self, to: ForwardPath, params: RcptParams) -> Reply {
        if self.txn.is_none() {
            return Reply::new(503, Some((5, 5, 1)), "Need MAIL command");
        }
        let new = match self.recipient_within_limits(&to).await {
            Ok(new) => new,
            Err(reply) => return reply,
        };
        let reply = self.resolve_rcpt(to, params).await;
        if reply.is_positive()
            && let (Some(new), Some(sending)) =
                (new, self.txn.as_mut().and_then(|t| t.sending.as_mut()))
        {
            sending.note_new(new);
        }
        reply
    }

    async fn resolve_rcpt(&mut self, to: ForwardPath, params: RcptParams) -> Reply {
        let max = self.server.settings.limits.max_recipients;
        let Some(txn) = self.txn.as_mut() else {
            return Reply::new(503, Some((5, 5, 1)), "Need MAIL command");
        };
        if txn.recipients.len() >= max {
            txn.overshoot += 1;
            // The first RECIPIENT_OVERSHOOT of these are what a client that honours 452 sends anyway; past
            // that they count towards MAX_ERRORS.
            self.forgiven = txn.overshoot <= super::RECIPIENT_OVERSHOOT;
            self.server
                .metrics
                .rejected(RejectReason::TooManyRecipients);
            return Reply::new(452, Some((4, 5, 3)), "Too many recipients");
        }
        let Some(txn) = &self.txn else {
            return temporary_failure();
        };
        if let Err(e) = params.check_supported(&[]) {
            return e.reply();
        }
        let (local, domain, shown) = match &to {
            ForwardPath::Postmaster => (
                "postmaster".to_string(),
                self.server.settings.hostname.clone(),
                "Postmaster".to_string(),
            ),
            ForwardPath::Path(path) => {
                if path.utf8 && !txn.params.smtputf8 {
                    return Reply::new(
                        553,
                        Some((5, 6, 7)),
                        "Non-ASCII address requires the SMTPUTF8 parameter",
                    );
                }
                (
                    path.local.clone(),
                    path.domain.to_string(),
                    path.to_string(),
                )
            }
        };
        let resolved = async {
            let mut tx = self.server.store.begin().await?;
            let r = recipients::resolve_parts(&mut tx, &local, &domain, ResolveLimits::default())
                .await?;
            tx.rollback().await?;
            Ok::<_, crate::error::Error>(r)
        };
        let Ok(resolved) = self.lookup("RCPT", resolved).await else {
            return self.refuse(&shown, RejectReason::Tempfail, temporary_failure());
        };
        match resolved {
            Recipient::Local {
                mailboxes,
                external,
                via,
            } => {
                let size = txn.params.size.unwrap_or(0);
                let mut quotas = Vec::with_capacity(mailboxes.len());
                for m in &mailboxes {
                    let quota = u64::try_from(m.quota).unwrap_or(0);
                    let used = if quota > 0 {
                        self.server.deliverer.usage(&m.maildir).await.unwrap_or(0)
                    } else {
                        0
                    };
                    if quota > 0 && (used >= quota || used.saturating_add(size) > quota) {
                        return self.refuse(
                            &shown,
                            RejectReason::Quota,
                            Reply::new(552, Some((5, 2, 2)), format!("<{shown}>: Mailbox full")),
                        );
                    }
                    quotas.push((quota, used));
                }
                let Some(txn) = self.txn.as_mut() else {
                    return temporary_failure();
                };
                for (m, quota) in mailboxes.into_iter().zip(quotas) {
                    txn.led_to.push((m.username.clone(), shown.clone()));
                    if !txn.targets.iter().any(|t| t.mailbox == m.username) {
                        txn.targets.push(Target {
                            mailbox: m.username,
                            maildir: m.maildir,
                            junk: false,
                        });
                        txn.quotas.push(quota);
                    }
                }
                if !external.is_empty() && !txn.forwarders.contains(&domain) {
                    txn.forwarders.push(domain.clone());
                }
                for address in external {
                    let address = address.to_string();
                    if !txn.remote.contains(&address) {
                        txn.remote.push(address);
                    }
                }
                txn.via.extend(via);
                txn.recipients.push(shown);
                Reply::new(250, Some((2, 1, 5)), "Ok")
            }
            Recipient::Returned(original) => {
                let Some(txn) = self.txn.as_mut() else {
                    return temporary_failure();
                };
                txn.via.push(format!("{shown} -> {original} (SRS)"));
                if !txn.forwarders.contains(&domain) {
                    txn.forwarders.push(domain.clone());
                }
                if !txn.returned.contains(&original) {
                    txn.returned.push(original);
                }
                txn.recipients.push(shown);
                Reply::new(250, Some((2, 1, 5)), "Ok")
            }
            Recipient::BadSrs(why) => self.refuse(
                &shown,
                RejectReason::UnknownUser,
                Reply::new(550, Some((5, 1, 1)), format!("<{shown}>: {why}")),
            ),
            Recipient::Unknown => self.refuse(
                &shown,
                RejectReason::UnknownUser,
                Reply::new(
                    550,
                    Some((5, 1, 1)),
                    format!("<{shown}>: Recipient address rejected: User unknown"),
                ),
            ),
            Recipient::Disabled => self.refuse(
                &shown,
                RejectReason::Disabled,
                Reply::new(550, Some((5, 2, 1)), format!("<{shown}>: Mailbox disabled")),
            ),
            Recipient::NotLocal if self.login.is_some() => self.accept_remote(&to, shown),
            Recipient::NotLocal => self.refuse(
                &shown,
                RejectReason::Relay,
                Reply::new(
                    554,
                    Some((5, 7, 1)),
                    format!("<{shown}>: Relay access denied"),
                ),
            ),
        }
    }

    /// A logged-in user's recipient in another domain: queued for delivery to its MX. Address literals
    /// (`user@[192.0.2.1]`) are refused: mail goes where DNS says, never to an address the client picks.
    fn accept_remote(&mut self, to: &ForwardPath, shown: String) -> Reply {
        let ForwardPath::Path(path) = to else {
            return self.refuse(
                &shown,
                RejectReason::Relay,
                Reply::new(550, Some((5, 1, 1)), "Unknown recipient"),
            );
        };
        if path.domain_name().is_none() {
            return self.refuse(
                &shown,
                RejectReason::Relay,
                Reply::new(
                    553,
                    Some((5, 1, 3)),
                    format!("<{shown}>: address literals are not accepted as recipients"),
                ),
            );
        }
        let Some(txn) = self.txn.as_mut() else {
            return temporary_failure();
        };
        if !txn.remote.contains(&shown) {
            txn.remote.push(shown.clone());
        }
        txn.recipients.push(shown);
        Reply::new(250, Some((2, 1, 5)), "Ok")
    }

    /// Records a refused RCPT for the log line and the metrics, and returns the reply.
    fn refuse(&mut self, shown: &str, reason: RejectReason, reply: Reply) -> Reply {
        self.server.metrics.rejected(reason);
        if let Some(txn) = self.txn.as_mut() {
            txn.refused.push(format!("{shown} ({})", reply.code()));
        }
        reply
    }
}
