//! Small raw clients for the operational `serve` tests (the HTTP GET for the metrics endpoint is the kit's
//! [`kit::http::get`]): a STARTTLS session that reports which certificate the server presented (the shared SMTP client hides it);
//! plus a config edit the shared harness has no knob for, and a polling wait.
//!
//! Used only by the `serve_ops` tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use kit::serve::{HOSTNAME, TestServer};

/// How long any read waits before the test fails.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The DER of the first certificate in `pem` (the leaf of a chain file).
pub fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate")
}

/// Reads one (possibly multi-line) SMTP reply byte by byte (so nothing after it is consumed) and returns it.
fn reply(tcp: &mut TcpStream) -> String {
    let mut all = String::new();
    loop {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\n") {
            let n = tcp.read(&mut byte).expect("read SMTP reply");
            assert!(n > 0, "connection closed after {all:?}");
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        all += &line;
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

/// Opens a new session on `addr`, says EHLO, STARTTLS (trusting any of `roots`, for `server_name`), then
/// NOOP under TLS; returns the leaf certificate the server presented. Panics on any unexpected reply.
pub fn starttls_peer(
    addr: SocketAddr,
    roots: &[&CertificateDer<'static>],
    server_name: &str,
) -> CertificateDer<'static> {
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    tcp.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    assert!(reply(&mut tcp).starts_with("220 "), "banner");
    tcp.write_all(b"EHLO peer.far.test\r\n").expect("EHLO");
    let ehlo = reply(&mut tcp);
    assert!(ehlo.contains("STARTTLS"), "no STARTTLS offered: {ehlo}");
    tcp.write_all(b"STARTTLS\r\n").expect("STARTTLS");
    let ready = reply(&mut tcp);
    assert!(ready.starts_with("220 "), "STARTTLS refused: {ready}");

    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .unwrap_or_else(|e| panic!("TLS handshake after STARTTLS: {e}"));
    }
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .clone()
        .into_owned();
    tls.write_all(b"NOOP\r\n").expect("NOOP under TLS");
    let mut answer = [0u8; 64];
    let n = tls.read(&mut answer).expect("NOOP reply under TLS");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("250 2.0.0"), "NOOP under TLS: {answer}");
    leaf
}

/// Adds `key = "value"` to the `[server]` section of a configured (not yet launched) server's config file.
/// The shared harness has no knob for `metrics` or `delivery`, so the tests add them here.
pub fn set_server_key(server: &TestServer, key: &str, value: &str) {
    let text = std::fs::read_to_string(&server.config).expect("read config");
    let anchor = format!("[server]\nhostname = {}\n", toml::Value::from(HOSTNAME));
    assert!(text.contains(&anchor), "config layout changed:\n{text}");
    let line = format!("{key} = {}\n", toml::Value::from(value));
    let text = text.replacen(&anchor, &format!("{anchor}{line}"), 1);
    std::fs::write(&server.config, text).expect("write config");
}

/// Waits up to 10 s for `done`, polling every 50 ms.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
