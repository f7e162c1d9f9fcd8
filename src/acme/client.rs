//! The HTTP client under the ACME protocol: one HTTPS/1.1 request per connection, the host looked up through
//! mailctl's [`Resolver`] (so `[dns] nameserver` applies, as everywhere), the chain verified against the public
//! roots plus `[server.acme] directory_ca`, every step within [`TIMEOUT`], responses capped at [`MAX_BODY`].
//! An ACME issuance makes a dozen requests; a fresh connection for each costs nothing that matters.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;

use crate::dns::Resolver;

/// How long each step (connect, handshake, the exchange) may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read (a certificate chain is a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// HTTPS for instant-acme.
pub struct Client {
    resolver: Resolver,
    roots: Arc<RootCertStore>,
}

impl Client {
    /// A client that looks names up with `resolver` and trusts `roots`.
    pub fn new(resolver: Resolver, roots: Arc<RootCertStore>) -> Client {
        Client { resolver, roots }
    }
}

impl HttpClient for Client {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (resolver, roots) = (self.resolver.clone(), self.roots.clone());
        Box::pin(async move {
            exchange(&resolver, roots, req)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))
        })
    }
}

/// Sends `req` and reads the whole response.
async fn exchange(
    resolver: &Resolver,
    roots: Arc<RootCertStore>,
    req: http::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, String> {
    let (parts, body) = req.into_parts();
    // instant-acme's own wrapper reads its body; the request body is one chunk already.
    let body = BytesResponse::from(http::Response::new(body))
        .body
        .into_bytes()
        .await
        .map_err(|e| e.to_string())?;
    let uri = &parts.uri;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{uri}: the ACME server must be reached over https"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{uri}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let ips = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolver
            .addresses(&host)
            .await
            .map_err(|e| format!("DNS lookup of {host} failed: {e}"))?,
    };
    if ips.is_empty() {
        return Err(format!("{host} has no A or AAAA record"));
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
    let mut request = format!(
        "{} {target} HTTP/1.1\r\nHost: {authority}\r\n",
        parts.method
    );
    for (name, value) in &parts.headers {
        // Framing is ours to write.
        if [
            http::header::HOST,
            http::header::CONTENT_LENGTH,
            http::header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        if let Ok(value) = value.to_str() {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if !parts.headers.contains_key(http::header::USER_AGENT) {
        request.push_str(concat!(
            "User-Agent: mailctl/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);
    let expect = crate::mta_sts::http::Expect {
        max_body: MAX_BODY,
        every_status: true,
        head_only: parts.method == http::Method::HEAD,
    };
    let response =
        crate::mta_sts::https_request(&host, &ips, port, roots, &request, TIMEOUT, expect)
            .await
            .map_err(|e| e.to_string())?;
    let mut builder = http::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = builder
        .body(BodyWrapper::from(response.body))
        .map_err(|e| format!("{host}: bad HTTP response: {e}"))?;
    Ok(BytesResponse::from(response))
}
