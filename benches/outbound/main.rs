//! Benchmark: submission -> DKIM signing -> queue -> delivery between two local `mailctl serve` instances
//! (issue 6), 16 sessions of 4 KiB messages, once with an RSA-2048 key and once with an Ed25519 key.
//!
//! Instance A hosts `a.test` (user alice, a DKIM key generated with `mailctl dkim generate --algorithm ...`
//! and published in a loopback DNS server, SPF and DMARC `p=reject`); instance B hosts `b.test` (user bob;
//! its SPF, DKIM and DMARC checks are on, action `mark`, so every message is verified as a real receiver
//! would, and one is checked to show `dkim=pass`). `mailctl bench smtp` submits N messages to A's submission
//! listener (STARTTLS and AUTH PLAIN once per session, pipelining); meanwhile the bench counts the files in
//! bob's Maildir. It prints the submission rate (from the bench's JSON) and the end-to-end rate (N divided by
//! the time from the start until the N-th message is in B's Maildir).
//!
//! With `relay`, each algorithm runs twice in the same invocation: direct (A delivers to B's MX) and through a
//! relay host R (a third `serve`, `relay.test` at `.4`, playing the provider's submission server: A logs in
//! over STARTTLS with AUTH as `[server.outbound.relay]` says; R also hosts bob and files the mail in its own
//! Maildir for him: the provider's onward delivery happens on its machines, not on our two cores, and what the
//! next hop does with a message should cost about the same on both paths). Both report when A's queue was
//! empty, i.e. everything was handed to the next hop (B's MX, which checks and writes Maildirs; or the relay,
//! which authenticates and writes Maildirs); the end-to-end count is then B's or R's Maildir.
//!
//! With `limits`, A has sending limits for every kind (far above what the run sends), so every submitted
//! message is checked and counted in A's database (issue 16: the submission rate stays within 10%).
//!
//! Run: `cargo bench --bench outbound -- [N] [rsa2048] [ed25519] [nochecks] [relay] [limits] [per_domain=K]
//! [concurrency=K]` (N defaults to 5000; both algorithms unless named; `per_domain`/`concurrency` set A's
//! `[server.outbound]`).
//! `cargo bench` builds the binary in release mode; the daemons run through the test kit's launcher.

mod node;
mod signing;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kit::TestDb;
use kit::daemon::free_port;
use kit::dns::TestDns;
use kit::serve::{ServeOptions, TestServer};
use node::{Node, PASSWORD, Tuning, cli};

/// Sessions and message size the issue asks for.
const SESSIONS: &str = "16";
const SIZE: &str = "4096";
/// The bench's addresses: A is `.2`, B is `.3` (a subnet no test uses).
const NET: u8 = 201;
/// Give up when B's Maildir has not grown for this long.
const STALL: Duration = Duration::from_secs(120);

/// Command-line choices.
struct Args {
    n: u64,
    algorithms: Vec<&'static str>,
    checks: bool,
    relay: bool,
    limits: bool,
    outbound: Vec<(String, String)>,
}

fn args() -> Args {
    let mut a = Args {
        n: 5000,
        algorithms: Vec::new(),
        checks: true,
        relay: false,
        limits: false,
        outbound: Vec::new(),
    };
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with('-')) {
        match arg.as_str() {
            "rsa2048" => a.algorithms.push("rsa2048"),
            "ed25519" => a.algorithms.push("ed25519"),
            "nochecks" => a.checks = false,
            "relay" => a.relay = true,
            "limits" => a.limits = true,
            other => match (other.parse(), other.split_once('=')) {
                (Ok(n), _) => a.n = n,
                (_, Some((key @ ("per_domain" | "concurrency"), value))) => a
                    .outbound
                    .push((format!("outbound.{key}"), value.to_string())),
                _ => panic!("unknown argument {other:?}"),
            },
        }
    }
    if a.algorithms.is_empty() {
        a.algorithms = vec!["rsa2048", "ed25519"];
    }
    a
}

/// The DNS records of the bench besides a.test's DKIM key.
fn zone(b: Ipv4Addr, r: Ipv4Addr) -> String {
    format!(
        "a.test. IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n\
         _dmarc.a.test. IN TXT \"v=DMARC1; p=reject\"\n\
         b.test. IN MX 10 mx.b.test.\n\
         mx.b.test. IN A {b}\n\
         relay.test. IN A {r}\n"
    )
}

/// What one run measured.
struct Measured {
    submit_rate: f64,
    submit_secs: f64,
    p50_ms: f64,
    /// Seconds from the start until the bench exited, and B's and A's counts then.
    submit_end: (f64, usize, usize),
    /// Seconds from the start until A's queue was empty (everything handed to the next hop).
    handed_off_secs: f64,
    total_secs: f64,
    junk: usize,
    /// CPU time over the run of A, the next hop (B, or R through the relay), the bench client, and this process
    /// (DNS server, Maildir polling).
    cpu: [Duration; 4],
}

/// The relay host of a `relay` run: a third `serve` that knows A as `relay@r.test` (owning alice's address
/// through an alias), on `.4`, that hosts bob too and files his mail itself.
struct RelayHost {
    node: Node,
    _db: TestDb,
    /// R's CA certificate and A's password file.
    _files: tempfile::TempDir,
    /// A's `[server.outbound.relay]` keys (TOML values).
    keys: Vec<(String, String)>,
}

impl RelayHost {
    fn start(dns: &TestDns, ip: Ipv4Addr, port: u16) -> RelayHost {
        let db = TestDb::sqlite();
        let pw = format!("{PASSWORD}\n");
        cli(&db, &["domain", "add", "r.test"], "");
        cli(
            &db,
            &["mailbox", "add", "relay@r.test", "--password-stdin"],
            &pw,
        );
        cli(&db, &["domain", "add", "a.test"], "");
        cli(&db, &["alias", "add", "alice@a.test", "relay@r.test"], "");
        // R plays the provider and takes the mail for good: its onward delivery is not what is measured (it
        // happens on the provider's machines, and here it would take CPU from A on the same two cores), so R
        // is bob's home too and writes his Maildir, as B does.
        cli(&db, &["domain", "add", "b.test"], "");
        cli(
            &db,
            &["mailbox", "add", "bob@b.test", "--password-stdin"],
            &pw,
        );
        let options = ServeOptions::default().dns(dns).hostname("relay.test");
        let tuning = Tuning {
            port,
            outbound: Vec::new(),
        };
        let node = Node::start(&db, options, ip, true, &tuning);
        let files = tempfile::tempdir().expect("tempdir");
        let (ca, secret) = (files.path().join("ca.pem"), files.path().join("secret"));
        let cert = node.server.cert.as_ref().expect("R has TLS");
        std::fs::write(&ca, &cert.ca_pem).expect("CA file");
        std::fs::write(&secret, &pw).expect("password file");
        let text = |v: String| toml::Value::from(v).to_string();
        let url = format!("smtp://relay.test:{}", node.addr("submission").port());
        let keys = vec![
            ("outbound.relay.url".to_string(), text(url)),
            (
                "outbound.relay.ca".into(),
                text(ca.to_string_lossy().into_owned()),
            ),
            (
                "outbound.relay.username".into(),
                text("relay@r.test".into()),
            ),
            (
                "outbound.relay.password_file".into(),
                text(secret.to_string_lossy().into_owned()),
            ),
        ];
        RelayHost {
            node,
            _db: db,
            _files: files,
            keys,
        }
    }
}

fn run(algorithm: &str, args: &Args, via_relay: bool) -> Measured {
    let a_db = TestDb::sqlite();
    cli(&a_db, &["domain", "add", "a.test"], "");
    let pw = format!("{PASSWORD}\n");
    cli(
        &a_db,
        &["mailbox", "add", "alice@a.test", "--password-stdin"],
        &pw,
    );
    let generate = ["dkim", "generate", "a.test", "--selector", "sel"];
    cli(
        &a_db,
        &[&generate[..], &["--algorithm", algorithm]].concat(),
        "",
    );
    let key = cli(&a_db, &["dkim", "show", "a.test", "--format", "zone"], "");
    if args.limits {
        // Limits far above what the run sends: every message is checked and counted, none refused.
        let high = "1000000000";
        cli(
            &a_db,
            &[
                "limits",
                "set",
                "default",
                "--messages-per-hour",
                high,
                "--recipients-per-day",
                high,
                "--new-recipients-per-day",
                high,
            ],
            "",
        );
    }
    let b_db = TestDb::sqlite();
    cli(&b_db, &["domain", "add", "b.test"], "");
    cli(
        &b_db,
        &["mailbox", "add", "bob@b.test", "--password-stdin"],
        &pw,
    );

    let ip = |host: u8| Ipv4Addr::new(127, 0, NET, host);
    let (a_ip, b_ip, r_ip) = (ip(2), ip(3), ip(4));
    let dns = TestDns::start(&[("test.", &format!("{}{key}", zone(b_ip, r_ip)))]);
    let port = free_port(&[a_ip, b_ip, r_ip]);
    let mut b_options = ServeOptions::default().dns(&dns);
    if args.checks {
        for check in ["spf", "dkim", "dmarc"] {
            b_options = b_options.check(check, "mark");
        }
    }
    let plain = Tuning {
        port,
        outbound: Vec::new(),
    };
    let b = Node::start(&b_db, b_options, b_ip, false, &plain);
    let relay = via_relay.then(|| RelayHost::start(&dns, r_ip, port));
    let mut outbound = args.outbound.clone();
    if let Some(r) = &relay {
        outbound.extend(r.keys.iter().cloned());
    }
    let tuned = Tuning { port, outbound };
    let a = Node::start(&a_db, ServeOptions::default().dns(&dns), a_ip, true, &tuned);

    let [inbox, junk] = b.maildirs("bob@b.test");
    // Direct: what reached B's Maildir. Through the relay: R's (see RelayHost).
    let [r_inbox, r_junk] = match &relay {
        Some(r) => r.node.maildirs("bob@b.test"),
        None => [inbox.clone(), junk.clone()],
    };
    let delivered = || TestServer::count(&r_inbox) + TestServer::count(&r_junk);
    let login = format!("alice@a.test:{PASSWORD}");
    let (n, submission) = (args.n.to_string(), a.addr("submission").to_string());
    // The next hop's CPU: B's for direct delivery, R's through the relay (B is idle then).
    let next_hop = || relay.as_ref().map_or_else(|| b.cpu(), |r| r.node.cpu());
    let cpu_before = [
        a.cpu(),
        next_hop(),
        kit::os::rusage(libc::RUSAGE_CHILDREN),
        kit::os::rusage(libc::RUSAGE_SELF),
    ];
    let start = Instant::now();
    let mut bench = Command::new(kit::mailctl())
        .args(["--json", "bench", "smtp", &submission, "--auth", &login])
        .args([
            "--to",
            "bob@b.test",
            "--sessions",
            SESSIONS,
            "--messages",
            &n,
        ])
        .args(["--size", SIZE, "--pipelining"])
        .env_clear()
        .env("HOME", a_db.path("bench-home"))
        .env("MAILCTL_CONFIG", a_db.path("mailctl.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailctl bench smtp");
    let mut at_submit_end = None;
    let mut handed_off = None;
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        if at_submit_end.is_none() && bench.try_wait().expect("wait for the bench").is_some() {
            at_submit_end = Some((start.elapsed().as_secs_f64(), delivered(), a.queued()));
        }
        if at_submit_end.is_some() && handed_off.is_none() && a.queued() == 0 {
            handed_off = Some(start.elapsed().as_secs_f64());
        }
        let now = delivered();
        if now as u64 >= args.n {
            break;
        }
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if last_change.elapsed() > STALL {
            panic!(
                "{now} of {} delivered, no progress for {STALL:?}\n--- A ---\n{}\n--- B ---\n{}{}",
                args.n,
                tail(&a.log()),
                tail(&b.log()),
                relay
                    .as_ref()
                    .map(|r| format!("\n--- R ---\n{}", tail(&r.node.log())))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let total = start.elapsed();
    while handed_off.is_none() && a.queued() > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let handed_off = handed_off.unwrap_or(total.as_secs_f64());
    let out = bench.wait_with_output().expect("bench output");
    let cpu_after = [
        a.cpu(),
        next_hop(),
        kit::os::rusage(libc::RUSAGE_CHILDREN),
        kit::os::rusage(libc::RUSAGE_SELF),
    ];
    assert!(
        out.status.success(),
        "bench smtp failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    let submit_end = at_submit_end.unwrap_or((total.as_secs_f64(), args.n as usize, 0));
    if args.checks && relay.is_none() {
        check_one(&inbox, &junk);
    }
    Measured {
        submit_rate: report["messages_per_second"].as_f64().unwrap_or(0.0),
        submit_secs: report["elapsed_seconds"].as_f64().unwrap_or(0.0),
        p50_ms: report["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
        submit_end,
        handed_off_secs: handed_off,
        total_secs: total.as_secs_f64(),
        junk: TestServer::count(&junk),
        cpu: std::array::from_fn(|i| cpu_after[i].saturating_sub(cpu_before[i])),
    }
}

/// One delivered message must show B's verdict `dkim=pass`, `spf=pass` and `dmarc=pass`, and nothing may
/// have gone to Junk: otherwise the bench would not be measuring what it claims.
fn check_one(inbox: &std::path::Path, junk: &std::path::Path) {
    let first = std::fs::read_dir(inbox)
        .expect("B's inbox")
        .filter_map(Result::ok)
        .next()
        .expect("a delivered message");
    let text = std::fs::read_to_string(first.path()).expect("read message");
    let head = &text[..text.find("\r\n\r\n").unwrap_or(text.len())];
    for verdict in ["dkim=pass", "spf=pass", "dmarc=pass"] {
        assert!(head.contains(verdict), "no {verdict} in:\n{head}");
    }
    assert_eq!(TestServer::count(junk), 0, "messages were filed as Junk");
}

/// The last lines of a daemon log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn main() {
    let args = args();
    let checks = match args.checks {
        true => "B checks SPF, DKIM and DMARC (mark)",
        false => "B's checks off",
    };
    println!(
        "outbound: {} messages of {SIZE} bytes over {SESSIONS} sessions (STARTTLS + AUTH, pipelining); {checks}; \
         sending limits {}; A's outbound settings: {}",
        args.n,
        match args.limits {
            true => "on (every message counted)",
            false => "off",
        },
        match args.outbound.is_empty() {
            true => "defaults (concurrency 20, per_domain 4)".to_string(),
            false => {
                let keys: Vec<String> = args
                    .outbound
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                keys.join(", ")
            }
        }
    );
    for algorithm in &args.algorithms {
        let m = run(algorithm, &args, false);
        report(algorithm, &args, &m, "direct");
        if args.relay {
            let r = run(algorithm, &args, true);
            report(algorithm, &args, &r, "relay");
            println!(
                "          A handed everything to the next hop: direct {:.1} msg/s, through the relay {:.1} msg/s \
                 ({:.2}x)",
                args.n as f64 / m.handed_off_secs,
                args.n as f64 / r.handed_off_secs,
                m.handed_off_secs / r.handed_off_secs
            );
        }
    }
}

fn report(algorithm: &str, args: &Args, m: &Measured, path: &str) {
    let n = args.n as f64;
    let (end, delivered, queued) = m.submit_end;
    println!(
        "{algorithm:>8} {path}: A's queue empty after {:.2} s",
        m.handed_off_secs
    );
    let at = match path {
        "relay" => "R's Maildir",
        _ => "B's Maildir",
    };
    println!(
        "{algorithm:>8}: submission {:.1} msg/s ({:.2} s, p50 {:.1} ms), end to end {:.1} msg/s ({} in {at} \
         after {:.2} s){}",
        m.submit_rate,
        m.submit_secs,
        m.p50_ms,
        n / m.total_secs,
        args.n,
        m.total_secs,
        match m.junk {
            0 => String::new(),
            j => format!(", {j} in Junk"),
        }
    );
    let drain = (n - delivered as f64) / (m.total_secs - end).max(0.001);
    println!(
        "          delivery: {delivered} delivered ({:.1} msg/s) and {queued} queued when submission ended, \
         then {:.1} msg/s until the queue was empty",
        delivered as f64 / end.max(0.001),
        drain
    );
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / n;
    let total: Duration = m.cpu.iter().sum();
    let hop = if path == "relay" { "R" } else { "B" };
    println!(
        "          CPU per message: A {:.2} ms, {hop} {:.2} ms, bench client {:.2} ms, harness (DNS, polling) {:.2} ms; \
         total {:.2} ms (2 cores: at most {:.0} msg/s)",
        per(m.cpu[0]),
        per(m.cpu[1]),
        per(m.cpu[2]),
        per(m.cpu[3]),
        per(total),
        2000.0 / per(total).max(0.001)
    );
    let cost = signing::measure(algorithm, 200);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rsa = cost
        .rsa_crate
        .map(|d| format!("; by the pure-Rust rsa crate {:.3} ms", ms(d)))
        .unwrap_or_default();
    println!(
        "          signing per message in serve: {:.3} ms (key parsed once; parsing it again would add {:.3} ms){rsa}",
        ms(cost.serve),
        ms(cost.load)
    );
}
