//! Milters: the content filters admins already run next to Postfix (rspamd, OpenDKIM, OpenDMARC, ClamAV)
//! plugged into `serve` through Sendmail's milter protocol (version 6), configured as `[[server.milters]]`.
//!
//! After DATA, once the message passed serve's own checks, each milter of the listener gets the whole
//! conversation about it on a connection of its own ([`conversation`]), in the order configured, each seeing
//! the message as the ones before it changed it: so a signing milter (OpenDKIM) listed last signs what is
//! delivered. The first milter that refuses or discards decides; otherwise the changes (header fields, body,
//! envelope sender, quarantine as Junk filing) apply. A milter that is down, too slow or speaks nonsense gets
//! its `default_action`: `tempfail` (the client retries) or `accept` (as if it were not configured).
//!
//! Calls are bounded per milter (`concurrency`, a semaphore) and every wait (a permit, the connection, each
//! reply) by `timeout`, so a stuck filter costs the sessions that wait for it that long and no more.

mod conversation;
mod message;
mod protocol;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::smtp::inbound::command::Reply;
use crate::smtp::metrics::Metrics;
use crate::smtp::settings::ListenerKind;
use conversation::Answer;
use message::Message;

/// Where a milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `inet:IP:PORT`.
    Inet(SocketAddr),
    /// `unix:/path/to/socket`.
    Unix(PathBuf),
}

/// What to do with a message when a milter cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// `451 4.7.1`: the client retries later.
    Tempfail,
    /// Take the message as if the milter were not configured.
    Accept,
}

/// One `[[server.milters]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterSettings {
    /// Where it listens, as configured (`inet:127.0.0.1:11332`): its name in logs.
    pub name: String,
    /// Where it listens.
    pub address: Address,
    /// The listeners whose mail it sees.
    pub listeners: Vec<ListenerKind>,
    /// The longest wait for a permit, the connection or any reply.
    pub timeout: Duration,
    /// When it cannot be asked.
    pub default_action: DefaultAction,
    /// Conversations with it at once.
    pub concurrency: usize,
}

/// Validates `[[server.milters]]`.
pub fn settings(sections: &[crate::config::MilterSection]) -> Result<Vec<MilterSettings>> {
    sections
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let key = |k: &str| format!("server.milters[{i}].{k}");
            let address = match m.address.split_once(':') {
                Some(("inet", rest)) => Address::Inet(rest.parse().map_err(|_| {
                    Error::usage(format!(
                        "{}: '{rest}' is not IP:PORT (e.g. inet:127.0.0.1:11332, inet:[::1]:8891)",
                        key("address")
                    ))
                })?),
                Some(("unix", path)) if path.starts_with('/') => Address::Unix(path.into()),
                _ => {
                    return Err(Error::usage(format!(
                        "{}: '{}' is neither inet:IP:PORT nor unix:/absolute/path",
                        key("address"),
                        m.address
                    )));
                }
            };
            let listeners = match &m.listeners {
                None => vec![ListenerKind::Smtp],
                Some(names) => names
                    .iter()
                    .map(|n| {
                        ListenerKind::ALL
                            .into_iter()
                            .find(|k| k.name() == n)
                            .ok_or_else(|| {
                                Error::usage(format!(
                                    "{}: '{n}' is not smtp, submission or submissions",
                                    key("listeners")
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>>>()?,
            };
            let timeout = m.timeout.unwrap_or(30);
            if !(1..=600).contains(&timeout) {
                return Err(Error::usage(format!(
                    "{}: must be 1 to 600 seconds",
                    key("timeout")
                )));
            }
            let default_action = match m.default_action.as_deref() {
                None | Some("tempfail") => DefaultAction::Tempfail,
                Some("accept") => DefaultAction::Accept,
                Some(other) => {
                    return Err(Error::usage(format!(
                        "{}: '{other}' is neither tempfail nor accept",
                        key("default_action")
                    )));
                }
            };
            let concurrency = m.concurrency.unwrap_or(64);
            if concurrency == 0 {
                return Err(Error::usage(format!(
                    "{}: must be at least 1",
                    key("concurrency")
                )));
            }
            Ok(MilterSettings {
                name: m.address.clone(),
                address,
                listeners,
                timeout: Duration::from_secs(timeout),
                default_action,
                concurrency,
            })
        })
        .collect()
}

/// What the milters are told about the session and the envelope (as connection data and Postfix's macros).
#[derive(Debug)]
pub struct Client<'a> {
    /// The message id (macro `i`).
    pub id: &'a str,
    /// This server's name (`j`).
    pub hostname: &'a str,
    /// The listener (`{daemon_name}`).
    pub listener: ListenerKind,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The client's forward-confirmed PTR name, when it has one (`{client_name}`).
    pub ptr: Option<&'a str>,
    /// Its HELO/EHLO name.
    pub helo: &'a str,
    /// `TLSv1.3:TLS13_AES_128_GCM_SHA256` when TLS is up (`{tls_version}`, `{cipher}`).
    pub tls: Option<&'a str>,
    /// The logged-in user (`{auth_authen}`).
    pub login: Option<&'a str>,
    /// The envelope sender (`""` for `<>`).
    pub sender: &'a str,
    /// The accepted recipients.
    pub recipients: &'a [String],
    /// The largest message a milter may make of it (`max_message_size`).
    pub max_size: usize,
}

/// What the milters made of a message.
#[derive(Debug)]
pub enum Verdict {
    /// Take it.
    Accept {
        /// The message as changed, when a milter changed it.
        message: Option<Vec<u8>>,
        /// A new envelope sender.
        sender: Option<String>,
        /// File it as junk: which milter said so and why.
        quarantine: Option<String>,
    },
    /// Refuse it with this reply; `by` names the milter, or the failure and the default action.
    Refuse {
        /// The reply that ends the transaction.
        reply: Reply,
        /// The milter, and when it could not be asked, why.
        by: String,
    },
    /// Take it and drop it: which milter said so.
    Discard(String),
}

/// The configured milters, each with its permits.
#[derive(Debug, Default)]
pub struct Milters {
    list: Vec<(MilterSettings, Arc<Semaphore>)>,
}

impl Milters {
    /// The milters of `settings`, each with `concurrency` permits.
    pub fn new(settings: &[MilterSettings]) -> Milters {
        Milters {
            list: settings
                .iter()
                .map(|s| (s.clone(), Arc::new(Semaphore::new(s.concurrency))))
                .collect(),
        }
    }

    /// Some milter sees mail of this listener.
    pub fn any_for(&self, kind: ListenerKind) -> bool {
        self.list.iter().any(|(s, _)| s.listeners.contains(&kind))
    }

    /// Runs `message` through the milters of the client's listener, in order.
    pub async fn run(&self, client: &Client<'_>, message: &[u8], metrics: &Metrics) -> Verdict {
        let mut current = Message::parse(message);
        let mut changed = false;
        let mut sender = None;
        let mut quarantine = None;
        for (settings, permits) in &self.list {
            if !settings.listeners.contains(&client.listener) {
                continue;
            }
            // A later milter is told the envelope sender an earlier one set.
            let told = Client {
                sender: sender.as_deref().unwrap_or(client.sender),
                ..*client
            };
            let answer = match ask(settings, permits, &told, &current).await {
                Ok(answer) => answer,
                Err(why) => {
                    metrics.milter_failed();
                    tracing::warn!(target: "mailctl::smtp", id = client.id, milter = %settings.name,
                        action = ?settings.default_action, "milter unavailable: {why}");
                    match settings.default_action {
                        DefaultAction::Accept => continue,
                        DefaultAction::Tempfail => {
                            return Verdict::Refuse {
                                reply: Reply::new(
                                    451,
                                    Some((4, 7, 1)),
                                    "Content filter unavailable, try again later",
                                ),
                                by: format!("{} (unavailable: {why})", settings.name),
                            };
                        }
                    }
                }
            };
            match answer {
                Answer::Refuse(reply) => {
                    return Verdict::Refuse {
                        reply,
                        by: settings.name.clone(),
                    };
                }
                Answer::Discard => return Verdict::Discard(settings.name.clone()),
                Answer::Accept(changes) => {
                    for edit in changes.edits {
                        match current.apply(edit, changes.leading_space) {
                            Ok(()) => changed = true,
                            Err(why) => {
                                tracing::warn!(target: "mailctl::smtp", id = client.id,
                                    milter = %settings.name, "a milter's change is refused: {why}");
                            }
                        }
                    }
                    if changes.sender.is_some() {
                        sender = changes.sender;
                    }
                    if let Some(reason) = changes.quarantine {
                        quarantine = Some(format!("{}: {reason}", settings.name));
                    }
                }
            }
        }
        Verdict::Accept {
            message: changed.then(|| current.to_bytes()),
            sender,
            quarantine,
        }
    }
}

/// One milter's answer, within its permits and timeout.
async fn ask(
    settings: &MilterSettings,
    permits: &Semaphore,
    client: &Client<'_>,
    message: &Message,
) -> std::result::Result<Answer, String> {
    let _permit = tokio::time::timeout(settings.timeout, permits.acquire())
        .await
        .map_err(|_| {
            format!(
                "all {} conversations busy for {} s",
                settings.concurrency,
                settings.timeout.as_secs()
            )
        })?
        .map_err(|_| "shutting down".to_string())?;
    conversation::converse(settings, client, message).await
}
