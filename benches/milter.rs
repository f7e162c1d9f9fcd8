//! Benchmark: what a milter costs inbound (issue 16). One `mailctl serve` (MX listener, checks off, SQLite,
//! Maildir delivery) takes N messages of 4 KiB over 16 sessions from `mailctl bench smtp`, three times:
//! - without a milter;
//! - with a no-op milter that wants every event and answers each (CONNECT, HELO, MAIL, RCPT, DATA, every header
//!   field, the end of the header, the body, the end of the message: about 20 round trips per message, the
//!   worst case);
//! - with a no-op milter that asks not to answer anything but the end of the message (`SMFIP_NR_*`, as rspamd
//!   does: one round trip).
//!
//! The milter is in this file (a thread per connection, answering `continue`), so the numbers are serve's
//! client side of the protocol and not some filter's work. Prints the accepted rate, p50/p99 from the bench's
//! JSON and serve's CPU per message from `/proc`.
//!
//! Run: `cargo bench --bench milter -- [N]` (N defaults to 20000).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use kit::TestDb;
use kit::serve::mail::example;
use kit::serve::{ServeOptions, TestServer};

/// The no-op milter's answers to option negotiation: version 6, no actions; which steps it wants no reply to.
fn optneg(no_replies: bool) -> Vec<u8> {
    // SMFIP_NR_HDR | NR_CONN | NR_HELO | NR_MAIL | NR_RCPT | NR_DATA | NR_UNKN | NR_EOH | NR_BODY
    let steps: u32 = if no_replies {
        0x80 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000
    } else {
        0
    };
    let mut data = vec![b'O'];
    data.extend_from_slice(&6u32.to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(&steps.to_be_bytes());
    data
}

fn reply(stream: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    stream.write_all(&out)
}

/// One milter conversation: `continue` to every event that wants a reply, until QUIT or the connection ends.
fn converse(mut stream: TcpStream, no_replies: bool) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut len = [0u8; 4];
    loop {
        stream.read_exact(&mut len)?;
        let mut packet = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut packet)?;
        match packet.first() {
            Some(b'O') => reply(&mut stream, &optneg(no_replies))?,
            Some(b'Q') | None => return Ok(()),
            // Macros never get a reply.
            Some(b'D') => {}
            Some(b'E') => reply(&mut stream, b"c")?,
            Some(_) if no_replies => {}
            Some(_) => reply(&mut stream, b"c")?,
        }
    }
}

/// Starts the no-op milter on a loopback port; returns its `inet:` address.
fn noop_milter(no_replies: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the milter");
    let addr = listener.local_addr().expect("milter address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || converse(stream, no_replies));
        }
    });
    format!("inet:{addr}")
}

/// One run: rate, p50 and p99 (ms), serve's CPU per message (µs).
fn run(db: &TestDb, n: usize, milter: Option<String>) -> (f64, f64, f64, f64) {
    let mut options = ServeOptions::default().limit("max_connections_per_ip", 1000);
    if let Some(address) = milter {
        options = options.server_key(
            "milters",
            format!("[{{ address = \"{address}\", concurrency = 64 }}]"),
        );
    }
    let server = TestServer::start(db, options);
    let before = server.daemon.cpu();
    let out = Command::new(kit::mailctl())
        .args(["--json", "bench", "smtp", &server.smtp().to_string()])
        .args(["--to", "bob@example.test", "--sessions", "16"])
        .args(["--messages", &n.to_string(), "--size", "4096"])
        .env_clear()
        .env("HOME", db.path("bench-home"))
        .output()
        .expect("run mailctl bench smtp");
    assert!(
        out.status.success(),
        "bench smtp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = server.daemon.cpu() - before;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    let accepted = json["accepted"].as_u64().unwrap_or(0) as usize;
    assert_eq!(
        accepted,
        n,
        "every message accepted: {json}\n{}",
        server.log()
    );
    let ms = |key: &str| json["latency_ms"][key].as_f64().unwrap_or(f64::NAN);
    (
        json["messages_per_second"].as_f64().unwrap_or(f64::NAN),
        ms("p50"),
        ms("p99"),
        cpu.as_secs_f64() * 1e6 / n as f64,
    )
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let db = TestDb::sqlite();
    example(&db);
    println!(
        "milter: {n} messages of 4 KiB over 16 sessions to the MX listener (checks off, SQLite, Maildir)"
    );
    println!("| milter | accepted/s | p50 | p99 | serve CPU per message |");
    println!("|---|---|---|---|---|");
    for (name, milter) in [
        ("none", None),
        (
            "no-op, answers every event (~20 round trips)",
            Some(noop_milter(false)),
        ),
        (
            "no-op, answers the end of message only (NR flags, as rspamd)",
            Some(noop_milter(true)),
        ),
    ] {
        let (rate, p50, p99, cpu) = run(&db, n, milter);
        println!("| {name} | {rate:.0} | {p50:.1} ms | {p99:.1} ms | {cpu:.0} µs |");
    }
}
