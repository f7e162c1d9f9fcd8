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
//! body of at most [`BODY_LIMIT`], at most [`crate::smtp::http::MAX_CONNECTIONS`] at once and
//! [`crate::smtp::http::MAX_PER_IP`] per client address;
//! only GET and HEAD (and POST for autodiscover); Host required. Which domains are hosted is read at most
//! every 30 s, so requests cost no database query.

mod routes;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::smtp::http::{Head, finish, parse_head, read_head, response};
use crate::smtp::inbound::Context;
use crate::smtp::settings::HttpsSettings;

/// How long a client has for the TLS handshake, then for its request (and to take the response).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body read (an autodiscover request is a few hundred bytes).
pub const BODY_LIMIT: usize = 16 * 1024;

/// Serves HTTPS on `listener` until the daemon stops.
pub async fn serve(listener: TcpListener, server: Arc<Context>, settings: HttpsSettings) {
    let settings = Arc::new(settings);
    let hosted = Arc::new(routes::Hosted::default());
    let shutdown = server.shutdown.clone();
    crate::smtp::http::accept_limited(
        listener,
        shutdown,
        "https",
        crate::smtp::http::PUBLIC,
        move |stream| {
            let (server, settings, hosted) = (server.clone(), settings.clone(), hosted.clone());
            async move { handle(stream, &server, &settings, &hosted).await }
        },
    )
    .await;
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
