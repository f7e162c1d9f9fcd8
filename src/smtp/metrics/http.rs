//! A minimal HTTP/1.1 server for `GET /metrics`, so a Prometheus scrape needs no HTTP framework in the tree.
//!
//! One request per connection (`Connection: close`); the request head must arrive within 10 seconds and fit in
//! 8 KiB; request bodies are never read. `GET` and `HEAD` of `/metrics` answer 200 with the exposition; other
//! methods on it 405; other paths 404; anything that is not an HTTP/1.x request head 400. At most
//! [`MAX_CONNECTIONS`] scrapes run at once; further connections are closed at once, so a flood of idle sockets
//! cannot pile up tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::Metrics;
use crate::smtp::http::{Head, finish, parse_head, read_head, response};
use crate::smtp::shutdown::Shutdown;

/// How long a client has to send its request head (and to take the response).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most scrape connections handled at the same time.
pub const MAX_CONNECTIONS: usize = 32;

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
    shutdown: Shutdown,
    timeout: Duration,
) {
    // Over the limit a connection is closed at once, which a scraper reports as a failed scrape.
    let limits = crate::smtp::http::Limits {
        total: MAX_CONNECTIONS,
        per_ip: MAX_CONNECTIONS,
    };
    crate::smtp::http::accept_limited(
        listener,
        shutdown,
        "metrics endpoint",
        limits,
        move |stream| {
            let metrics = metrics.clone();
            async move { handle(stream, &metrics, timeout).await }
        },
    )
    .await;
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
        Ok(Ok(Head::Complete(head, _))) => respond(&head, metrics),
    };
    finish(&mut stream, &response, timeout).await;
}

/// The whole response to one complete request head.
pub(super) fn respond(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let bad = || response(400, "Bad Request", &[], b"bad request\n", false);
    let Some(request) = parse_head(head) else {
        return bad();
    };
    let method = request.method;
    if request.path != "/metrics" {
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
