//! One milter's conversation about one message, on a connection of its own: negotiation, then the session's
//! and the envelope's events (CONNECT, HELO, MAIL, each RCPT, DATA), the header fields, the body, and the end
//! of the message, where the milter says what becomes of it and what to change.
//!
//! The whole conversation runs after DATA (as Stalwart runs its milters), so a milter that would refuse at
//! CONNECT, MAIL or RCPT refuses the message with its reply instead; a refused RCPT refuses the whole message,
//! never silently drops one recipient of a message the client was told is taken.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::message::{Edit, Message};
use super::protocol::{self, Negotiated, action, cmd, reply, step};
use super::{Address, Client, MilterSettings};
use crate::smtp::inbound::command::Reply;

/// What the milter decided.
#[derive(Debug)]
pub enum Answer {
    /// Take the message, with these changes.
    Accept(Changes),
    /// Refuse it with this reply (4xx or 5xx).
    Refuse(Reply),
    /// Take it and throw it away.
    Discard,
}

/// The changes a milter asked for at the end of the message.
#[derive(Debug, Default)]
pub struct Changes {
    /// Header and body edits, in the order they came.
    pub edits: Vec<Edit>,
    /// Field values are sent and taken with their leading blanks (`SMFIP_HDR_LEADSPC`).
    pub leading_space: bool,
    /// A new envelope sender.
    pub sender: Option<String>,
    /// File the message as junk, for this reason.
    pub quarantine: Option<String>,
}

/// Talks to the milter at `settings.address` about `message`; `Err` says what went wrong with the milter (down,
/// too slow, or speaking something else), for its `default_action`.
pub async fn converse(
    settings: &MilterSettings,
    client: &Client<'_>,
    message: &Message,
) -> Result<Answer, String> {
    let t = settings.timeout;
    match &settings.address {
        Address::Inet(addr) => {
            let stream = tokio::time::timeout(t, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("no connection within {} s", t.as_secs()))?
                .map_err(|e| format!("cannot connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            talk(Conn::new(stream, t), client, message).await
        }
        Address::Unix(path) => {
            let stream = tokio::time::timeout(t, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| format!("no connection within {} s", t.as_secs()))?
                .map_err(|e| format!("cannot connect: {e}"))?;
            talk(Conn::new(stream, t), client, message).await
        }
    }
}

/// A whole conversation may take this many times `timeout` (Postfix's milter_content_timeout is ten times its
/// command timeout too): `SMFIR_PROGRESS` restarts the wait for a reply, never past this.
const CONVERSATION_TIMEOUTS: u32 = 10;

/// A milter connection: packets written are gathered until a reply is awaited.
struct Conn<S> {
    stream: S,
    out: Vec<u8>,
    timeout: Duration,
    /// The end of the whole conversation.
    deadline: tokio::time::Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, timeout: Duration) -> Self {
        Conn {
            stream,
            out: Vec::with_capacity(4096),
            timeout,
            deadline: tokio::time::Instant::now() + timeout * CONVERSATION_TIMEOUTS,
        }
    }

    /// How long the next wait may be: `timeout`, or what is left of the conversation.
    fn wait(&self) -> Result<Duration, String> {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the conversation took more than {} s",
                (self.timeout * CONVERSATION_TIMEOUTS).as_secs()
            ));
        }
        Ok(left.min(self.timeout))
    }

    fn send(&mut self, command: u8, data: &[u8]) {
        protocol::packet(&mut self.out, command, data);
    }

    /// Sends the macros of a stage (Postfix's default lists; a milter takes what it knows).
    fn macros(&mut self, stage: u8, pairs: &[(&str, &str)]) {
        if !pairs.is_empty() {
            self.send(cmd::MACRO, &protocol::macros(stage, pairs));
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        if self.out.is_empty() {
            return Ok(());
        }
        let wait = self.wait()?;
        let (stream, out) = (&mut self.stream, &self.out);
        let write = async {
            stream.write_all(out).await?;
            stream.flush().await
        };
        tokio::time::timeout(wait, write)
            .await
            .map_err(|_| {
                format!(
                    "took more than {} s to take what was sent",
                    self.timeout.as_secs()
                )
            })?
            .map_err(|e| format!("connection lost: {e}"))?;
        self.out.clear();
        Ok(())
    }

    /// The next reply; `SMFIR_PROGRESS` ("still working") restarts the wait.
    async fn read(&mut self) -> Result<(u8, Vec<u8>), String> {
        self.flush().await?;
        loop {
            let wait = self.wait()?;
            let stream = &mut self.stream;
            let read = async {
                let len = stream.read_u32().await? as usize;
                if len == 0 || len > protocol::MAX_PACKET {
                    return Ok(Err(format!("it sent a packet of {len} bytes")));
                }
                let mut buf = vec![0; len];
                stream.read_exact(&mut buf).await?;
                Ok::<_, std::io::Error>(Ok(buf))
            };
            let buf = tokio::time::timeout(wait, read)
                .await
                .map_err(|_| format!("no reply within {} s", wait.as_secs()))?
                .map_err(|e| format!("connection lost: {e}"))??;
            if buf[0] != reply::PROGRESS {
                return Ok((buf[0], buf[1..].to_vec()));
            }
        }
    }

    /// Waits for the reply to an event unless the milter said it sends none.
    async fn event(&mut self, no_reply: bool, stage: &str) -> Result<Flow, String> {
        if no_reply {
            return Ok(Flow::Next);
        }
        let (code, data) = self.read().await?;
        flow(code, &data, stage)
    }

    /// Says goodbye, not caring whether the milter hears it.
    async fn quit(&mut self) {
        self.send(cmd::QUIT, &[]);
        let _ = self.flush().await;
    }
}

/// Where the conversation goes after an event's reply.
enum Flow {
    /// On to the next event.
    Next,
    /// No more body chunks (`SMFIR_SKIP`).
    Skip,
    /// The milter has decided.
    Done(Answer),
}

/// The meaning of a reply to an event before the end of the message.
fn flow(code: u8, data: &[u8], stage: &str) -> Result<Flow, String> {
    Ok(match code {
        reply::CONTINUE => Flow::Next,
        reply::SKIP => Flow::Skip,
        // Accepted before the end: the milter wants nothing more of this message.
        reply::ACCEPT => Flow::Done(Answer::Accept(Changes::default())),
        _ => Flow::Done(
            decision(code, data)
                .ok_or_else(|| format!("it answered {:?} to {stage}", char::from(code)))??,
        ),
    })
}

/// A final decision (reject, tempfail, reply code, discard), if `code` is one.
fn decision(code: u8, data: &[u8]) -> Option<Result<Answer, String>> {
    Some(Ok(match code {
        reply::REJECT => Answer::Refuse(Reply::new(
            550,
            Some((5, 7, 1)),
            "Message rejected by a content filter",
        )),
        reply::TEMPFAIL => Answer::Refuse(Reply::new(
            451,
            Some((4, 7, 1)),
            "Message deferred by a content filter, try again later",
        )),
        reply::REPLYCODE => {
            return Some(
                protocol::parse_replycode(data)
                    .map(|r| Answer::Refuse(Reply::new(r.code, r.enhanced, r.text))),
            );
        }
        reply::DISCARD => Answer::Discard,
        _ => return None,
    }))
}

/// The conversation itself, stage by stage.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut c: Conn<S>,
    client: &Client<'_>,
    message: &Message,
) -> Result<Answer, String> {
    c.send(cmd::OPTNEG, &protocol::optneg());
    let (code, data) = c.read().await?;
    if code != reply::OPTNEG {
        return Err(format!(
            "it answered {:?} to the option negotiation",
            char::from(code)
        ));
    }
    let n = Negotiated::parse(&data)?;
    let answer = match events(&mut c, &n, client, message).await? {
        Some(done) => done,
        None => end_of_message(&mut c, &n, client, client.max_size).await?,
    };
    c.quit().await;
    Ok(answer)
}

/// Every event before the end of the message; `Some` when the milter decided early.
async fn events<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    n: &Negotiated,
    client: &Client<'_>,
    message: &Message,
) -> Result<Option<Answer>, String> {
    macro_rules! step {
        ($e:expr) => {
            match $e {
                Flow::Done(answer) => return Ok(Some(answer)),
                Flow::Next | Flow::Skip => {}
            }
        };
    }
    if !n.has(step::NOCONNECT) {
        let ip = client.peer.ip().to_string();
        let port = client.peer.port().to_string();
        let name = client.ptr.map_or_else(|| format!("[{ip}]"), str::to_string);
        let underscore = format!("{} [{ip}]", client.ptr.unwrap_or("unknown"));
        c.macros(
            cmd::CONNECT,
            &[
                ("j", client.hostname),
                ("{daemon_name}", client.listener.name()),
                ("v", concat!("mailctl ", env!("CARGO_PKG_VERSION"))),
                ("_", &underscore),
                ("{client_addr}", &ip),
                ("{client_port}", &port),
                ("{client_name}", client.ptr.unwrap_or("unknown")),
                ("{client_ptr}", client.ptr.unwrap_or("unknown")),
            ],
        );
        c.send(cmd::CONNECT, &protocol::connect(&name, client.peer));
        step!(c.event(n.has(step::NR_CONN), "CONNECT").await?);
    }
    if !n.has(step::NOHELO) && !client.helo.is_empty() {
        let (version, cipher) = client
            .tls
            .map_or(("", ""), |t| t.split_once(':').unwrap_or((t, "")));
        let tls: Vec<(&str, &str)> = [("{tls_version}", version), ("{cipher}", cipher)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        c.macros(cmd::HELO, &tls);
        c.send(cmd::HELO, &protocol::strings(&[client.helo]));
        step!(c.event(n.has(step::NR_HELO), "HELO").await?);
    }
    if !n.has(step::NOMAIL) {
        let host = client.sender.rsplit_once('@').map_or("", |(_, d)| d);
        let mut pairs = vec![
            ("i", client.id),
            ("{mail_addr}", client.sender),
            ("{mail_host}", host),
        ];
        if let Some(login) = client.login {
            pairs.push(("{auth_authen}", login));
            pairs.push(("{auth_type}", "PLAIN"));
        }
        c.macros(cmd::MAIL, &pairs);
        c.send(
            cmd::MAIL,
            &protocol::strings(&[&format!("<{}>", client.sender)]),
        );
        step!(c.event(n.has(step::NR_MAIL), "MAIL").await?);
    }
    if !n.has(step::NORCPT) {
        for rcpt in client.recipients {
            let host = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
            c.macros(cmd::RCPT, &[("{rcpt_addr}", rcpt), ("{rcpt_host}", host)]);
            c.send(cmd::RCPT, &protocol::strings(&[&format!("<{rcpt}>")]));
            step!(c.event(n.has(step::NR_RCPT), "RCPT").await?);
        }
    }
    // DATA is an event from protocol version 4 on.
    if n.version >= 4 && !n.has(step::NODATA) {
        c.macros(cmd::DATA, &[("i", client.id)]);
        c.send(cmd::DATA, &[]);
        step!(c.event(n.has(step::NR_DATA), "DATA").await?);
    }
    if !n.has(step::NOHDRS) {
        let leading = n.has(step::HDR_LEADSPC);
        for f in &message.fields {
            c.send(
                cmd::HEADER,
                &protocol::strings(&[f.name.as_bytes(), &f.value(leading)]),
            );
            step!(c.event(n.has(step::NR_HDR), "a header field").await?);
        }
    }
    if !n.has(step::NOEOH) {
        c.send(cmd::EOH, &[]);
        step!(
            c.event(n.has(step::NR_EOH), "the end of the header")
                .await?
        );
    }
    if !n.has(step::NOBODY) {
        for chunk in message.body.chunks(protocol::BODY_CHUNK) {
            c.send(cmd::BODY, chunk);
            match c.event(n.has(step::NR_BODY), "a body chunk").await? {
                Flow::Done(answer) => return Ok(Some(answer)),
                Flow::Skip => break,
                Flow::Next => {}
            }
        }
    }
    Ok(None)
}

/// The end of the message: the milter's changes, then its decision.
async fn end_of_message<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    n: &Negotiated,
    client: &Client<'_>,
    max_size: usize,
) -> Result<Answer, String> {
    c.macros(cmd::BODYEOB, &[("i", client.id)]);
    c.send(cmd::BODYEOB, &[]);
    let mut changes = Changes {
        leading_space: n.has(step::HDR_LEADSPC),
        ..Changes::default()
    };
    let mut body: Option<Vec<u8>> = None;
    loop {
        let (code, data) = c.read().await?;
        let granted = |flag: u32| {
            let ok = n.actions & flag != 0;
            if !ok {
                tracing::warn!(target: "mailctl::smtp", id = client.id,
                    "a milter asked for {:?}, which it did not negotiate: ignored", char::from(code));
            }
            ok
        };
        match code {
            reply::ACCEPT | reply::CONTINUE => break,
            reply::ADDHEADER if granted(action::ADDHDRS) => {
                if let [name, value, ..] = protocol::split_strings(&data).as_slice() {
                    changes.edits.push(Edit::Add(text(name), value.clone()));
                }
            }
            reply::INSHEADER if granted(action::ADDHDRS) => {
                let (index, rest) = protocol::index_and_rest(&data).ok_or("a short INSHEADER")?;
                if let [name, value, ..] = protocol::split_strings(rest).as_slice() {
                    changes
                        .edits
                        .push(Edit::Insert(index, text(name), value.clone()));
                }
            }
            reply::CHGHEADER if granted(action::CHGHDRS) => {
                let (index, rest) = protocol::index_and_rest(&data).ok_or("a short CHGHEADER")?;
                let strings = protocol::split_strings(rest);
                if let Some(name) = strings.first() {
                    let value = strings.get(1).cloned().unwrap_or_default();
                    changes.edits.push(Edit::Change(index, text(name), value));
                }
            }
            reply::REPLBODY if granted(action::CHGBODY) => {
                let body = body.get_or_insert_with(Vec::new);
                if body.len() + data.len() > max_size {
                    return Err(format!(
                        "its new body is larger than the {max_size}-byte message size limit"
                    ));
                }
                body.extend_from_slice(&data);
            }
            reply::CHGFROM if granted(action::CHGFROM) => {
                // Only the address (ESMTP arguments dropped), and only a valid one: it becomes MAIL FROM.
                let from = protocol::split_strings(&data)
                    .first()
                    .map(|f| {
                        text(f)
                            .trim()
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_string()
                    })
                    .unwrap_or_default();
                if from.is_empty() || from.parse::<crate::model::Address>().is_ok() {
                    changes.sender = Some(from);
                } else {
                    tracing::warn!(target: "mailctl::smtp", id = client.id,
                        "a milter's new envelope sender {:?} is not an address: ignored", from);
                }
            }
            reply::QUARANTINE if granted(action::QUARANTINE) => {
                let reason = protocol::split_strings(&data)
                    .first()
                    .map(|r| text(r))
                    .unwrap_or_default();
                changes.quarantine = Some(reason);
            }
            reply::ADDHEADER
            | reply::INSHEADER
            | reply::CHGHEADER
            | reply::REPLBODY
            | reply::CHGFROM
            | reply::QUARANTINE
            | reply::ADDRCPT
            | reply::DELRCPT
            | reply::ADDRCPT_PAR => {
                // Not granted (warned above, or never offered: recipient changes).
                if matches!(code, reply::ADDRCPT | reply::DELRCPT | reply::ADDRCPT_PAR) {
                    granted(0);
                }
            }
            _ => {
                return decision(code, &data).unwrap_or_else(|| {
                    Err(format!(
                        "it answered {:?} at the end of the message",
                        char::from(code)
                    ))
                });
            }
        }
    }
    if let Some(body) = body {
        changes.edits.push(Edit::Body(body));
    }
    Ok(Answer::Accept(changes))
}

/// A name or a reason a milter sent, as text (header values stay bytes: an 8-bit value comes back as it went).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
