//! Benchmark: `mailctl audit` of 1,000 healthy domains, each with its own MX host, IP and PTR (so nothing is
//! answered from the cache of a neighbour), served by a loopback authoritative DNS server, with
//! `--no-connect`, in one run. Run with `cargo bench --bench audit` (optionally `-- DOMAINS RUNS`); it prints
//! the wall time of each run and fails if any domain is not healthy (so a fast run never hides wrong results).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fixed Ed25519 DKIM public key: the bench checks publication and syntax, not signatures.
const DKIM_P: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// The address of domain `i`'s own MX host, in the benchmarking range 198.18.0.0/15.
fn ip_of(i: usize) -> (usize, usize) {
    (i / 250, i % 250 + 1)
}

fn zones(n: usize) -> (String, String, String) {
    let mut zone = String::new();
    let mut reverse = String::new();
    for i in 0..n {
        let d = format!("d{i:04}.bench.example.");
        let (x, y) = ip_of(i);
        zone.push_str(&format!(
            "{d} 300 IN MX 10 mx.{d}\n\
             mx.{d} 300 IN A 198.18.{x}.{y}\n\
             {d} 300 IN TXT \"v=spf1 mx -all\"\n\
             m1._domainkey.{d} 300 IN TXT \"v=DKIM1; k=ed25519; p={DKIM_P}\"\n\
             _dmarc.{d} 300 IN TXT \"v=DMARC1; p=reject; rua=mailto:postmaster@{}\"\n\
             _mta-sts.{d} 300 IN TXT \"v=STSv1; id=20261128\"\n\
             _smtp._tls.{d} 300 IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@{}\"\n",
            d.trim_end_matches('.'),
            d.trim_end_matches('.')
        ));
        reverse.push_str(&format!("{y}.{x}.18.198.in-addr.arpa. 300 IN PTR mx.{d}\n"));
    }
    let lists = "2.0.0.127.rbl.lists.example. 300 IN A 127.0.0.2\n\
                 test.dbl.lists.example. 300 IN A 127.0.1.2\n"
        .to_string();
    (zone, reverse, lists)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let (zone, reverse, lists) = zones(n);
    // `example.` answers NXDOMAIN where DMARC's tree walk climbs (`_dmarc.example.`); REFUSED would be UNKNOWN.
    let server = kit::dns::TestDns::start(&[
        ("bench.example.", &zone),
        ("18.198.in-addr.arpa.", &reverse),
        ("lists.example.", &lists),
        ("example.", ""),
    ]);
    let home = std::env::temp_dir().join(format!("mailctl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("temp dir");
    std::fs::write(home.join("mailctl.toml"), "").expect("config");
    let domains: Vec<String> = (0..n).map(|i| format!("d{i:04}.bench.example")).collect();
    let ns = server.nameserver();
    let mut times = Vec::new();
    for run in 0..runs {
        let start = Instant::now();
        let out = Command::new(kit::mailctl())
            .args([
                "--json",
                "audit",
                "--no-connect",
                "--nameserver",
                &ns,
                "--selector",
                "m1",
            ])
            .args(["--rbl", "rbl.lists.example", "--dbl", "dbl.lists.example"])
            .args(&domains)
            .env_clear()
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("MAILCTL_CONFIG", home.join("mailctl.toml"))
            .stdin(Stdio::null())
            .output()
            .expect("run mailctl");
        let elapsed = start.elapsed();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let bad: Vec<String> = report["domains"]
            .as_array()
            .expect("domains")
            .iter()
            .flat_map(|d| d["findings"].as_array().cloned().unwrap_or_default())
            .filter(|f| !matches!(f["status"].as_str(), Some("PASS" | "INFO")))
            .map(|f| format!("{} {} {}", f["id"], f["status"], f["detail"]))
            .take(5)
            .collect();
        assert!(
            out.status.code() == Some(0) && bad.is_empty(),
            "run {run}: exit {:?}, not healthy: {bad:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "run {}: {n} domains audited in {:.2} s",
            run + 1,
            elapsed.as_secs_f64()
        );
        times.push(elapsed);
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "audit of {n} healthy domains (--no-connect): median {:.2} s, best {:.2} s over {runs} runs",
        median.as_secs_f64(),
        times
            .first()
            .copied()
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&home);
}
