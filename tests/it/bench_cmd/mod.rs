//! `mailctl bench smtp` and `bench connections` against a tiny in-test SMTP sink: counts, JSON, message size and
//! dot-stuffing as the server sees them, the `--log` of acknowledged Message-IDs, retries after dropped
//! connections, refusals, and exit codes.

mod auth;
mod sink;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use kit::{Run, TestDb};
use sink::{Behaviour, Received, Sink};

fn bench(db: &TestDb, args: &[&str]) -> Run {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    db.run(&all)
}

fn message_id(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let line = text
        .lines()
        .find(|l| l.starts_with("Message-ID: "))
        .unwrap_or_else(|| panic!("no Message-ID in {text}"));
    line["Message-ID: ".len()..].trim().to_string()
}

/// Every check the brief makes on one received message: size within 5%, CRLF everywhere, headers, 76-character
/// body lines with leading dots unstuffed exactly once.
fn check_message(data: &[u8], size: usize) {
    let (low, high) = (size * 95 / 100, size * 105 / 100);
    assert!((low..=high).contains(&data.len()), "size {}", data.len());
    let text = std::str::from_utf8(data).unwrap();
    assert!(text.ends_with("\r\n"));
    assert_eq!(
        text.matches('\n').count(),
        text.matches("\r\n").count(),
        "bare LF"
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    for h in [
        "From: ",
        "To: <alice@example.test>",
        "Subject: ",
        "Date: ",
        "Message-ID: <",
    ] {
        assert!(head.contains(h), "no {h} in {head}");
    }
    let lines: Vec<&str> = body.trim_end_matches("\r\n").split("\r\n").collect();
    for l in &lines[..lines.len() - 1] {
        assert_eq!(l.len(), 76, "body line {l:?}");
        assert!(!l.starts_with(".."), "dot-stuffed twice: {l:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with('.')),
        "no line starts with a dot"
    );
}

fn log_ids(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (id, reply) = l.split_once(' ').unwrap();
            (id.to_string(), reply.to_string())
        })
        .collect()
}

/// The log lists every acknowledged message once, with its queue id, and nothing else.
fn check_log(path: &std::path::Path, received: &[Received]) {
    let logged = log_ids(path);
    let acked: BTreeSet<(String, String)> = received
        .iter()
        .filter_map(|r| {
            r.queue_id
                .as_ref()
                .map(|q| (message_id(&r.data), q.clone()))
        })
        .collect();
    assert_eq!(logged.len(), acked.len(), "log: {logged:?}");
    for (id, reply) in &logged {
        let q = reply.rsplit(' ').next().unwrap();
        assert!(reply.starts_with("2.0.0 Ok: queued as "), "{reply}");
        assert!(
            acked.contains(&(id.clone(), q.to_string())),
            "{id} {reply} not acked"
        );
    }
}

#[test]
fn pipelined_run_delivers_every_message_with_size_stuffing_and_log() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour::default());
    let log = db.path("accepted.log");
    let addr = sink.addr.to_string();
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--sessions",
            "4",
            "--messages",
            "60",
            "--size",
            "4096",
            "--pipelining",
            "--log",
            log.to_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    let j = run.json();
    assert_eq!(j["sessions"], 4);
    assert_eq!(j["messages"], 60);
    assert_eq!(j["accepted"], 60);
    assert_eq!(j["rejected"], 0);
    assert_eq!(j["errors"], 0);
    assert_eq!(j["pipelined"], true);
    assert!(j["elapsed_seconds"].as_f64().unwrap() > 0.0);
    assert!(j["messages_per_second"].as_f64().unwrap() > 0.0);
    let latency = |p: &str| j["latency_ms"][p].as_f64().unwrap();
    let (p50, p90, p99, max) = (
        latency("p50"),
        latency("p90"),
        latency("p99"),
        latency("max"),
    );
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= max,
        "{p50} {p90} {p99} {max}"
    );
    assert!(max > 0.0, "latencies were measured");
    let received = sink.received();
    assert_eq!(received.len(), 60);
    assert_eq!(sink.state.pipelined.load(Ordering::SeqCst), 60);
    for r in &received {
        check_message(&r.data, 4096);
    }
    let ids: BTreeSet<String> = received.iter().map(|r| message_id(&r.data)).collect();
    assert_eq!(ids.len(), 60, "Message-IDs repeat");
    check_log(&log, &received);
}

#[test]
fn plain_run_prints_a_table_and_does_not_pipeline() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour::default());
    let addr = sink.addr.to_string();
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--sessions",
            "2",
            "--messages",
            "10",
            "--size",
            "20000",
        ],
    )
    .ok();
    assert!(run.stdout.contains("accepted"), "{}", run.stdout);
    assert!(run.stdout.contains("latency p99"), "{}", run.stdout);
    assert_eq!(sink.state.pipelined.load(Ordering::SeqCst), 0);
    let received = sink.received();
    assert_eq!(received.len(), 10);
    for r in &received {
        check_message(&r.data, 20000);
    }
    assert_eq!(
        sink.state.connections.load(Ordering::SeqCst),
        2,
        "one connection per session"
    );
}

/// `--new-connection`: one connection per message, as smtp-source sends by default; `--server-pid` reports
/// the server's CPU per accepted message from /proc (here the sink's own process, the test).
#[test]
fn new_connection_opens_one_connection_per_message_and_server_cpu_is_reported() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour::default());
    let addr = sink.addr.to_string();
    let pid = std::process::id().to_string();
    let run = bench(
        &db,
        &[
            "--json",
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--sessions",
            "2",
            "--messages",
            "12",
            "--new-connection",
            "--server-pid",
            &pid,
        ],
    )
    .ok();
    let report = run.json();
    assert_eq!(report["accepted"], 12, "{report}");
    assert_eq!(report["new_connection"], true);
    assert!(
        report["server_cpu_us_per_message"].as_f64().is_some(),
        "{report}"
    );
    assert_eq!(sink.received().len(), 12);
    assert_eq!(sink.state.connections.load(Ordering::SeqCst), 12);
    let gone = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--messages",
            "1",
            "--server-pid",
            "999999999",
        ],
    );
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(
        gone.stderr.contains("--server-pid 999999999"),
        "{}",
        gone.stderr
    );
}

#[test]
fn refused_recipients_are_counted_by_code_and_exit_1() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour {
        reject_rcpt: true,
        ..Default::default()
    });
    let addr = sink.addr.to_string();
    for pipelining in [true, false] {
        let mut args = vec![
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--sessions",
            "2",
            "--messages",
            "10",
            "--json",
        ];
        if pipelining {
            args.push("--pipelining");
        }
        let run = bench(&db, &args);
        let j = run.json();
        let run = run.fails(1, "0 of 10 messages accepted");
        assert_eq!(j["accepted"], 0, "{}", run.stdout);
        assert_eq!(j["rejected"], 10);
        assert_eq!(j["rejected_by_code"]["550"], 10);
        assert_eq!(j["errors"], 0);
    }
    assert!(sink.received().is_empty());
}

#[test]
fn dropped_connections_are_retried_and_only_acknowledged_messages_are_logged() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour {
        drop_every: Some(3),
        ..Default::default()
    });
    let log = db.path("accepted.log");
    let addr = sink.addr.to_string();
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--sessions",
            "2",
            "--messages",
            "20",
            "--pipelining",
            "--log",
            log.to_str().unwrap(),
            "--json",
        ],
    )
    .ok();
    let j = run.json();
    assert_eq!(j["accepted"], 20);
    assert!(j["errors"].as_u64().unwrap() >= 5, "{}", run.stdout);
    let received = sink.received();
    let unacked = received.iter().filter(|r| r.queue_id.is_none()).count();
    assert!(unacked >= 5);
    assert_eq!(received.len() - unacked, 20);
    check_log(&log, &received);
}

#[test]
fn duration_stops_a_run_that_cannot_finish() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour::default());
    let addr = sink.addr.to_string();
    let run = bench(
        &db,
        &[
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--sessions",
            "2",
            "--messages",
            "100000000",
            "--size",
            "1000",
            "--duration",
            "1",
            "--json",
        ],
    );
    let j = run.json();
    run.fails(1, "messages accepted");
    assert!(j["accepted"].as_u64().unwrap() > 0);
    assert!(j["elapsed_seconds"].as_f64().unwrap() < 8.0);
}

#[test]
fn unreachable_address_exits_3() {
    let db = TestDb::sqlite();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    bench(
        &db,
        &[
            "smtp",
            &addr,
            "--to",
            "alice@example.test",
            "--messages",
            "5",
        ],
    )
    .fails(3, &format!("cannot connect to {addr}"));
    bench(&db, &["connections", &addr, "--count", "5", "--hold", "0"])
        .fails(3, &format!("cannot connect to {addr}"));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let db = TestDb::sqlite();
    let run = bench(
        &db,
        &[
            "smtp",
            "127.0.0.1:25",
            "--to",
            "a@example.test",
            "--sessions",
            "0",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = bench(&db, &["smtp", "localhost", "--to", "a@example.test"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    bench(&db, &["smtp", "127.0.0.1:25", "--to", "not an address"]).fails(2, "--to");
}

#[test]
fn connections_are_held_and_the_server_memory_is_reported() {
    let db = TestDb::sqlite();
    let sink = Sink::start(Behaviour::default());
    let (addr, pid) = (sink.addr.to_string(), std::process::id().to_string());
    let run = bench(
        &db,
        &[
            "connections",
            &addr,
            "--count",
            "200",
            "--hold",
            "1",
            "--batch",
            "50",
            "--server-pid",
            &pid,
            "--json",
        ],
    )
    .ok();
    let j = run.json();
    assert_eq!(j["count"], 200);
    assert_eq!(j["established"], 200);
    assert_eq!(j["still_open"], 200);
    assert_eq!(j["refused"], 0);
    assert_eq!(j["failed"], 0);
    assert!(j["hold_seconds"].as_f64().unwrap() >= 1.0);
    assert_eq!(j["server"]["pid"].as_u64().unwrap().to_string(), pid);
    assert!(j["server"]["vm_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(
        j["server"]["vm_hwm_mib"].as_f64().unwrap() >= j["server"]["vm_rss_mib"].as_f64().unwrap()
    );
    assert!(sink.state.max_open.load(Ordering::SeqCst) >= 200);
}

#[test]
fn more_connections_than_the_file_limit_allows_fail_in_one_line() {
    let db = TestDb::sqlite();
    bench(
        &db,
        &["connections", "127.0.0.1:25", "--count", "4000000000"],
    )
    .fails(1, "open files");
}
