//! HTTP/1.1 for the daemon's endpoints: a plain GET for the metrics endpoint (`[server] metrics`), and any
//! request over TLS for the HTTPS endpoint (`[server.https]`); each reads until the server closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the connect and every read wait before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP response, as read up to the server's close.
#[derive(Debug)]
pub struct Http {
    /// `HTTP/1.1 200 OK`.
    pub status: String,
    /// Header lines, as sent.
    pub headers: Vec<String>,
    /// Everything after the blank line.
    pub body: String,
}

impl Http {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` on `addr`, reading the response until the server closes the connection.
pub fn get(addr: SocketAddr, path: &str) -> Http {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to metrics");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).expect("read response");
    parse(raw)
}

/// `request` (a whole request: head and body) over TLS to `addr`, the certificate checked for `sni` against
/// `root`; the response read until the server closes.
pub fn https(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    sni: &str,
    request: &str,
) -> Http {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to https");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(crate::smtp_client::tls_config(root), name)
        .expect("TLS client");
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    // A server that closes without close_notify still sent its response.
    let _ = stream.read_to_end(&mut raw);
    parse(raw)
}

/// The certificate (leaf, DER) the TLS server at `addr` presents for `sni`, checked against `root`.
pub fn peer_leaf(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    sni: &str,
) -> rustls::pki_types::CertificateDer<'static> {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect for TLS");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(crate::smtp_client::tls_config(root), name)
        .expect("TLS client");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr} for {sni}: {e}"));
    }
    conn.peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate")
        .clone()
        .into_owned()
}

fn parse(raw: Vec<u8>) -> Http {
    let text = String::from_utf8(raw).expect("response is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    Http {
        status: lines.next().unwrap_or_default().to_string(),
        headers: lines.map(str::to_string).collect(),
        body: body.to_string(),
    }
}

/// The value of the sample `name` (a metric name with its labels, as exposed) in `body`, if present.
pub fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
