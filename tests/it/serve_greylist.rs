//! Greylisting (`[server.greylisting]`) on the MX listener: a first-time (network, sender, recipient) is
//! deferred `451 4.7.1` at the end of DATA, an early retry too, a retry after the delay is taken and exempts the
//! client's network; mail that passed DMARC and logged-in users are never greylisted; it is off by default.

use kit::TestDb;
use kit::dns::TestDns;
use kit::serve::mail::{PASSWORD, example, message};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const BOB: &str = "bob@example.test";

fn send(server: &TestServer, sender: &str, id: &str) -> kit::smtp_client::Reply {
    let mut c = SmtpClient::connect(server.smtp());
    c.ehlo("mta.far.test");
    let reply = c.send_mail(sender, &[BOB], &message(sender, BOB, "grey", id));
    c.command("QUIT");
    reply
}

fn first_time_senders_are_deferred_until_they_retry(db: &TestDb) {
    example(db);
    // pass.test passes DMARC (SPF aligned for loopback clients); far.test publishes nothing.
    let dns = TestDns::start(&[(
        "test.",
        "pass.test. IN TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n\
         _dmarc.pass.test. IN TXT \"v=DMARC1; p=none\"\n",
    )]);
    let options = ServeOptions::default()
        .dns(&dns)
        .check("dmarc", "mark")
        .server_key("greylisting.enabled", true)
        .server_key("greylisting.delay", 1)
        .server_key("metrics", "\"127.0.0.1:0\"");
    let server = TestServer::start(db, options);

    // DMARC passes: taken at once.
    send(&server, "news@pass.test", "p1@pass.test").expect(250, "2.0.0");
    // A first-time sender without DMARC: deferred, and an early retry too.
    send(&server, "someone@far.test", "g1@far.test").expect(
        451,
        "4.7.1 Greylisted: this server takes mail from new senders on retry; try again in 1 seconds",
    );
    send(&server, "someone@far.test", "g1@far.test").expect(451, "4.7.1 Greylisted");
    assert_eq!(server.inbox(BOB).len(), 1, "only the DMARC-passing message");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    send(&server, "someone@far.test", "g1@far.test").expect(250, "2.0.0");
    // The network retried: another new sender from it is taken at once.
    send(&server, "other@far.test", "g2@far.test").expect(250, "2.0.0");
    assert_eq!(server.inbox(BOB).len(), 3);

    // Logged-in users are never greylisted.
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
    .expect(250, "2.0.0");

    let body = kit::http::get(server.addr("metrics"), "/metrics").body;
    assert!(
        body.contains("mailctl_smtp_messages_rejected_total{reason=\"greylisted\"} 2"),
        "{body}"
    );
}

kit::on_both_backends!(first_time_senders_are_deferred_until_they_retry);

#[test]
fn greylisting_is_off_by_default_and_bad_settings_are_refused() {
    let db = TestDb::sqlite();
    example(&db);
    let server = TestServer::start(&db, ServeOptions::default());
    send(&server, "someone@far.test", "d1@far.test").expect(250, "2.0.0");

    let bad = TestServer::configure(
        &db,
        ServeOptions::default()
            .server_key("greylisting.delay", 7200)
            .server_key("greylisting.retry_window", 1),
    );
    bad.run(&["serve", "--check-config"]).fails(
        2,
        "server.greylisting.delay: must be at least 1 second and shorter than retry_window",
    );
}
