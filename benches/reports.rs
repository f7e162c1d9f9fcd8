//! Benchmark: one DMARC aggregate report with 900,000 records (what Google sends for a busy domain), gzipped as
//! reporters send it, imported with `mailctl reports import` and summarized with `mailctl reports summary`
//! (PTR names from a loopback DNS server that knows every source IP), on SQLite and, with `mariadb`, on the
//! MariaDB server of the tests. Prints the size of the report and the wall time of each step; fails when the
//! stored report or the summary is not what was generated, so a fast run never hides wrong results.
//!
//! Run: `cargo bench --bench reports -- [RECORDS] [mariadb]` (RECORDS defaults to 900000).

use std::io::Write;
use std::time::Instant;

/// The source IP of record `i`: 100 records per IP, in the benchmarking range 198.18.0.0/15.
fn ip(i: usize) -> String {
    let n = i / 100;
    format!("198.{}.{}.{}", 18 + (n >> 16) % 2, (n >> 8) & 255, n & 255)
}

/// The report's XML: record `i` passes DKIM and SPF unless `i % 50 == 0` (2% fail).
fn report(records: usize) -> Vec<u8> {
    let mut xml = String::with_capacity(records * 520 + 1000);
    xml.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<feedback>\n  <report_metadata>\n    \
         <org_name>google.com</org_name>\n    <email>noreply-dmarc-support@google.com</email>\n    \
         <report_id>bench-900k</report_id>\n    <date_range><begin>1764979200</begin><end>1765065599</end>\
         </date_range>\n  </report_metadata>\n  <policy_published><domain>example.org</domain><adkim>r</adkim>\
         <aspf>r</aspf><p>reject</p><sp>reject</sp><pct>100</pct></policy_published>\n",
    );
    for i in 0..records {
        let (result, disposition) = if i % 50 == 0 {
            ("fail", "reject")
        } else {
            ("pass", "none")
        };
        xml.push_str(&format!(
            "  <record>\n    <row>\n      <source_ip>{}</source_ip>\n      <count>{}</count>\n      \
             <policy_evaluated>\n        <disposition>{disposition}</disposition>\n        <dkim>{result}</dkim>\n        \
             <spf>{result}</spf>\n      </policy_evaluated>\n    </row>\n    <identifiers>\n      \
             <header_from>example.org</header_from>\n    </identifiers>\n    <auth_results>\n      <dkim>\n        \
             <domain>example.org</domain>\n        <result>{result}</result>\n        <selector>s{}</selector>\n      \
             </dkim>\n      <spf>\n        <domain>example.org</domain>\n        <result>{result}</result>\n      \
             </spf>\n    </auth_results>\n  </record>\n",
            ip(i),
            1 + i % 3,
            i % 7
        ));
    }
    xml.push_str("</feedback>\n");
    xml.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// The reverse zones: a PTR for each source IP.
fn reverse(records: usize) -> (String, String) {
    let (mut a, mut b) = (String::new(), String::new());
    let ips = records.div_ceil(100);
    for n in 0..ips {
        let ip = ip(n * 100);
        let o: Vec<&str> = ip.split('.').collect();
        let line = format!(
            "{}.{}.{}.198.in-addr.arpa. IN PTR host-{}-{}.senders.example.\n",
            o[3], o[2], o[1], o[2], o[3]
        );
        if o[1] == "18" {
            a.push_str(&line);
        } else {
            b.push_str(&line);
        }
    }
    (a, b)
}

fn run(db: &kit::TestDb, args: &[&str]) -> (f64, String) {
    let start = Instant::now();
    let out = db.command(args).output().expect("run mailctl");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "mailctl {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let records: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(900_000);
    let backends: Vec<&str> = if args.iter().any(|a| a == "mariadb") {
        vec!["sqlite", "mariadb"]
    } else {
        vec!["sqlite"]
    };
    let started = Instant::now();
    let xml = report(records);
    let gz = gzip(&xml);
    println!(
        "reports: one DMARC aggregate report, {records} records from {} source IPs: {:.0} MiB of XML, {:.1} MiB \
         gzipped (generated in {:.1} s)",
        records.div_ceil(100),
        xml.len() as f64 / 1048576.0,
        gz.len() as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    drop(xml);
    let (a, b) = reverse(records);
    let dns =
        kit::dns::TestDns::start(&[("18.198.in-addr.arpa.", &a), ("19.198.in-addr.arpa.", &b)]);
    let ns = dns.nameserver();
    for backend in backends {
        let db = match backend {
            "mariadb" => kit::TestDb::mariadb(),
            _ => kit::TestDb::sqlite(),
        };
        let file = db.path("google.com!example.org!1764979200!1765065599.xml.gz");
        std::fs::write(&file, &gz).expect("write the report");
        db.command(&["domain", "add", "example.org"])
            .output()
            .expect("domain add");
        let (import_secs, _) = run(&db, &["reports", "import", &file.to_string_lossy()]);
        let (summary_secs, json) = run(
            &db,
            &[
                "--json",
                "reports",
                "summary",
                "--since",
                "2000-01-01",
                "--nameserver",
                &ns,
            ],
        );
        let doc: serde_json::Value = serde_json::from_str(&json).expect("summary JSON");
        let d = &doc["domains"][0];
        let expected: i64 = (0..records).map(|i| 1 + (i % 3) as i64).sum();
        let failing: i64 = (0..records)
            .filter(|i| i % 50 == 0)
            .map(|i| 1 + (i % 3) as i64)
            .sum();
        assert_eq!(d["messages"].as_i64(), Some(expected), "{d}");
        assert_eq!(
            d["messages"].as_i64().unwrap() - d["dmarc_pass"].as_i64().unwrap(),
            failing
        );
        assert!(
            d["sources"][0]["ptr"]
                .as_str()
                .is_some_and(|p| p.ends_with(".senders.example")),
            "PTR names of the listed sources: {}",
            d["sources"][0]
        );
        println!(
            "{backend:>8}: import {import_secs:.1} s ({:.0} records/s), summary with PTR names {summary_secs:.1} s; \
             total {:.1} s",
            records as f64 / import_secs,
            import_secs + summary_secs
        );
    }
}
