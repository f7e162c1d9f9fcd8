//! The HTTPS side of the hosted domains (`[server.https]`): what senders and mail clients fetch over HTTPS, by
//! the Host they ask for, with the listeners' certificate ([`crate::tls::server`]):
//! - `mta-sts.DOMAIN/.well-known/mta-sts.txt`: the MTA-STS policy, exactly the one `mailctl dns records`
//!   prints (its `_mta-sts` id changes with it);
//! - Thunderbird's autoconfig, `autoconfig.DOMAIN/mail/config-v1.1.xml` and
//!   `DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml`;
//! - Outlook's autodiscover, `POST /autodiscover/autodiscover.xml`;
//!
//! each only for a hosted, active domain (404 otherwise). One request per connection, the TLS handshake and
//! the request within [`READ_TIMEOUT`] together, a head of at most [`crate::smtp::http::HEAD_LIMIT`], a POST
//! body of at most [`BODY_LIMIT`], at most [`MAX_CONNECTIONS`] at once and [`MAX_PER_IP`] per client address;
//! only GET and HEAD (and POST for autodiscover); Host required. Which domains are hosted is read at most
//! every 30 s, so requests cost no database query.

mod routes;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::smtp::http::{Head, finish, parse_head, read_head, response};
use crate::smtp::inbound::Context;
use crate::smtp::settings::HttpsSettings;

/// How long a client has for the TLS handshake, then for its request (and to take the response).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handled at the same time; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;
/// The largest request body read (an autodiscover request is a few hundred bytes).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Connections from one client address at the same time; more are closed at once.
pub const MAX_PER_IP: usize = 16;

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerIp(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PerIp {
    fn enter(&self, ip: std::net::IpAddr) -> bool {
        let Ok(mut map) = self.0.lock() else {
            return false;
        };
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_PER_IP {
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

/// Serves HTTPS on `listener` until the daemon stops.
pub async fn serve(listener: TcpListener, server: Arc<Context>, settings: HttpsSettings) {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip = Arc::new(PerIp::default());
    let hosted = Arc::new(routes::Hosted::default());
    let mut shutdown = server.shutdown.clone();
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
                    let (server, settings, per_ip, hosted) =
                        (server.clone(), settings.clone(), per_ip.clone(), hosted.clone());
                    tokio::spawn(async move {
                        handle(stream, &server, &settings, &hosted).await;
                        per_ip.leave(ip);
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(target: "mailctl::smtp", "https: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// One connection: TLS, one request, one response.
async fn handle(
    stream: TcpStream,
    server: &Context,
    settings: &HttpsSettings,
    hosted: &routes::Hosted,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = &server.tls else {
        return;
    };
    // The handshake and the request share one deadline.
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    // A TLS-ALPN-01 validation of an ACME order is answered by the handshake alone.
    let accepted = crate::acme::challenge::accept(stream, tls, &server.challenges);
    let Ok(Ok(Some(mut stream))) = tokio::time::timeout_at(deadline, accepted).await else {
        return;
    };
    let answer = async {
        let (head, mut body) = match read_head(&mut stream).await? {
            Head::Complete(head, rest) => (head, rest),
            Head::TooLarge => {
                return Ok(Some(response(
                    431,
                    "Request Header Fields Too Large",
                    &[],
                    b"request head too large\n",
                    false,
                )));
            }
            Head::Closed => return Ok(None),
        };
        // Every route is chosen by Host, which HTTP/1.1 requires anyway (RFC 9112 section 3.2).
        let Some(request) = parse_head(&head).filter(|r| r.host.is_some()) else {
            return Ok(Some(response(
                400,
                "Bad Request",
                &[],
                b"bad request\n",
                false,
            )));
        };
        if request.transfer_encoding {
            return Ok(Some(response(
                501,
                "Not Implemented",
                &[],
                b"transfer codings are not supported; send Content-Length\n",
                false,
            )));
        }
        if request.method == "POST" {
            let wanted = request.content_length.unwrap_or(0);
            if wanted > BODY_LIMIT {
                return Ok(Some(response(
                    413,
                    "Content Too Large",
                    &[],
                    b"request body too large\n",
                    false,
                )));
            }
            while body.len() < wanted {
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(wanted);
        }
        Ok::<_, std::io::Error>(Some(
            routes::respond(server, settings, hosted, &request, &body).await,
        ))
    };
    let response = match tokio::time::timeout_at(deadline, answer).await {
        Err(_) => response(408, "Request Timeout", &[], b"request timeout\n", false),
        Ok(Err(_)) | Ok(Ok(None)) => return,
        Ok(Ok(Some(r))) => r,
    };
    finish(&mut stream, &response, READ_TIMEOUT).await;
}
