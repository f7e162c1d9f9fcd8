//! The HTTPS endpoint (`[server.https]`): by Host, each hosted domain's MTA-STS policy (exactly what `dns
//! records` prints), Thunderbird's autoconfig and Outlook's autodiscover pointing at the IMAP server and the
//! submission port; 404 for anything else or a domain not hosted, 405 for other methods; off by default.

use kit::TestDb;
use kit::serve::mail::example;
use kit::serve::{HOSTNAME, ServeOptions, TestServer};

fn get(server: &TestServer, host: &str, path: &str) -> kit::http::Http {
    kit::http::https(
        server.addr("https"),
        server.root(),
        HOSTNAME,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn mta_sts_policy_and_client_setup_are_served_by_host() {
    let db = TestDb::sqlite();
    example(&db);
    db.run(&["domain", "add", "sleepy.test", "--inactive"]).ok();
    let server = TestServer::start(
        &db,
        ServeOptions::default()
            .server_key("https.listen", "\"127.0.0.1:0\"")
            .server_key("https.imap_host", "\"imap.example.test\""),
    );

    // The policy is the one `dns records` prints for the same host name and mode.
    let policy = get(&server, "mta-sts.example.test", "/.well-known/mta-sts.txt");
    assert_eq!(policy.status, "HTTP/1.1 200 OK", "{policy:?}");
    assert!(
        policy
            .header("Content-Type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{policy:?}"
    );
    let records = db
        .run(&[
            "--json",
            "dns",
            "records",
            "example.test",
            "--mx-host",
            HOSTNAME,
        ])
        .ok()
        .json();
    assert_eq!(
        policy.body,
        records["mta_sts_policy"].as_str().unwrap(),
        "served as printed"
    );
    assert!(policy.body.contains(&format!("mx: {HOSTNAME}\n")));
    // Case and a port in Host do not matter; a domain not hosted, inactive, or another path is 404.
    assert_eq!(
        get(
            &server,
            "MTA-STS.Example.Test:443",
            "/.well-known/mta-sts.txt"
        )
        .status,
        "HTTP/1.1 200 OK"
    );
    for (host, path) in [
        ("mta-sts.other.test", "/.well-known/mta-sts.txt"),
        ("mta-sts.sleepy.test", "/.well-known/mta-sts.txt"),
        ("example.test", "/.well-known/mta-sts.txt"),
        ("mta-sts.example.test", "/"),
        ("mta-sts.example.test", "/../etc/passwd"),
    ] {
        assert_eq!(
            get(&server, host, path).status,
            "HTTP/1.1 404 Not Found",
            "{host}{path}"
        );
    }

    // Thunderbird: both places, IMAP over TLS at the configured host, submission with STARTTLS here.
    for (host, path) in [
        ("autoconfig.example.test", "/mail/config-v1.1.xml"),
        (
            "example.test",
            "/.well-known/autoconfig/mail/config-v1.1.xml",
        ),
    ] {
        let config = get(&server, host, path);
        assert_eq!(config.status, "HTTP/1.1 200 OK", "{host}{path}");
        for needle in [
            "<domain>example.test</domain>",
            "<hostname>imap.example.test</hostname>",
            "<port>993</port>",
            "<socketType>SSL</socketType>",
            &format!("<hostname>{HOSTNAME}</hostname>"),
            "<port>587</port>",
            "<socketType>STARTTLS</socketType>",
            "<username>%EMAILADDRESS%</username>",
        ] {
            assert!(config.body.contains(needle), "{needle} in {}", config.body);
        }
    }

    // Outlook: POST with the address; the answer names it as the login (escaped).
    let body = "<?xml version=\"1.0\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>alice@example.test</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    let discover = kit::http::https(
        server.addr("https"),
        server.root(),
        HOSTNAME,
        &format!(
            "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.test\r\n\
             Content-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(discover.status, "HTTP/1.1 200 OK", "{discover:?}");
    for needle in [
        "<LoginName>alice@example.test</LoginName>",
        "<Server>imap.example.test</Server>",
        "<Type>SMTP</Type>",
        "<Port>587</Port>",
    ] {
        assert!(
            discover.body.contains(needle),
            "{needle} in {}",
            discover.body
        );
    }
    // Methods: GET on autodiscover and POST on the policy are refused.
    assert_eq!(
        get(
            &server,
            "autodiscover.example.test",
            "/autodiscover/autodiscover.xml"
        )
        .status,
        "HTTP/1.1 405 Method Not Allowed"
    );
    let post = kit::http::https(
        server.addr("https"),
        server.root(),
        HOSTNAME,
        "POST /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, "HTTP/1.1 405 Method Not Allowed");

    // Requests that could mean two things are refused: no Host, two Hosts, two lengths, a transfer coding;
    // an autodiscover request without an address.
    let raw =
        |request: &str| kit::http::https(server.addr("https"), server.root(), HOSTNAME, request);
    for (request, status) in [
        (
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\nHost: mta-sts.other.test\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "HTTP/1.1 400 Bad Request",
        ),
        (
            "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 501 Not Implemented",
        ),
        (
            "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.test\r\nContent-Length: 7\r\n\r\n<x></x>",
            "HTTP/1.1 400 Bad Request",
        ),
    ] {
        assert_eq!(raw(request).status, status, "{request}");
    }
    let head = raw("HEAD /nothing HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(head.status, "HTTP/1.1 404 Not Found");
    assert!(head.body.is_empty(), "HEAD has no body: {head:?}");
}

#[test]
fn https_is_off_by_default_and_bad_settings_are_refused() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db, ServeOptions::default());
    assert!(
        !server.log().contains("listening https"),
        "{}",
        server.log()
    );
    for (key, value, error) in [
        (
            "https.listen",
            "\"nowhere\"",
            "server.https.listen: 'nowhere' is not an IP:PORT address",
        ),
        (
            "https.mta_sts_mode",
            "\"strict\"",
            "server.https.mta_sts_mode: 'strict' is neither testing nor enforce",
        ),
    ] {
        let mut options = ServeOptions::default().server_key(key, value);
        if key != "https.listen" {
            options = options.server_key("https.listen", "\"127.0.0.1:0\"");
        }
        let bad = TestServer::configure(&db, options);
        bad.run(&["serve", "--check-config"]).fails(2, error);
    }
    let no_tls = TestServer::configure(
        &db,
        ServeOptions {
            tls: false,
            ..ServeOptions::default()
        }
        .server_key("https.listen", "\"127.0.0.1:0\"")
        .server_key("listen.submissions", "\"off\""),
    );
    no_tls
        .run(&["serve", "--check-config"])
        .fails(2, "server.https.listen needs server.tls cert and key");
}

/// The audit, fetching the policy as a sending server would (`--fetch-policy`), passes against `serve`: the
/// `_mta-sts` record and the policy `dns records` prints, the policy served by `[server.https]`.
#[test]
fn the_audit_fetches_the_served_policy_and_passes() {
    let db = TestDb::sqlite();
    example(&db);
    let records = db
        .run(&[
            "--json",
            "dns",
            "records",
            "example.test",
            "--mx-host",
            HOSTNAME,
            "--mta-sts-mode",
            "enforce",
        ])
        .ok()
        .json();
    let id_record = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "_mta-sts.example.test.")
        .expect("the _mta-sts record")["value"]
        .as_str()
        .unwrap()
        .to_string();
    let dns = kit::dns::TestDns::start(&[(
        "test.",
        &format!(
            "example.test. IN MX 10 {HOSTNAME}.\n{HOSTNAME}. IN A 127.0.0.1\n\
             _mta-sts.example.test. IN TXT \"{id_record}\"\nmta-sts.example.test. IN A 127.0.0.1\n"
        ),
    )]);
    let mut options = ServeOptions::default()
        .dns(&dns)
        .server_key("https.listen", "\"127.0.0.1:0\"")
        .server_key("https.mta_sts_mode", "\"enforce\"");
    options.cert_names = vec!["mta-sts.example.test".into()];
    let server = TestServer::start(&db, options);
    let ca = db.path("ca.pem");
    std::fs::write(&ca, &server.cert.as_ref().expect("TLS").ca_pem).expect("CA file");
    let port = server.addr("https").port().to_string();
    let run = db.run(&[
        "--json",
        "audit",
        "example.test",
        "--nameserver",
        &dns.nameserver(),
        "--no-connect",
        "--fetch-policy",
        "--only",
        "mta_sts",
        "--timeout",
        "3",
        "--extra-ca",
        &ca.to_string_lossy(),
        "--https-port",
        &port,
    ]);
    let findings = run.json()["domains"][0]["findings"].clone();
    for f in findings.as_array().unwrap() {
        assert_eq!(f["status"], "PASS", "{f}\n{findings}");
    }
    assert!(
        findings
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "mta_sts.policy"),
        "the policy was fetched: {findings}"
    );
}
