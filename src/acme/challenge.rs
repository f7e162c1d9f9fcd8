//! The answers to the CA's validation requests while an order is open.
//!
//! - TLS-ALPN-01 (RFC 8737): a TLS client offering only the `acme-tls/1` protocol, for a name with a pending
//!   challenge, gets a self-signed certificate for that name carrying the critical acmeIdentifier extension
//!   (the SHA-256 of the key authorization), and nothing else happens on that connection. The HTTPS listener
//!   looks at the ClientHello first ([`accept`]), so every other client is served as before.
//! - HTTP-01 (RFC 8555 8.3): `GET /.well-known/acme-challenge/TOKEN` on `http_listen` answers the key
//!   authorization; everything else there is 404 ([`serve_http`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::smtp::http::{Head, finish, parse_head, read_head, response};
use crate::smtp::inbound::limits::lock;
use crate::tls::server::Tls;

/// The ALPN protocol of TLS-ALPN-01.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The path prefix of HTTP-01.
pub const HTTP_PREFIX: &str = "/.well-known/acme-challenge/";
/// How long a validation connection may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The challenges of the open order.
#[derive(Default)]
pub struct Challenges {
    /// Name (lowercase) to the TLS configuration presenting its challenge certificate.
    tls: Mutex<HashMap<String, Arc<ServerConfig>>>,
    /// HTTP-01 token to key authorization.
    http: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// Answers TLS-ALPN-01 for `name` with `digest` (SHA-256 of the key authorization).
    pub fn add_tls_alpn(&self, name: &str, digest: &[u8]) -> Result<(), String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = crate::tls::provider();
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| e.to_string())?;
        // Not `with_single_cert`: it refuses the critical acmeIdentifier extension, which is the point here.
        let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        lock(&self.tls).insert(name.to_ascii_lowercase(), Arc::new(config));
        Ok(())
    }

    /// Answers HTTP-01 for `token`.
    pub fn add_http(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    /// Forgets every challenge (the order is over).
    pub fn clear(&self) {
        lock(&self.tls).clear();
        lock(&self.http).clear();
    }

    /// The challenge configuration for a ClientHello offering `acme-tls/1` for a name with a pending
    /// challenge.
    fn tls_for(&self, hello: &rustls::server::ClientHello<'_>) -> Option<Arc<ServerConfig>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !acme {
            return None;
        }
        let name = hello.server_name()?.to_ascii_lowercase();
        lock(&self.tls).get(&name).cloned()
    }

    /// The key authorization for an HTTP-01 request path.
    fn http_for(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP_PREFIX)?;
        lock(&self.http).get(token).cloned()
    }
}

/// Presents one certificate whatever the client asks.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The TLS handshake of an HTTPS connection: a TLS-ALPN-01 validation is answered here (and `None`
/// returned: the validator closes after the handshake); any other client gets `tls`'s certificate.
pub async fn accept(
    stream: TcpStream,
    tls: &Tls,
    challenges: &Challenges,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    if let Some(config) = challenges.tls_for(&start.client_hello()) {
        let mut stream = start.into_stream(config).await?;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
        return Ok(None);
    }
    start.into_stream(tls.config()).await.map(Some)
}

/// Answers TLS-ALPN-01 validations on `listener` (closing every other connection) until dropped: for
/// `mailctl cert renew` when no daemon holds the HTTPS port.
pub async fn serve_tls_alpn(listener: TcpListener, tls: Arc<Tls>, challenges: Arc<Challenges>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (tls, challenges) = (tls.clone(), challenges.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, accept(stream, &tls, &challenges)).await;
        });
    }
}

/// Answers HTTP-01 validations on `listener` until `shutdown` fires (or the task is dropped), with the
/// connection limits of every HTTP listener of the daemon.
pub async fn serve_http(
    listener: TcpListener,
    challenges: Arc<Challenges>,
    shutdown: crate::smtp::shutdown::Shutdown,
) {
    crate::smtp::http::accept_limited(
        listener,
        shutdown,
        "acme http-01",
        crate::smtp::http::PUBLIC,
        move |stream| {
            let challenges = challenges.clone();
            async move { answer_http(stream, &challenges).await }
        },
    )
    .await;
}

/// One HTTP-01 connection: one request, one response.
async fn answer_http(mut stream: TcpStream, challenges: &Challenges) {
    let Ok(Ok(Head::Complete(head, _))) =
        tokio::time::timeout(TIMEOUT, read_head(&mut stream)).await
    else {
        return;
    };
    let reply = match parse_head(&head) {
        Some(r) if r.method == "GET" || r.method == "HEAD" => match challenges.http_for(r.path) {
            Some(answer) => response(200, "OK", &[], answer.as_bytes(), r.method == "HEAD"),
            None => response(404, "Not Found", &[], b"not found\n", r.method == "HEAD"),
        },
        Some(_) => response(
            405,
            "Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            b"",
            false,
        ),
        None => response(400, "Bad Request", &[], b"", false),
    };
    finish(&mut stream, &reply, TIMEOUT).await;
}
