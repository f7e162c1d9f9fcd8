//! A minimal HTTP/1.1 server for `GET /metrics`, so a Prometheus scrape needs no HTTP framework in the tree.
//!
//! One request per connection (`Connection: close`); the request head must arrive within 10 seconds and fit in
//! 8 KiB; request bodies are never read. `GET` and `HEAD` of `/metrics` answer 200 with the exposition; other
//! methods on it 405; other paths 404; anything that is not an HTTP/1.x request head 400. At most
//! [`MAX_CONNECTIONS`] scrapes run at once; further connections are closed at once, so a flood of idle sockets
//! cannot pile up tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Metrics;
use crate::smtp::shutdown::Shutdown;

/// How long a client has to send its request head (and to take the response).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted, in bytes.
pub const HEAD_LIMIT: usize = 8 * 1024;
/// Most scrape connections handled at the same time.
pub const MAX_CONNECTIONS: usize = 32;

/// How long a closed-for-writing connection is drained before it is dropped.
const LINGER: Duration = Duration::from_secs(2);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` on `listener` until the daemon stops.
///
/// Runs as one task of `serve`; connections in flight when it returns finish on their own (each is bounded by
/// the read timeout).
pub async fn serve_endpoint(listener: TcpListener, metrics: Arc<Metrics>, shutdown: Shutdown) {
    serve_with(listener, metrics, shutdown, READ_TIMEOUT).await;
}

/// [`serve_endpoint`] with a chosen read timeout (tests use a short one).
pub(super) async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        if shutdown.is_shutdown() {
            return;
        }
        tokio::select! {
            () = shutdown.recv() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Over the limit: dropping the stream closes it, which a scraper reports as a failed scrape.
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        handle(stream, &metrics, timeout).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// What reading the request head produced.
enum Head {
    /// Everything up to and including the blank line.
    Complete(Vec<u8>),
    /// The head did not end within [`HEAD_LIMIT`] bytes.
    TooLarge,
    /// The client closed the connection before the head ended.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Head> {
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
            buf.truncate(end);
            return Ok(Head::Complete(buf));
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

async fn handle(mut stream: TcpStream, metrics: &Metrics, timeout: Duration) {
    let response = match tokio::time::timeout(timeout, read_head(&mut stream)).await {
        Err(_) => response(408, "Request Timeout", &[], b"request timeout\n", false),
        Ok(Err(_)) | Ok(Ok(Head::Closed)) => return,
        Ok(Ok(Head::TooLarge)) => response(
            431,
            "Request Header Fields Too Large",
            &[],
            b"request head too large\n",
            false,
        ),
        Ok(Ok(Head::Complete(head))) => respond(&head, metrics),
    };
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    // Lingering close: read what the client still sends (an unread body, the rest of a too-large head), so
    // closing does not reset the connection and destroy the response before the client has read it.
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

/// The whole response to one complete request head.
pub(super) fn respond(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let bad = || response(400, "Bad Request", &[], b"bad request\n", false);
    let Some((method, target)) = parse_head(head) else {
        return bad();
    };
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return response(404, "Not Found", &[], b"not found; try /metrics\n", false);
    }
    match method {
        "GET" | "HEAD" => {
            let body = metrics.render();
            let headers = [("Content-Type", CONTENT_TYPE)];
            response(200, "OK", &headers, body.as_bytes(), method == "HEAD")
        }
        _ => response(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            b"method not allowed\n",
            false,
        ),
    }
}

/// The method and request target of a well-formed HTTP/1.x request head, or None.
fn parse_head(head: &[u8]) -> Option<(&str, &str)> {
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
    for line in lines.take_while(|l| !l.is_empty()) {
        // A field is `name: value`; a line starting with whitespace is obsolete folding, refused as RFC 9112 allows.
        let (name, _value) = line.split_once(':')?;
        if !token(name) || line.contains('\r') {
            return None;
        }
    }
    Some((method, target))
}

/// Status line, headers (`Content-Length` and `Connection: close` always) and, unless `head_only`, the body.
fn response(
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
