//! Outbound mail through a relay host (smarthost), end to end between three real instances on loopback: A
//! (the sender of `worlds/outbound_world.rs`, hosting a.test) sends through R, a `mailctl serve` playing the
//! provider's submission server as `relay.test` (`127.0.N.4`, STARTTLS on its submission listener, implicit TLS
//! on submissions, a certificate from a CA only the test knows), which delivers to B (`mx.b.test`).
//!
//! R knows A as the mailbox `relay@r.test`, which owns `alice@a.test` through an alias, so R lets the login use
//! alice's address as MAIL FROM. What is checked: delivery with STARTTLS + AUTH and with implicit TLS (B sees
//! the message come from relay.test and a.test's DKIM, SPF and DMARC pass); a wrong password, an unverifiable
//! certificate and a relay that refuses us keep the mail queued (never a bounce), are logged at ERROR and
//! counted in `mailctl_outbound_relay_failures_total`, and a fixed setting delivers; a message the relay
//! refuses for itself (too big) bounces with the relay named; routes per sender domain in the database
//! (`mailctl relay set|list|delete`), whose passwords are never printed; bad settings stop `serve` with exit 2.
//! Passwords never reach a log.
//!
//! The test with its own Postfix as the relay is in `interop`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::worlds::outbound_node::Node;
use crate::worlds::outbound_world::{
    ALICE, BOB, World, bounces, queue_list, submit, wait_for, wait_tried,
};
use kit::TestDb;
use kit::serve::mail::{Delivered, PASSWORD, add_mailbox, cli, message};
use kit::serve::{ServeOptions, TestServer};

/// R's login for A.
const LOGIN: &str = "relay@r.test";
/// R's name (banner, EHLO, certificate).
const RELAY_HOST: &str = "relay.test";

/// The world of test `n` with a relay R between A and B. Nothing is started.
struct RelayWorld {
    w: World,
    r: Node,
    _r_db: TestDb,
    /// Files of the test: R's CA certificate, A's password files.
    files: tempfile::TempDir,
}

impl RelayWorld {
    /// A, B and R configured; R's options are `relay_options` on top of the standard ones; A's metrics
    /// endpoint is on.
    fn new(n: u8, relay_options: impl FnOnce(ServeOptions) -> ServeOptions) -> RelayWorld {
        let mut w = World::new(n);
        let r_db = TestDb::sqlite();
        cli(&r_db, "domain add r.test");
        add_mailbox(&r_db, LOGIN, &[]);
        cli(&r_db, "domain add a.test");
        cli(&r_db, &format!("alias add {ALICE} {LOGIN}"));
        let options = relay_options(ServeOptions::default().dns(w.dns()).hostname(RELAY_HOST));
        let r = Node::listening(
            &r_db,
            options,
            w.ip(4),
            w.port,
            &["submission", "submissions"],
        );
        let files = tempfile::tempdir().expect("tempdir");
        let ca = &r.server.cert.as_ref().expect("R has TLS").ca_pem;
        std::fs::write(files.path().join("relay-ca.pem"), ca).expect("write CA");
        let metrics = toml::Value::from(format!("{}:0", w.ip(2)));
        w.a.server
            .reconfigure(|o| o.set_server_key("metrics", &metrics));
        RelayWorld {
            w,
            r,
            _r_db: r_db,
            files,
        }
    }

    /// R's CA certificate file.
    fn ca(&self) -> PathBuf {
        self.files.path().join("relay-ca.pem")
    }

    /// Writes `password` to a file and returns its path.
    fn password_file(&self, password: &str) -> PathBuf {
        let path = self.files.path().join("relay.secret");
        std::fs::write(&path, format!("{password}\n")).expect("write password file");
        path
    }

    /// Sets `[server.outbound.relay] KEY = value` (a string) in A's config for its next start.
    fn relay_key(&mut self, key: &str, value: &str) {
        let value = toml::Value::from(value).to_string();
        self.w.a.set_outbound(&format!("relay.{key}"), &value);
    }

    /// Points A at R's STARTTLS submission listener, trusting R's CA and logging in with `password`.
    fn through_submission(&mut self, password: &str) {
        let url = format!("smtp://{RELAY_HOST}:{}", self.r.addr("submission").port());
        self.relay_key("url", &url);
        let ca = self.ca();
        self.relay_key("ca", &ca.to_string_lossy());
        self.relay_key("username", LOGIN);
        let file = self.password_file(password);
        self.relay_key("password_file", &file.to_string_lossy());
    }

    /// A's metrics endpoint.
    fn metrics(&self) -> SocketAddr {
        self.w.a.addr("metrics")
    }
}

/// `mailctl_outbound_relay_failures_total{reason="REASON"}` on A.
fn relay_failures(rw: &RelayWorld, reason: &str) -> f64 {
    let body = kit::http::get(rw.metrics(), "/metrics").body;
    let name = format!("mailctl_outbound_relay_failures_total{{reason=\"{reason}\"}}");
    kit::http::sample(&body, &name).unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

/// The last error of the only recipient of the only queued message on A, once tried.
fn last_error(rw: &RelayWorld) -> String {
    let entry = wait_tried(&rw.w.a, 1);
    let id = entry["id"].as_str().expect("id");
    let show =
        rw.w.a
            .server
            .run(&["queue", "show", id, "--json"])
            .ok()
            .json();
    show["recipients"][0]["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no last_error: {show}"))
        .to_string()
}

/// The `route` of the only queued message on A, as `queue show --json` gives it (and the text view names one).
fn route(rw: &RelayWorld) -> serde_json::Value {
    let entry = wait_tried(&rw.w.a, 1);
    let id = entry["id"].as_str().expect("id");
    let show = rw.w.a.server.run(&["queue", "show", id]).ok().stdout;
    assert!(show.contains("route"), "{show}");
    rw.w.a
        .server
        .run(&["queue", "show", id, "--json"])
        .ok()
        .json()["route"]
        .clone()
}

/// Asserts that bob has exactly one message, which came from the relay and passed a.test's checks at B.
#[track_caller]
fn arrived_through_the_relay(rw: &RelayWorld, message_id: &str) {
    let files = rw.w.b.server.inbox(BOB);
    let found: Vec<Delivered> = files
        .iter()
        .map(|f| Delivered::parse(f))
        .filter(|d| String::from_utf8_lossy(&d.rest).contains(message_id))
        .collect();
    assert_eq!(found.len(), 1, "one copy of {message_id}");
    let d = &found[0];
    let received = d.fields("Received");
    assert!(
        received[0].contains(&format!("from {RELAY_HOST} (")),
        "B's Received names the relay: {received:?}"
    );
    let results = &d.fields("Authentication-Results")[0];
    for expected in [
        format!("spf=pass smtp.mailfrom={ALICE}"),
        "dkim=pass header.d=a.test".to_string(),
        "dmarc=pass header.from=a.test".to_string(),
    ] {
        assert!(
            results.contains(&expected),
            "{expected:?} missing in {results}"
        );
    }
    assert!(
        received
            .get(1)
            .is_some_and(|r| r.contains(&format!("by {RELAY_HOST} (mailctl) with ESMTPSA"))),
        "R's Received says TLS and AUTH: {received:?}"
    );
}

/// The log of A never shows a password.
#[track_caller]
fn no_password_in(log: &str, passwords: &[&str]) {
    for p in passwords {
        assert!(!log.contains(p), "a password ({p:?}) is in the log:\n{log}");
    }
}

#[test]
fn mail_goes_through_the_relay_with_starttls_and_auth_or_implicit_tls() {
    let mut rw = RelayWorld::new(11, |o| o);
    rw.w.b.start();
    rw.r.start();
    rw.through_submission(PASSWORD);
    rw.w.a.start();
    submit(
        &rw.w.a,
        &[BOB],
        &message(ALICE, BOB, "via relay", "r1@a.test"),
    );
    wait_for(&rw.w.a, "bob has the message", 15, || {
        !rw.w.b.server.inbox(BOB).is_empty()
    });
    arrived_through_the_relay(&rw, "r1@a.test");
    wait_for(&rw.w.a, "A's queue is empty", 10, || {
        queue_list(&rw.w.a).is_empty()
    });
    let relayed = format!("relay {RELAY_HOST}[{}]: 250 ", rw.w.ip(4));
    assert!(
        rw.w.a.server.log().contains(&relayed),
        "{}",
        rw.w.a.server.log()
    );

    // The next message rides the same session: one login at R for both.
    submit(&rw.w.a, &[BOB], &message(ALICE, BOB, "again", "r1b@a.test"));
    wait_for(&rw.r, "bob has the second message", 15, || {
        rw.w.b.server.inbox(BOB).len() == 2
    });
    arrived_through_the_relay(&rw, "r1b@a.test");
    let logins = rw.r.server.log().matches(&format!("login={LOGIN}")).count();
    assert_eq!(
        logins,
        1,
        "one AUTH for two messages:\n{}",
        rw.r.server.log()
    );

    // Implicit TLS on R's submissions listener.
    let url = format!("smtps://{RELAY_HOST}:{}", rw.r.addr("submissions").port());
    rw.relay_key("url", &url);
    rw.w.a.server.restart();
    submit(
        &rw.w.a,
        &[BOB],
        &message(ALICE, BOB, "via smtps", "r2@a.test"),
    );
    wait_for(&rw.r, "bob has all three messages", 15, || {
        rw.w.b.server.inbox(BOB).len() == 3
    });
    arrived_through_the_relay(&rw, "r2@a.test");
    assert_eq!(
        relay_failures(&rw, "auth") + relay_failures(&rw, "tls"),
        0.0
    );
    no_password_in(&rw.w.a.server.log(), &[PASSWORD]);
}

#[test]
fn a_refused_login_keeps_the_mail_queued_until_the_password_is_fixed() {
    let mut rw = RelayWorld::new(12, |o| o);
    rw.w.b.start();
    rw.r.start();
    let wrong = "not-the-password-42";
    rw.through_submission(wrong);
    rw.w.a.start();
    submit(
        &rw.w.a,
        &[BOB],
        &message(ALICE, BOB, "login", "login@a.test"),
    );
    let why = last_error(&rw);
    let expected = format!(
        "relay {RELAY_HOST}[{}]: 4.7.8 login as {LOGIN} refused: 535",
        rw.w.ip(4)
    );
    assert!(why.starts_with(&expected), "{why}");
    assert!(relay_failures(&rw, "auth") >= 1.0);
    let log = rw.w.a.server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("login as relay@r.test refused")),
        "{log}"
    );
    assert!(
        bounces(&rw.w.a, ALICE).is_empty(),
        "no bounce for an admin problem"
    );
    assert!(rw.w.b.server.inbox(BOB).is_empty());

    // `queue show` names the route: the configured relay, then a.test's own route while it exists.
    let url = format!("smtp://{RELAY_HOST}:{}", rw.r.addr("submission").port());
    assert_eq!(
        route(&rw),
        serde_json::json!({"via": "relay", "url": url, "source": "[server.outbound.relay]"})
    );
    rw.w.a_db()
        .run(&["relay", "set", "a.test", "smtps://other.relay.test"])
        .ok();
    assert_eq!(
        route(&rw),
        serde_json::json!({
            "via": "relay",
            "url": "smtps://other.relay.test:465",
            "source": "relay route of a.test"
        })
    );
    rw.w.a_db().run(&["relay", "delete", "a.test"]).ok();

    rw.password_file(PASSWORD);
    rw.w.a.server.restart();
    wait_for(&rw.w.a, "the message is delivered", 15, || {
        !rw.w.b.server.inbox(BOB).is_empty()
    });
    arrived_through_the_relay(&rw, "login@a.test");
    wait_for(&rw.w.a, "A's queue is empty", 10, || {
        queue_list(&rw.w.a).is_empty()
    });
    assert!(bounces(&rw.w.a, ALICE).is_empty());
    no_password_in(&rw.w.a.server.log(), &[wrong, PASSWORD]);
    no_password_in(&rw.r.server.log(), &[wrong, PASSWORD]);
}

#[test]
fn an_unverified_certificate_or_a_relay_refusing_us_never_bounces() {
    let mut rw = RelayWorld::new(13, |o| o);
    rw.w.b.start();
    rw.r.start();
    // R's certificate is from a CA A does not trust.
    let url = format!("smtp://{RELAY_HOST}:{}", rw.r.addr("submission").port());
    rw.relay_key("url", &url);
    rw.relay_key("username", LOGIN);
    let file = rw.password_file(PASSWORD);
    rw.relay_key("password_file", &file.to_string_lossy());
    rw.w.a.start();
    submit(&rw.w.a, &[BOB], &message(ALICE, BOB, "tls", "tls@a.test"));
    let why = last_error(&rw);
    assert!(why.contains("4.7.5 TLS with the relay failed"), "{why}");
    assert!(relay_failures(&rw, "tls") >= 1.0);
    assert!(bounces(&rw.w.a, ALICE).is_empty());

    // Plain text to R's MX listener (loopback), without a login: R refuses to relay to b.test (554 5.7.1).
    rw.w.a.server.terminate();
    rw.w.a.server.reconfigure(|o| {
        o.server.retain(|(k, _)| !k.starts_with("outbound.relay."));
    });
    let url = format!("smtp://{}:{}", rw.w.ip(4), rw.w.port);
    rw.relay_key("url", &url);
    rw.relay_key("tls", "none");
    rw.w.a.server.restart();
    wait_for(&rw.w.a, "the relay refused us", 15, || {
        relay_failures(&rw, "refused") >= 1.0
    });
    let why = last_error(&rw);
    assert!(
        why.contains("554 5.7.1") && why.contains("(the relay refuses mail from us)"),
        "{why}"
    );
    assert!(bounces(&rw.w.a, ALICE).is_empty());
    assert_eq!(queue_list(&rw.w.a).len(), 1);
    assert!(rw.w.b.server.inbox(BOB).is_empty());
}

#[test]
fn a_message_the_relay_refuses_bounces_naming_the_relay() {
    let mut rw = RelayWorld::new(14, |o| o.limit("max_message_size", 20_000));
    rw.w.b.start();
    rw.r.start();
    rw.through_submission(PASSWORD);
    rw.w.a.start();
    let mut big = message(ALICE, BOB, "too big", "big@a.test");
    big.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".as_slice(), 2_000).flatten(),
    );
    submit(&rw.w.a, &[BOB], &big);
    wait_for(&rw.w.a, "alice has a DSN", 15, || {
        !bounces(&rw.w.a, ALICE).is_empty()
    });
    let dsn = &bounces(&rw.w.a, ALICE)[0];
    for expected in [
        "Final-Recipient: rfc822; bob@b.test",
        "Action: failed",
        "Status: 5.3.4",
        "Remote-MTA: dns; relay.test",
        "Diagnostic-Code: smtp; 552 5.3.4",
    ] {
        assert!(
            dsn.contains(expected),
            "{expected:?} missing in DSN:\n{dsn}"
        );
    }
    assert_eq!(relay_failures(&rw, "refused"), 0.0);
}

#[test]
fn routes_per_sender_domain_live_in_the_database_and_never_show_the_password() {
    let mut rw = RelayWorld::new(15, |o| o);
    rw.w.b.start();
    rw.r.start();
    let ca = toml::Value::from(rw.ca().to_string_lossy().into_owned()).to_string();
    rw.w.a.set_outbound("extra_ca", &ca);
    let url = format!("smtp://{RELAY_HOST}:{}", rw.r.addr("submission").port());

    rw.w.a_db()
        .run(&["relay", "set", "a.test", "ftp://x"])
        .fails(2, "URL: unknown scheme");
    rw.w.a_db()
        .run(&["relay", "set", "nowhere.test", &url])
        .fails(1, "nowhere.test");
    rw.w.a_db()
        .run(&[
            "relay",
            "set",
            "a.test",
            "smtp://relay.test",
            "--tls",
            "none",
        ])
        .fails(2, "--tls");
    let no_password = rw.w.a_db().run_stdin(
        &[
            "relay",
            "set",
            "a.test",
            &url,
            "--username",
            LOGIN,
            "--password-stdin",
        ],
        "\n",
    );
    no_password.fails(2, "standard input is empty");
    assert_eq!(
        rw.w.a_db().run(&["relay", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );

    rw.w.a_db()
        .run_stdin(
            &[
                "relay",
                "set",
                "a.test",
                &url,
                "--username",
                LOGIN,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    let list = rw.w.a_db().run(&["relay", "list", "--json"]).ok();
    let routes = list.json();
    assert_eq!(routes.as_array().map(Vec::len), Some(1), "{routes}");
    assert_eq!(routes[0]["domain"], "a.test");
    assert_eq!(routes[0]["url"], url.as_str());
    assert_eq!(routes[0]["username"], LOGIN);
    assert_eq!(routes[0]["password"], true);
    let table = rw.w.a_db().run(&["relay", "list"]).ok().stdout;
    assert!(table.contains("a.test") && table.contains(&url), "{table}");
    no_password_in(&format!("{}{}", list.stdout, table), &[PASSWORD]);

    rw.w.a.start();
    submit(
        &rw.w.a,
        &[BOB],
        &message(ALICE, BOB, "routed", "routed@a.test"),
    );
    wait_for(&rw.w.a, "bob has the message", 15, || {
        !rw.w.b.server.inbox(BOB).is_empty()
    });
    arrived_through_the_relay(&rw, "routed@a.test");
    no_password_in(&rw.w.a.server.log(), &[PASSWORD]);

    let deleted =
        rw.w.a_db()
            .run(&["relay", "delete", "a.test", "--json"])
            .ok()
            .json();
    assert_eq!(deleted["deleted"], true);
    assert_eq!(
        rw.w.a_db().run(&["relay", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    rw.w.a_db()
        .run(&["relay", "delete", "a.test"])
        .fails(1, "a.test");
}

#[test]
fn bad_relay_settings_stop_serve_with_exit_2_naming_the_key() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret-value\n").expect("write");
    let missing = dir.path().join("missing.secret");
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("url", "ftp://relay.example".into())],
            "server.outbound.relay.url: unknown scheme",
        ),
        (
            vec![("url", "relay.example:587".into())],
            "server.outbound.relay.url: ",
        ),
        (
            vec![
                ("url", "smtp://relay.example".into()),
                ("tls", "none".into()),
            ],
            "server.outbound.relay.tls: \"none\" is for a relay on this machine only",
        ),
        (
            vec![
                ("url", "smtp://127.0.0.1:2525".into()),
                ("tls", "off".into()),
            ],
            "server.outbound.relay.tls: \"off\" is neither",
        ),
        (
            vec![
                ("url", "smtp://127.0.0.1:2525".into()),
                ("tls", "none".into()),
                ("username", "mx@a.test".into()),
                ("password_file", s(&secret)),
            ],
            "server.outbound.relay.username: AUTH is never sent without TLS",
        ),
        (
            vec![
                ("url", "smtp://relay.example".into()),
                ("username", "mx@a.test".into()),
            ],
            "server.outbound.relay.password_file: missing",
        ),
        (
            vec![
                ("url", "smtp://relay.example".into()),
                ("username", "mx@a.test".into()),
                ("password_file", s(&missing)),
            ],
            "server.outbound.relay.password_file: ",
        ),
    ];
    for (keys, expected) in cases {
        let mut options = ServeOptions::default();
        for (k, v) in &keys {
            options = options.server_key(
                &format!("outbound.relay.{k}"),
                toml::Value::from(v.as_str()),
            );
        }
        let server = TestServer::configure(&db, options);
        let check = server.run(&["serve", "--check-config"]);
        assert_eq!(check.code, 2, "{keys:?}\n{}", check.stderr);
        assert!(
            check.stderr.contains(expected),
            "{expected:?} missing in:\n{}",
            check.stderr
        );
        assert!(!check.stderr.contains("s3cret-value"), "{}", check.stderr);
        server.run(&["serve"]).fails(2, expected);
    }
}
