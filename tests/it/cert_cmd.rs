//! `mailctl cert status|renew` and `[server.acme]` without an ACME server: the certificate of `[server.tls]`
//! shown with its TLSA value (checked against openssl's), the settings refused with the key named, and `serve`
//! starting on its placeholder when the CA cannot be reached, saying so in `cert status` (exit 1). The
//! issuance itself runs against a real ACME server (pebble) in `interop/acme.rs`.

use std::time::Duration;

use kit::TestDb;
use kit::serve::{HOSTNAME, ServeOptions, TestServer};

#[test]
fn status_shows_the_configured_certificate_and_renew_needs_acme() {
    let db = TestDb::sqlite();
    let server = TestServer::configure(&db, ServeOptions::default());
    let status = server.run(&["--json", "cert", "status"]).ok().json();
    assert_eq!(status["source"], "server.tls files");
    assert_eq!(status["names"], serde_json::json!([HOSTNAME]), "{status}");
    assert_eq!(status["placeholder"], false);
    assert!(status["days_left"].as_i64().unwrap() >= 28, "{status}");
    assert_eq!(status["renewal"], serde_json::Value::Null);
    // The TLSA 3 1 1 value is SHA-256 over the DER SubjectPublicKeyInfo, as openssl computes it.
    let cert = server.path("cert.pem");
    let openssl = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -r",
            cert.display()
        ))
        .output()
        .expect("openssl");
    let expected = String::from_utf8_lossy(&openssl.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(expected.len(), 64, "openssl: {openssl:?}");
    assert_eq!(status["tlsa_3_1_1"], expected.as_str());
    let text = server.run(&["cert", "status"]).ok();
    assert!(
        text.stdout.contains(&format!("TLSA 3 1 1 {expected}")),
        "{}",
        text.stdout
    );
    server
        .run(&["cert", "renew"])
        .fails(2, "[server.acme] is not configured");
}

#[test]
fn bad_acme_settings_are_refused_with_the_key_named() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let acme_dir = format!("{:?}", dir.path().join("acme").to_string_lossy());
    let https = ("https.listen", "\"127.0.0.1:0\"");
    for (keys, tls, error) in [
        (
            vec![("acme.directory", "\"http://ca.test/dir\""), https],
            false,
            "server.acme.directory: 'http://ca.test/dir' is not an https:// URL",
        ),
        (
            vec![("acme.directory", "\"https://ca.test/dir\"")],
            false,
            "server.acme.challenge: tls-alpn-01 is answered on the [server.https] listener",
        ),
        (
            vec![
                ("acme.directory", "\"https://ca.test/dir\""),
                ("acme.challenge", "\"http-01\""),
            ],
            false,
            "server.acme.http_listen: http-01 needs the address to answer on",
        ),
        (
            vec![("acme.directory", "\"https://ca.test/dir\""), https],
            true,
            "server.acme manages the certificate: remove server.tls cert and key",
        ),
        (
            vec![
                ("acme.directory", "\"https://ca.test/dir\""),
                ("acme.contact", "\"postmaster@example.test\""),
                https,
            ],
            false,
            "server.acme.contact: 'postmaster@example.test' is not a mailto: address",
        ),
        (
            vec![("acme.contact", "\"mailto:postmaster@example.test\"")],
            false,
            "server.acme: directory is not set",
        ),
    ] {
        let mut options = ServeOptions {
            tls,
            ..ServeOptions::default()
        }
        .server_key("acme.dir", &acme_dir)
        .server_key("listen.submissions", "\"off\"");
        for (k, v) in keys {
            options = options.server_key(k, v);
        }
        let bad = TestServer::configure(&db, options);
        bad.run(&["serve", "--check-config"]).fails(2, error);
    }
}

#[test]
fn serve_starts_on_a_placeholder_and_reports_a_ca_it_cannot_reach() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    let mut options = ServeOptions::default()
        .server_key("https.listen", "\"127.0.0.1:0\"")
        .server_key("acme.directory", "\"https://127.0.0.1:1/dir\"")
        .server_key("acme.dir", format!("{:?}", acme.to_string_lossy()));
    options.tls = false;
    let server = TestServer::start(&db, options);
    // The listeners run on the placeholder meanwhile.
    let mut smtp = kit::smtp_client::SmtpClient::connect(server.smtp());
    smtp.ehlo("client.example.test");
    smtp.command("QUIT");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (last, attempted) = loop {
        let run = server.run(&["--json", "cert", "status"]);
        if !run.stdout.is_empty() && run.json()["last_attempt"].is_string() {
            break (run, true);
        }
        if std::time::Instant::now() > deadline {
            break (run, false);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(attempted, "{}\n{}", last.stderr, server.log());
    assert_eq!(last.code, 1);
    assert!(
        last.stderr
            .contains("the placeholder certificate is in use"),
        "{}",
        last.stderr
    );
    let status = last.json();
    assert_eq!(status["placeholder"], true);
    assert_eq!(status["names"], serde_json::json!([HOSTNAME]));
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot create an ACME account at https://127.0.0.1:1/dir"),
        "{status}"
    );
    assert!(
        status["renewal"]
            .as_str()
            .unwrap()
            .starts_with("due now: the self-signed placeholder is in use"),
        "{status}"
    );
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&acme), 0o700);
    assert_eq!(mode(&acme.join("key.pem")), 0o600);
    assert!(
        server
            .log()
            .contains("the certificate could not be obtained; the one in use stays"),
        "{}",
        server.log()
    );
}
