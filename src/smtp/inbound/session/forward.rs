//! Forwarding on the MX listener: mail from outside whose recipients lead to addresses outside the hosted
//! domains (alias targets), or back out through one of our SRS addresses (a bounce of mail we forwarded).
//!
//! What the next hop must see so that it accepts the copy, and what must never leave:
//!
//! - **Held back**: mail this server's checks filed as spam (Junk), or that fails DMARC, is not forwarded
//!   (its local recipients still get it; with none, the client gets `550 5.7.1`): forwarding it would launder
//!   it under this server's reputation. Bounces returning through SRS are exempt (the hash proves they answer
//!   mail we sent on).
//! - **SRS**: a sender outside the hosted domains becomes an SRS address of the forwarding domain (the domain
//!   of the first RCPT that led outside), so the next hop's SPF check of MAIL FROM evaluates our domain, which
//!   authorizes this server ([`crate::srs`]; `[server.forwarding] srs`, per domain too). When neither SPF nor
//!   DKIM passed aligned with the From domain, the address is a silent one: a bounce to it is refused, never
//!   sent on to a sender who may be forged (no backscatter).
//! - **DKIM and ARC**: the copy is signed with the forwarding domain's active key and gets an ARC set
//!   ([`crate::dkim::arc`]) carrying this server's SPF, DKIM, DMARC and ARC results, so receivers that honour
//!   ARC can trust them although forwarding broke SPF alignment. Without an active key the copy goes out
//!   unsigned and unsealed, and the log says so.

use std::sync::Arc;

use mail_auth::AuthenticatedMessage;

use super::Session;
use crate::dkim::KeyPair;
use crate::model::{DomainName, Selector};
use crate::smtp::inbound::checks::spf::Spf;
use crate::smtp::inbound::command::Reply;
use crate::smtp::inbound::recipients;
use crate::smtp::metrics::RejectReason;
use crate::srs::Bounces;

/// What the forwarding stage looks at.
pub(super) struct Inputs<'a> {
    /// The envelope sender (`""` for `<>`).
    pub sender: &'a str,
    /// Alias targets outside the hosted domains.
    pub remote: &'a [String],
    /// Where SRS addresses led back to.
    pub returned: &'a [String],
    /// The forwarding domains, in RCPT order.
    pub forwarders: &'a [String],
    /// The message as received (no trace fields of ours).
    pub message: &'a [u8],
    /// The message with our `Authentication-Results:` and `Received:` in front: what is sent on.
    pub stamped: &'a Arc<Vec<u8>>,
    /// This server's checks filed it as spam, for this reason.
    pub junk: Option<RejectReason>,
    /// What the client said in HELO/EHLO.
    pub helo: &'a str,
    /// The session's SPF evaluation, when SPF was checked.
    pub spf: Option<&'a Spf>,
}

/// Copies to send on.
pub(super) struct Forward {
    /// MAIL FROM of the copies (SRS, or the original sender).
    pub sender: String,
    /// Their recipients.
    pub recipients: Vec<String>,
    /// The copy: signed and sealed when the forwarding domain has a key.
    pub body: Arc<Vec<u8>>,
    /// `d=... s=... a=...` of our signature, for `mailctl queue show`.
    pub dkim: Option<String>,
}

/// What happens to the recipients outside.
pub(super) enum Decision {
    /// There are none.
    Nothing,
    /// Queue these copies.
    Send(Forward),
    /// None may be sent on: why, and the metrics label.
    HeldBack(String, RejectReason),
}

/// What the store says about one forwarding.
struct Known {
    /// The sender's domain is hosted here (no SRS for our own senders).
    sender_hosted: bool,
    /// The SRS secrets.
    srs: crate::srs::Srs,
    /// The forwarding domain's active DKIM key.
    key: Option<(Selector, KeyPair)>,
}

impl Session {
    /// Decides on, rewrites, signs and seals the copies for the recipients outside. `Err` is the reply to give
    /// when the database cannot be asked (the client retries).
    pub(super) async fn forward(&self, input: Inputs<'_>) -> Result<Decision, Reply> {
        if input.remote.is_empty() && input.returned.is_empty() {
            return Ok(Decision::Nothing);
        }
        let ip = self.peer.ip();
        let parsed = AuthenticatedMessage::parse(input.message);
        let auth = match &parsed {
            Some(m) => Some(
                self.server
                    .checks
                    .forwarding(m, input.spf, ip, input.helo, input.sender)
                    .await,
            ),
            None => None,
        };
        let mut recipients: Vec<String> = input.returned.to_vec();
        let mut held = None;
        if !input.remote.is_empty() {
            if let Some(reason) = input.junk {
                held = Some(("this server's checks judged it spam".to_string(), reason));
            } else if auth.as_ref().is_some_and(|a| a.dmarc_failed()) {
                held = Some(("it fails DMARC".to_string(), RejectReason::Dmarc));
            } else {
                recipients.extend(input.remote.iter().cloned());
            }
        }
        if let Some((why, _)) = &held {
            tracing::info!(target: "mailctl::smtp", to = %input.remote.join(","), "not forwarded: {why}");
        }
        if recipients.is_empty() {
            let (why, reason) =
                held.unwrap_or_else(|| ("nothing to forward".into(), RejectReason::Dmarc));
            return Ok(Decision::HeldBack(why, reason));
        }
        let hostname = self.server.settings.hostname.as_str();
        let domain = input
            .forwarders
            .first()
            .and_then(|d| d.parse::<DomainName>().ok())
            .unwrap_or_else(|| DomainName::from_stored(hostname));
        let known = self.forwarding_facts(input.sender, &domain).await?;
        let authenticated = auth.as_ref().is_some_and(|a| a.authenticated());

        let sender = if input.sender.is_empty()
            || known.sender_hosted
            || !self.server.settings.forwarding.srs_for(domain.as_str())
        {
            input.sender.to_string()
        } else {
            let bounces = if authenticated {
                Bounces::Return
            } else {
                Bounces::Never
            };
            let today = crate::srs::day(chrono::Utc::now().timestamp().max(0) as u64);
            match known
                .srs
                .forward(input.sender, domain.as_str(), bounces, today)
            {
                Some(srs) => srs,
                None => {
                    tracing::warn!(target: "mailctl::smtp", domain = %domain,
                        "no SRS secret: forwarding with the original sender (mailctl srs rotate)");
                    input.sender.to_string()
                }
            }
        };

        let (mut body, mut dkim) = (input.stamped.clone(), None);
        match &known.key {
            None => tracing::warn!(target: "mailctl::smtp", domain = %domain,
                "no active DKIM key: forwarding unsigned and without ARC (mailctl dkim generate)"),
            Some((selector, key)) => {
                match crate::dkim::sign::sign(&body, &domain, selector, key) {
                    Ok(signed) => {
                        body = Arc::new(signed);
                        dkim = Some(format!(
                            "d={domain} s={selector} a={}",
                            key.algorithm.signing_name()
                        ));
                    }
                    Err(e) => tracing::warn!(target: "mailctl::smtp", domain = %domain, error = %e,
                        "forwarding unsigned"),
                }
                if let Some(a) = &auth {
                    let results = a.results(hostname, ip, input.helo, input.sender);
                    match crate::dkim::arc::seal(&body, &domain, selector, key, &results, &a.arc) {
                        Ok(set) => {
                            let mut sealed = set;
                            sealed.extend_from_slice(&body);
                            body = Arc::new(sealed);
                        }
                        Err(e) => {
                            tracing::warn!(target: "mailctl::smtp", domain = %domain, error = %e,
                            "forwarding without an ARC set")
                        }
                    }
                }
            }
        }
        tracing::info!(target: "mailctl::smtp", from = %input.sender, sender = %sender, to = %recipients.join(","),
            authenticated, arc = auth.as_ref().map_or("none", |a| a.chain()), dkim = dkim.as_deref().unwrap_or("none"),
            "forwarding");
        Ok(Decision::Send(Forward {
            sender,
            recipients,
            body,
            dkim,
        }))
    }

    /// Reads, in one transaction: whether the sender's domain is hosted, the SRS secrets, and the forwarding
    /// domain's active DKIM key.
    async fn forwarding_facts(&self, sender: &str, domain: &DomainName) -> Result<Known, Reply> {
        let sender_domain = sender
            .rsplit_once('@')
            .and_then(|(_, d)| d.parse::<DomainName>().ok());
        let read = async {
            let mut tx = self.server.store.begin().await?;
            let sender_hosted = match &sender_domain {
                Some(d) => recipients::is_hosted(&mut tx, d).await?,
                None => false,
            };
            let srs = crate::provision::srs::load(&mut tx).await?;
            let key = tx
                .dkim_keys(Some(domain.as_str()))
                .await?
                .into_iter()
                .find(|k| k.state == "active");
            tx.rollback().await?;
            Ok::<_, crate::error::Error>((sender_hosted, srs, key))
        };
        let (sender_hosted, srs, key) = self
            .lookup("forwarding", read)
            .await
            .map_err(|()| super::temporary_failure())?;
        let key = key.and_then(|k| {
            let selector = k.selector.parse::<Selector>().ok()?;
            match crate::dkim::keys::from_stored(&k.private_key) {
                Ok(pair) => Some((selector, pair)),
                Err(e) => {
                    tracing::error!(target: "mailctl::smtp", domain = %domain, error = %e,
                        "the stored DKIM key is unusable");
                    None
                }
            }
        });
        Ok(Known {
            sender_hosted,
            srs,
            key,
        })
    }
}
