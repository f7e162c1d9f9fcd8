//! Benchmark: `mailctl import` at a provider's scale. 100,000 mailboxes with pre-hashed passwords, spread over
//! 100 domains and all in one domain, on SQLite and, with `mariadb`, on the MariaDB server of the tests; then
//! plain-text passwords, whose hashing runs on every core, against this machine's hashing bound (the same
//! passwords hashed on every core by `mailctl::password::hash_all`, nothing else). Prints rows per second and
//! fails when the database does not hold exactly the addresses imported (and, for plain text, a hash that
//! verifies), so a fast run never hides a wrong one.
//!
//! Run: `cargo bench --bench import -- [ROWS] [PLAIN_ROWS] [mariadb]` (defaults 100000 and 2000).

use std::fmt::Write as _;
use std::time::Instant;

/// A CSV of `domains` domains and `rows` mailboxes spread over them, each with `password` in `column`.
fn csv(domains: usize, rows: usize, column: &str, password: &dyn Fn(usize) -> String) -> String {
    let mut out = format!("kind,address,{column}\n");
    for d in 0..domains {
        writeln!(out, "domain,d{d}.example,").unwrap();
    }
    for i in 0..rows {
        writeln!(
            out,
            "mailbox,user{i}@d{}.example,{}",
            i % domains,
            password(i)
        )
        .unwrap();
    }
    out
}

/// Imports `csv` into a fresh database of `backend`; returns the wall time after checking the mailbox count.
fn import(backend: &str, csv: &str, rows: usize) -> f64 {
    let db = match backend {
        "mariadb" => kit::TestDb::mariadb(),
        _ => kit::TestDb::sqlite(),
    };
    // The schema first, so the import's time is the import's.
    db.run(&["db", "migrate"]).ok();
    let file = db.path("import.csv");
    std::fs::write(&file, csv).expect("write the CSV");
    let start = Instant::now();
    let out = db
        .command(&["import", &file.to_string_lossy()])
        .output()
        .expect("run mailctl import");
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let export = db
        .run(&["--json", "export", "--format", "json"])
        .ok()
        .json();
    let mailboxes = export["mailboxes"].as_array().cloned().unwrap_or_default();
    let stored: std::collections::HashSet<&str> = mailboxes
        .iter()
        .filter_map(|m| m["address"].as_str())
        .collect();
    let wanted: std::collections::HashSet<&str> = csv
        .lines()
        .filter_map(|l| l.strip_prefix("mailbox,")?.split(',').next())
        .collect();
    assert_eq!(
        stored.len(),
        rows,
        "the database holds every imported mailbox"
    );
    assert_eq!(stored, wanted, "exactly the addresses of the CSV");
    // A plain-text row's stored hash verifies its password.
    if let Some(line) = csv.lines().find(|l| l.starts_with("mailbox,")) {
        let mut fields = line.split(',').skip(1);
        let (address, password) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        if !password.starts_with('{') {
            let row = mailboxes
                .iter()
                .find(|m| m["address"] == address)
                .expect("stored");
            let hash = row["password_hash"].as_str().expect("a hash");
            assert!(
                mailctl::password::verify(hash, password),
                "the stored hash verifies"
            );
        }
    }
    secs
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut numbers = args.iter().filter_map(|a| a.parse::<usize>().ok());
    let rows = numbers.next().unwrap_or(100_000);
    let plain_rows = numbers.next().unwrap_or(2_000);
    let backends: Vec<&str> = if args.iter().any(|a| a == "mariadb") {
        vec!["sqlite", "mariadb"]
    } else {
        vec!["sqlite"]
    };
    let scheme = mailctl::password::Scheme::Sha512Crypt;
    let hash = mailctl::password::hash(scheme, "a password of some length").expect("hash");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "import: {rows} mailboxes with pre-hashed passwords; {plain_rows} with plain text; {cores} cores"
    );
    for backend in &backends {
        for domains in [100, 1] {
            let text = csv(domains, rows, "password_hash", &|_| hash.clone());
            let secs = import(backend, &text, rows);
            println!(
                "{backend:<8} {rows} pre-hashed mailboxes in {domains:>3} domain(s): {secs:>6.2} s ({:>7.0} rows/s)",
                rows as f64 / secs
            );
        }
    }
    // Plain text: the import against hashing alone, on every core.
    let passwords: Vec<String> = (0..plain_rows)
        .map(|i| format!("correct horse battery {i}"))
        .collect();
    let start = Instant::now();
    let hashed = mailctl::password::hash_all(scheme, &passwords);
    let bound = start.elapsed().as_secs_f64();
    assert!(hashed.iter().all(Result::is_ok));
    let text = csv(10, plain_rows, "password", &|i| passwords[i].clone());
    let secs = import("sqlite", &text, plain_rows);
    println!(
        "sqlite   {plain_rows} plain-text passwords ({scheme:?}): {secs:.2} s; hashing alone on {cores} cores: \
         {bound:.2} s ({:.0} hashes/s); import / bound = {:.2}",
        plain_rows as f64 / bound,
        secs / bound
    );
}
