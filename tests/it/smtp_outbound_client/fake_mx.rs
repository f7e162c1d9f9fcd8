//! A scriptable receiving MX for the outbound client tests: greets, answers EHLO (optionally offering
//! STARTTLS with a given certificate), MAIL, RCPT (per-recipient replies), DATA (reads and un-stuffs the
//! message) and the end of data as scripted, and records every session: the command lines, whether TLS was
//! on, and the message received. Several of them share one port on different loopback addresses (the client
//! connects to one configured port), see [`start_group`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What happens after the message has been read.
#[derive(Clone)]
pub enum Final {
    /// This reply.
    Reply(String),
    /// Nothing, until the client hangs up.
    Silent,
    /// The connection is closed without a reply.
    Close,
}

/// How one MX behaves.
#[derive(Clone)]
pub struct MxScript {
    /// The greeting line.
    pub greeting: String,
    /// Offer STARTTLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer STARTTLS with 220 and then garbage instead of a TLS handshake.
    pub broken_tls: bool,
    /// Extra EHLO keywords, e.g. `8BITMIME`.
    pub extensions: Vec<&'static str>,
    /// RCPT replies by address (lowercase); others get `250 2.1.5 Ok`.
    pub rcpt: Vec<(String, String)>,
    /// The reply to the end of data.
    pub end: Final,
}

impl MxScript {
    /// A plain server called `name` accepting everything.
    pub fn accepting(name: &str) -> MxScript {
        MxScript {
            greeting: format!("220 {name} ESMTP fake"),
            tls: None,
            broken_tls: false,
            extensions: vec!["8BITMIME"],
            rcpt: Vec::new(),
            end: Final::Reply("250 2.0.0 Ok: queued as FAKE1".into()),
        }
    }
}

/// One session as the server saw it.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Every command line, in order (across STARTTLS).
    pub commands: Vec<String>,
    /// STARTTLS completed.
    pub tls: bool,
    /// The message, un-stuffed, CRLF line ends, if DATA ended with the final dot.
    pub message: Option<Vec<u8>>,
}

type Log = Arc<Mutex<Vec<Session>>>;

/// A running fake MX, stopped on drop.
pub struct FakeMx {
    log: Log,
    task: JoinHandle<()>,
}

impl FakeMx {
    /// Every session so far.
    pub fn sessions(&self) -> Vec<Session> {
        self.log.lock().unwrap().clone()
    }

    /// Every session so far, once the last one has received its QUIT (or after 5 s): the client says goodbye
    /// in the background, after it has returned its results.
    pub async fn sessions_after_quit(&self) -> Vec<Session> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let sessions = self.sessions();
            let quit = sessions
                .last()
                .is_some_and(|s| s.commands.last().is_some_and(|c| c == "QUIT"));
            if quit || tokio::time::Instant::now() >= deadline {
                return sessions;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Whether any session got as far as MAIL FROM.
    pub fn saw_mail(&self) -> bool {
        self.sessions().iter().any(|s| {
            s.commands
                .iter()
                .any(|c| c.to_ascii_uppercase().starts_with("MAIL FROM"))
        })
    }
}

impl Drop for FakeMx {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts every `(ip, script)` on one common port (found by trying); returns the port and the servers.
pub async fn start_group(specs: Vec<(&str, MxScript)>) -> (u16, Vec<FakeMx>) {
    'attempt: for _ in 0..50 {
        let mut listeners = Vec::new();
        let mut port = 0;
        for (ip, _) in &specs {
            let ip: IpAddr = ip.parse().unwrap();
            match TcpListener::bind((ip, port)).await {
                Ok(l) => {
                    port = l.local_addr().unwrap().port();
                    listeners.push(l);
                }
                Err(_) => continue 'attempt,
            }
        }
        let servers = listeners
            .into_iter()
            .zip(specs.iter().map(|(_, s)| s.clone()))
            .map(|(listener, script)| serve(listener, script))
            .collect();
        return (port, servers);
    }
    panic!("no common free port for the fake MX hosts");
}

fn serve(listener: TcpListener, script: MxScript) -> FakeMx {
    let log: Log = Arc::default();
    let (script, sessions) = (Arc::new(script), log.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(session(tcp, script.clone(), sessions.clone()));
        }
    });
    FakeMx { log, task }
}

enum Next {
    Done,
    StartTls,
}

async fn session(tcp: TcpStream, script: Arc<MxScript>, log: Log) {
    let index = {
        let mut log = log.lock().unwrap();
        log.push(Session::default());
        log.len() - 1
    };
    let mut conn = BufReader::new(tcp);
    let greeting = format!("{}\r\n", script.greeting);
    if conn.get_mut().write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    if !script.greeting.starts_with('2') {
        let _ = conn.get_mut().shutdown().await;
        return;
    }
    if let Next::StartTls = dialogue(&mut conn, &script, &log, index, false).await {
        if script.broken_tls {
            let _ = conn.get_mut().write_all(b"this is not TLS\r\n").await;
            let _ = conn.get_mut().shutdown().await;
            return;
        }
        let Some(config) = script.tls.clone() else {
            return;
        };
        if let Ok(tls) = tokio_rustls::TlsAcceptor::from(config)
            .accept(conn.into_inner())
            .await
        {
            log.lock().unwrap()[index].tls = true;
            dialogue(&mut BufReader::new(tls), &script, &log, index, true).await;
        }
    }
}

fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_ascii_lowercase()
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    script: &MxScript,
    log: &Log,
    index: usize,
    in_tls: bool,
) -> Next {
    let name = script.greeting.split_whitespace().nth(1).unwrap_or("fake");
    loop {
        let mut line = String::new();
        match conn.read_line(&mut line).await {
            Ok(0) | Err(_) => return Next::Done,
            Ok(_) => {}
        }
        let line = line.trim_end().to_string();
        log.lock().unwrap()[index].commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let mut next = None;
        let reply = if upper.starts_with("EHLO ") {
            let mut lines = vec![format!("{name} hello"), "PIPELINING".into()];
            if (script.tls.is_some() || script.broken_tls) && !in_tls {
                lines.push("STARTTLS".into());
            }
            lines.extend(script.extensions.iter().map(|e| e.to_string()));
            let last = lines.len() - 1;
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                .collect::<Vec<_>>()
                .join("\r\n")
        } else if upper == "STARTTLS" && !in_tls && (script.tls.is_some() || script.broken_tls) {
            next = Some(Next::StartTls);
            "220 2.0.0 Ready to start TLS".into()
        } else if upper.starts_with("MAIL FROM:") {
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = address(&line);
            script
                .rcpt
                .iter()
                .find(|(a, _)| *a == rcpt)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| "250 2.1.5 Ok".into())
        } else if upper == "DATA" {
            if conn
                .get_mut()
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await
                .is_err()
            {
                return Next::Done;
            }
            let Some(message) = read_message(conn).await else {
                return Next::Done;
            };
            log.lock().unwrap()[index].message = Some(message);
            match &script.end {
                Final::Reply(r) => r.clone(),
                Final::Silent => {
                    // Hold the connection, reading whatever comes, until the client gives up.
                    let mut sink = String::new();
                    while conn.read_line(&mut sink).await.is_ok_and(|n| n > 0) {
                        sink.clear();
                    }
                    return Next::Done;
                }
                Final::Close => {
                    let _ = conn.get_mut().shutdown().await;
                    return Next::Done;
                }
            }
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            next = Some(Next::Done);
            "221 2.0.0 Bye".into()
        } else {
            "502 5.5.2 Error: command not recognized".into()
        };
        if conn
            .get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return Next::Done;
        }
        if let Some(next) = next {
            if let Next::Done = next {
                let _ = conn.get_mut().shutdown().await;
            }
            return next;
        }
    }
}

/// Reads DATA up to the final dot, un-stuffing leading dots; `None` on EOF.
async fn read_message<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    loop {
        let mut line = Vec::new();
        match conn.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line == b".\r\n" {
            return Some(message);
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(line);
    }
}
