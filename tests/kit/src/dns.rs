//! An in-process authoritative DNS server for integration tests.
//!
//! [`TestDns::start`] loads BIND zone text into hickory-server's in-memory zone handlers and serves them on
//! `127.0.0.1` (UDP and TCP on the same random port) from a private thread and tokio runtime, so the real
//! `mailctl` binary can be pointed at it with `--nameserver 127.0.0.1:PORT`. Nothing listens or is sent beyond
//! loopback; names outside the served zones are answered by the catalog itself (REFUSED), never forwarded.
//!
//! hickory-proto's zone lexer (0.26) does not understand quoted strings inside `( … )`: there a `"` is kept as
//! a literal character and a `;` or blank inside the quotes ends the token, which silently mangles the usual
//! multi-line DKIM TXT record. [`join_parenthesized`] therefore joins every parenthesized group onto one line
//! (and drops comments) before parsing, as BIND does; quoted strings on a single line are handled correctly.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::rr::{LowerName, Name};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::serialize::txt::Parser;
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

/// How long an idle TCP connection is kept open by the server.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-connection buffer for outgoing TCP responses (the value hickory-server's own tests use).
const TCP_RESPONSE_BUFFER: usize = 32;
/// How many random ports to try before giving up on finding one free for both UDP and TCP.
const BIND_ATTEMPTS: usize = 50;

/// An authoritative DNS server on 127.0.0.1 (UDP and TCP on the same random port) serving one or more zones,
/// running on its own thread and tokio runtime until dropped.
pub struct TestDns {
    /// The address both the UDP socket and the TCP listener are bound to.
    pub addr: SocketAddr,
    /// Cancels the server's shutdown token (boxed so the `tokio_util` type need not be named here).
    stop: Option<Box<dyn FnOnce() + Send>>,
    /// The thread driving the server's runtime; it returns once every listener task has ended.
    thread: Option<JoinHandle<()>>,
}

impl TestDns {
    /// Serves `zones`: each (origin like "example.org.", zone body text). The body is a BIND zone fragment as a
    /// tool would print it (absolute names with trailing dots, TTLs, `IN`, TXT values split into several quoted
    /// strings inside parentheses across lines, `;` comments, possibly blank lines); this function prepends
    /// `$ORIGIN`, `$TTL 300`, an SOA and an NS record so the zone loads. Panics with the parser's message (and
    /// the zone text) if the zone does not load.
    pub fn start(zones: &[(&str, &str)]) -> TestDns {
        let mut catalog = Catalog::new();
        for (origin, body) in zones {
            let (name, handler) = load_zone(origin, body);
            catalog.upsert(LowerName::new(&name), vec![handler]);
        }

        let (udp, tcp) = bind_loopback_pair();
        let addr = udp.local_addr().expect("local address of the UDP socket");

        // A current-thread runtime: the registered tasks only run once the server thread calls `block_on`, but
        // the sockets are already bound, so queries sent before then simply wait in the kernel's buffers.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the DNS server's tokio runtime");
        let mut server = {
            let _context = runtime.enter();
            let mut server = Server::new(catalog);
            server.register_socket(
                tokio::net::UdpSocket::from_std(udp).expect("register UDP socket"),
            );
            server.register_listener(
                tokio::net::TcpListener::from_std(tcp).expect("register TCP listener"),
                TCP_TIMEOUT,
                TCP_RESPONSE_BUFFER,
            );
            server
        };
        let token = server.shutdown_token().clone();
        let stop: Box<dyn FnOnce() + Send> = Box::new(move || token.cancel());

        let thread = std::thread::Builder::new()
            .name(format!("test-dns-{}", addr.port()))
            .spawn(move || {
                if let Err(error) = runtime.block_on(server.block_until_done()) {
                    eprintln!("test DNS server on {addr} stopped with an error: {error}");
                }
                // Dropping the server and then the runtime closes both sockets before `Drop` returns.
                drop(server);
                drop(runtime);
            })
            .expect("spawn the DNS server thread");

        TestDns {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// "127.0.0.1:PORT" for --nameserver.
    pub fn nameserver(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestDns {
    /// Cancels the server and waits for its thread, so the port is closed once the value is gone.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            // Don't double-panic if the test is already unwinding.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the test DNS server thread on {} panicked", self.addr);
            }
        }
    }
}

/// Parses one zone (header + `body`) into an authoritative in-memory zone handler.
fn load_zone(origin: &str, body: &str) -> (Name, Arc<dyn ZoneHandler>) {
    let origin = if origin.ends_with('.') {
        origin.to_owned()
    } else {
        format!("{origin}.")
    };
    let name = Name::from_ascii(&origin)
        .unwrap_or_else(|error| panic!("invalid zone origin {origin:?}: {error}"));
    let text = join_parenthesized(&zone_text(&origin, body));

    let fail = |what: &str, error: &dyn std::fmt::Display| -> ! {
        panic!(
            "test DNS zone {origin} does not load ({what}): {error}\n\
             zone text as parsed (parenthesized groups joined onto one line, comments dropped):\n{}",
            numbered(&text)
        )
    };
    let (parsed_origin, records) = Parser::new(text.as_str(), None, Some(name.clone()))
        .parse()
        .unwrap_or_else(|error| fail("parse error", &error));
    if parsed_origin != name {
        fail(
            "origin mismatch",
            &format!("parser reports origin {parsed_origin}"),
        );
    }
    // A record that parses but cannot be put on the wire (e.g. a TXT string over 255 bytes) would otherwise
    // surface much later as SERVFAIL over TCP and a silent timeout over UDP.
    for record in records
        .values()
        .flat_map(|set| set.records_without_rrsigs())
    {
        if let Err(error) = record.to_bytes() {
            fail("record cannot be encoded", &format!("{record}: {error}"));
        }
    }
    let handler: InMemoryZoneHandler =
        InMemoryZoneHandler::new(name.clone(), records, ZoneType::Primary, AxfrPolicy::Deny)
            .unwrap_or_else(|error| fail("zone rejected", &error));
    (name, Arc::new(handler))
}

/// The zone file the server loads: `$ORIGIN`, `$TTL 300`, an SOA and an NS record, then `body` verbatim.
fn zone_text(origin: &str, body: &str) -> String {
    let mut text = String::new();
    writeln!(text, "$ORIGIN {origin}").unwrap();
    writeln!(text, "$TTL 300").unwrap();
    writeln!(
        text,
        "@ IN SOA ns1.{origin} hostmaster.{origin} 1 3600 600 86400 300"
    )
    .unwrap();
    writeln!(text, "@ IN NS ns1.{origin}").unwrap();
    text.push_str(body);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Rewrites zone text so that every parenthesized group sits on one line: outside quoted strings, `(` and `)`
/// become blanks, line breaks inside them become blanks, and `;` comments are dropped. Quoted strings and
/// backslash escapes are copied unchanged. A stray `)` is kept, so the parser reports it.
fn join_parenthesized(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let mut depth = 0usize;
    let mut in_quote = false;
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                out.push(ch);
                out.extend(chars.next());
            }
            '"' => {
                in_quote = !in_quote;
                out.push(ch);
            }
            _ if in_quote => out.push(ch),
            ';' => {
                // Skip the comment but keep the line break that ends it (handled on the next iteration).
                let rest = chars.as_str();
                let end = rest.find('\n').unwrap_or(rest.len());
                chars = rest[end..].chars();
            }
            '(' => {
                depth += 1;
                out.push(' ');
            }
            ')' if depth > 0 => {
                depth -= 1;
                out.push(' ');
            }
            '\n' | '\r' if depth > 0 => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

/// `text` with 1-based line numbers, for panic messages that point at the offending line.
fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(index, line)| format!("{:>4} | {line}\n", index + 1))
        .collect()
}

/// Binds a non-blocking UDP socket on a random loopback port and a TCP listener on the same port, retrying
/// with a fresh port when the TCP side is already taken.
fn bind_loopback_pair() -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        let udp =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP socket on 127.0.0.1");
        let addr = udp.local_addr().expect("local address of the UDP socket");
        match TcpListener::bind(addr) {
            Ok(tcp) => {
                udp.set_nonblocking(true)
                    .expect("make the UDP socket non-blocking");
                tcp.set_nonblocking(true)
                    .expect("make the TCP listener non-blocking");
                return (udp, tcp);
            }
            Err(error) => last_error = Some(error),
        }
    }
    panic!(
        "no loopback port free for both UDP and TCP after {BIND_ATTEMPTS} attempts: {}",
        last_error.expect("at least one attempt")
    );
}
