//! The little HTTP/1.1 the daemon speaks, so the metrics endpoint and the HTTPS endpoint (MTA-STS policies,
//! mail client autoconfiguration) need no HTTP framework in the tree: one request per connection
//! (`Connection: close`), a request head of at most [`HEAD_LIMIT`] bytes read within a timeout, a body only
//! when the route asks for one (`Content-Length`, bounded), and a lingering close so the client reads the whole
//! response.

use std::time::Duration;

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request head accepted, in bytes.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// How long a closed-for-writing connection is drained before it is dropped.
const LINGER: Duration = Duration::from_secs(2);

/// What reading the request head produced.
pub enum Head {
    /// Everything up to and including the blank line, and what came after it already (body bytes).
    Complete(Vec<u8>, Vec<u8>),
    /// The head did not end within [`HEAD_LIMIT`] bytes.
    TooLarge,
    /// The client closed the connection before the head ended.
    Closed,
}

/// Reads a request head.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let searched = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, searched) {
            let rest = buf.split_off(end);
            return Ok(Head::Complete(buf, rest));
        }
        if buf.len() >= HEAD_LIMIT {
            return Ok(Head::TooLarge);
        }
    }
}

/// The end of the head (after its blank line, CRLF or bare LF) at or after `from`, if present.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// A well-formed HTTP/1.x request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query, after `?`.
    pub query: &'a str,
    /// The `Host` field without a port, lower-case.
    pub host: Option<String>,
    /// `Content-Length`, when given.
    pub content_length: Option<usize>,
    /// A `Transfer-Encoding` was given (a chunked body this server does not read).
    pub transfer_encoding: bool,
}

/// Parses a request head; `None` when it is not a well-formed HTTP/1.x request.
pub fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let well_formed = parts.next().is_none()
        && token(method)
        && target.starts_with('/')
        && target.bytes().all(|b| b.is_ascii_graphic())
        && matches!(version, "HTTP/1.0" | "HTTP/1.1");
    if !well_formed {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        method,
        path,
        query,
        host: None,
        content_length: None,
        transfer_encoding: false,
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        // A field is `name: value`; a line starting with whitespace is obsolete folding, refused as RFC 9112 allows.
        let (name, value) = line.split_once(':')?;
        if !token(name) || line.contains('\r') {
            return None;
        }
        let value = value.trim();
        // Each of these once: two that disagree are how requests get smuggled past proxies.
        if name.eq_ignore_ascii_case("host") {
            let host = match value.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => value,
            };
            if request.host.is_some() {
                return None;
            }
            request.host = Some(host.trim_end_matches('.').to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("content-length") {
            if request.content_length.is_some()
                || value.is_empty()
                || !value.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            request.content_length = Some(value.parse().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            request.transfer_encoding = true;
        }
    }
    Some(request)
}

/// Status line, headers (`Content-Length` and `Connection: close` always) and, unless `head_only`, the body.
pub fn response(
    code: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {code} {reason}\r\n");
    if !headers.iter().any(|(k, _)| *k == "Content-Type") {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Writes `response` and closes, draining what the client still sends (an unread body, the rest of a
/// too-large head) so closing does not reset the connection before the client has read the response.
pub async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: &[u8],
    timeout: Duration,
) {
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(response).await?;
        stream.shutdown().await
    })
    .await;
    let _ = tokio::time::timeout(timeout.min(LINGER), async {
        let mut chunk = [0u8; 1024];
        let mut drained = 0;
        while drained < HEAD_LIMIT * 8 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Connections an HTTP listener handles at the same time; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Connections from one client address at the same time; more are closed at once.
pub const MAX_PER_IP: usize = 16;

/// Open connections per client address, at most `.1` each.
#[derive(Debug, Default)]
struct PerIp(
    std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    usize,
);

impl PerIp {
    fn enter(&self, ip: std::net::IpAddr) -> bool {
        let Ok(mut map) = self.0.lock() else {
            return false;
        };
        let n = map.entry(ip).or_insert(0);
        if *n >= self.1 {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self, ip: std::net::IpAddr) {
        if let Ok(mut map) = self.0.lock()
            && let Some(n) = map.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// How many connections an HTTP listener takes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At once, in all.
    pub total: usize,
    /// At once from one client address.
    pub per_ip: usize,
}

/// The limits of the HTTPS endpoint and the ACME HTTP-01 listener.
pub const PUBLIC: Limits = Limits {
    total: MAX_CONNECTIONS,
    per_ip: MAX_PER_IP,
};

/// Accepts on `listener` (named `name` in logs) until `shutdown`, each connection handled by `handle` in a task
/// of its own, within `limits`: connections over them are closed at once (a client sees a refused request).
pub async fn accept_limited<H, F>(
    listener: TcpListener,
    mut shutdown: crate::smtp::shutdown::Shutdown,
    name: &'static str,
    limits: Limits,
    handle: H,
) where
    H: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.total));
    let per_ip = Arc::new(PerIp(Default::default(), limits.per_ip));
    loop {
        if shutdown.is_shutdown() {
            return;
        }
        tokio::select! {
            () = shutdown.recv() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let ip = peer.ip().to_canonical();
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    if !per_ip.enter(ip) {
                        continue;
                    }
                    let per_ip = per_ip.clone();
                    let work = handle(stream);
                    tokio::spawn(async move {
                        work.await;
                        per_ip.leave(ip);
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(target: "mailctl::smtp", "{name}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}
