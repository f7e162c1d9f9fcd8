//! Milters (`[[server.milters]]`) that cannot be asked: down (nothing listens), or stuck (listens, never
//! answers, past `timeout`). `default_action = "tempfail"` (the default) defers the message `451 4.7.1`,
//! `"accept"` takes it as if the milter were not there; each failure is counted. A milter sees only the
//! listeners it names. Bad settings stop `serve --check-config`. What real milters do to a message is in
//! `interop/milter.rs` (libmilter, rspamd, OpenDKIM).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use kit::TestDb;
use kit::serve::mail::{PASSWORD, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const BOB: &str = "bob@example.test";

/// `[[server.milters]]` as the inline array `[server] milters = [...]`, one entry per `(address, extra)`.
pub fn milters(entries: &[(&str, &str)]) -> String {
    let tables: Vec<String> = entries
        .iter()
        .map(|(address, extra)| {
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(", {extra}")
            };
            format!("{{ address = \"{address}\"{extra} }}")
        })
        .collect();
    format!("[{}]", tables.join(", "))
}

fn send(server: &TestServer, id: &str) -> kit::smtp_client::Reply {
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.far.test");
    let reply = c.send_mail(
        "someone@far.test",
        &[BOB],
        &message("someone@far.test", BOB, "milter", id),
    );
    c.command("QUIT");
    reply
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn a_milter_that_is_down_defers_or_is_skipped_as_its_default_action_says() {
    let db = TestDb::sqlite();
    example(&db);
    let down = format!("inet:127.0.0.1:{}", closed_port());
    let options = |extra: &str| {
        ServeOptions::default()
            .server_key("milters", milters(&[(&down, extra)]))
            .server_key("metrics", "\"127.0.0.1:0\"")
    };
    let server = TestServer::start(&db, options(""));
    send(&server, "down1@far.test")
        .expect(451, "4.7.1 Content filter unavailable, try again later");
    assert!(server.inbox(BOB).is_empty());
    let body = kit::http::get(server.addr("metrics"), "/metrics").body;
    assert!(body.contains("mailctl_milter_failures_total 1"), "{body}");
    assert!(
        body.contains("mailctl_smtp_messages_rejected_total{reason=\"milter\"} 1"),
        "{body}"
    );
    assert!(
        server.log().contains("milter unavailable: cannot connect"),
        "{}",
        server.log()
    );
    drop(server);

    let server = TestServer::start(&db, options("default_action = \"accept\""));
    send(&server, "down2@far.test").expect(250, "2.0.0");
    assert_eq!(server.inbox(BOB).len(), 1);
}

#[test]
fn a_milter_that_never_answers_costs_its_timeout_and_no_more() {
    let db = TestDb::sqlite();
    example(&db);
    // Takes connections (the kernel's backlog) and never says a word.
    let stuck = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("inet:{}", stuck.local_addr().expect("addr"));
    let server = TestServer::start(
        &db,
        ServeOptions::default().server_key("milters", milters(&[(&address, "timeout = 1")])),
    );
    let started = Instant::now();
    send(&server, "stuck@far.test").expect(451, "4.7.1 Content filter unavailable");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        server.log().contains("no reply within 1 s"),
        "{}",
        server.log()
    );
}

#[test]
fn a_milter_sees_only_the_listeners_it_names() {
    let db = TestDb::sqlite();
    example(&db);
    let down = format!("inet:127.0.0.1:{}", closed_port());
    let server = TestServer::start(
        &db,
        ServeOptions::default().server_key(
            "milters",
            milters(&[(&down, "listeners = [\"submission\"]")]),
        ),
    );
    // The MX listener does not use it.
    send(&server, "mx@far.test").expect(250, "2.0.0");
    // Submission does: the milter is down, so the message waits.
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    c.auth_plain("alice@example.test", PASSWORD)
        .expect(235, "2.7.0");
    c.send_mail(
        "alice@example.test",
        &[BOB],
        &message("alice@example.test", BOB, "own", "own@example.test"),
    )
    .expect(451, "4.7.1");
    assert_eq!(server.inbox(BOB).len(), 1);
}

#[test]
fn bad_milter_settings_are_refused_naming_the_key() {
    let db = TestDb::sqlite();
    for (entry, error) in [
        (
            ("tcp:127.0.0.1:1", ""),
            "server.milters[0].address: 'tcp:127.0.0.1:1' is neither inet:IP:PORT nor unix:/absolute/path",
        ),
        (
            ("inet:localhost:11332", ""),
            "server.milters[0].address: 'localhost:11332' is not IP:PORT",
        ),
        (
            ("unix:relative.sock", ""),
            "server.milters[0].address: 'unix:relative.sock' is neither",
        ),
        (
            ("inet:127.0.0.1:1", "listeners = [\"imap\"]"),
            "server.milters[0].listeners: 'imap' is not smtp, submission or submissions",
        ),
        (
            ("inet:127.0.0.1:1", "default_action = \"reject\""),
            "server.milters[0].default_action: 'reject' is neither tempfail nor accept",
        ),
        (
            ("inet:127.0.0.1:1", "timeout = 0"),
            "server.milters[0].timeout: must be 1 to 600 seconds",
        ),
        (
            ("inet:127.0.0.1:1", "concurrency = 0"),
            "server.milters[0].concurrency: must be at least 1",
        ),
    ] {
        let bad = TestServer::configure(
            &db,
            ServeOptions::default().server_key("milters", milters(&[entry])),
        );
        bad.run(&["serve", "--check-config"]).fails(2, error);
    }
}
