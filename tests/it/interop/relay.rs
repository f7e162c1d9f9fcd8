//! `mailctl serve` sending through a stock Postfix as its relay host (smarthost), which delivers to a second
//! `mailctl serve`: the provider's submission server played by the real thing.
//!
//! - With AUTH: Postfix requires STARTTLS (`smtpd_tls_security_level = encrypt`), authenticates through
//!   Dovecot's SASL (`smtpd_sasl_type = dovecot`, against the mailboxes of mailctl's own database, as
//!   `mailctl config dovecot` sets it up), and allows a login to send only as the addresses it owns
//!   (`reject_sender_login_mismatch` over the generated `smtpd_sender_login_maps`). A wrong password keeps the
//!   mail queued until the password file is fixed; a sender the login does not own is refused by Postfix
//!   (`553 5.7.1`) and stays queued too (the relay refuses us, not the message), never a bounce.
//! - Without AUTH: Postfix relays for its `mynetworks` over STARTTLS only; without TLS (`tls = "none"`) it
//!   answers `530 5.7.0 Must issue a STARTTLS command first`, which keeps the mail queued as well.
//!
//! The relay's certificate is from a CA only the test knows (`[server.outbound.relay] ca`); its name
//! `relay.example.test` resolves through the test's DNS.

use std::time::Duration;

use super::harness::dovecot::Dovecot;
use super::harness::postfix::{self as pf, Postfix};
use super::harness::serve::{Serve, ServeOptions};
use super::harness::{Need, PASSWORD, Site, q, setup, tail, wait_until};
use kit::TestDb;
use kit::dns::TestDns;
use kit::serve::ServerCert;
use kit::serve::mail::message;
use kit::smtp_client::SmtpClient;

/// The relay's login.
const LOGIN: &str = "relay@r.test";
/// The sender the login owns on the relay.
const CAROL: &str = "carol@a.test";
/// A sender the login does not own.
const DAVE: &str = "dave@a.test";
/// The recipient, on the destination serve.
const BOB: &str = "bob@b.test";

/// The destination: a `mailctl serve` hosting b.test on its own database.
fn destination() -> (Site, Serve) {
    let site = Site::new(TestDb::sqlite());
    site.cli("domain add b.test");
    site.add_mailbox(BOB, PASSWORD, None);
    let serve = Serve::start(&site, ServeOptions::new("mx.b.test"));
    (site, serve)
}

/// Writes the relay's certificate and key into `site` and returns the main.cf lines that serve them with
/// STARTTLS required, relaying everything to `destination` (opportunistic TLS on that hop).
fn relay_tls_lines(site: &Site, cert: &ServerCert, destination: &Serve) -> Vec<String> {
    let (cert_file, key_file) = (site.path("relay-cert.pem"), site.path("relay-key.pem"));
    std::fs::write(&cert_file, &cert.cert_pem).expect("relay cert");
    std::fs::write(&key_file, &cert.key_pem).expect("relay key");
    vec![
        format!("smtpd_tls_cert_file = {}", cert_file.display()),
        format!("smtpd_tls_key_file = {}", key_file.display()),
        "smtpd_tls_security_level = encrypt".into(),
        format!("relayhost = [127.0.0.1]:{}", destination.smtp().port()),
        "smtp_tls_security_level = may".into(),
    ]
}

/// The sending side: a.test on its own database, `[server.outbound.relay]` = `relay` (TOML lines).
fn start_sender(dns: &TestDns, relay: &str) -> (Site, Serve) {
    let site = Site::new(TestDb::sqlite());
    site.cli("domain add a.test");
    site.add_mailbox(CAROL, PASSWORD, None);
    site.add_mailbox(DAVE, PASSWORD, None);
    let mut options = ServeOptions::new("mx.a.test");
    options.nameserver = Some(dns.nameserver());
    options.extra = format!("\n[server.outbound.relay]\n{relay}");
    let serve = Serve::start(&site, options);
    (site, serve)
}

/// Submits a message from `from` to bob through `sender`'s submission listener (STARTTLS, AUTH as `from`).
fn submit(sender: &Serve, from: &str, message_id: &str) {
    let msg = message(from, BOB, "through the relay", message_id);
    let mut c = SmtpClient::connect(sender.submission());
    c.ehlo("laptop.a.test");
    c.starttls(&sender.cert.ca, "mx.a.test");
    c.ehlo("laptop.a.test");
    c.auth_plain(from, PASSWORD).expect(235, "2.7.0");
    c.send_mail(from, &[BOB], &msg).expect(250, "2.0.0");
    let _ = c.try_command("QUIT");
}

/// The last error of the queued message of `sender` whose message id is `id`, once it has one.
fn queued_error(sender: &Serve, postfix: &Postfix, from: &str) -> String {
    let mut last = None;
    let found = wait_until(Duration::from_secs(30), || {
        last = sender
            .queue()
            .into_iter()
            .find(|e| e["sender"] == from)
            .and_then(|e| e["last_error"].as_str().map(str::to_string));
        last.is_some()
    });
    if !found {
        postfix.fail(&format!(
            "no failed attempt for {from} within 30 s\n--- sender log ---\n{}",
            tail(&sender.log(), 30)
        ));
    }
    last.unwrap_or_default()
}

/// Waits until bob has `n` messages; fails with every log otherwise.
fn wait_for_bob(dest: &Site, n: usize, postfix: &Postfix, sender: &Serve) {
    if !wait_until(Duration::from_secs(30), || dest.new_mail(BOB).len() >= n) {
        postfix.fail(&format!(
            "bob has {} of {n} messages after 30 s\n--- sender log ---\n{}",
            dest.new_mail(BOB).len(),
            tail(&sender.log(), 30)
        ));
    }
}

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn serve_sends_through_postfix_with_auth_over_starttls_and_admin_problems_stay_queued() {
    let db = setup(&[Need::Postfix, Need::Dovecot]);
    // The relay's site: its logins are mailboxes of its own mailctl database; relay@r.test owns carol@a.test.
    let site = Site::new(db);
    for domain in ["r.test", "a.test"] {
        site.cli(&format!("domain add {domain}"));
    }
    site.add_mailbox(LOGIN, PASSWORD, None);
    site.cli(&format!("alias add {CAROL} {LOGIN}"));
    let dovecot = Dovecot::start_with(&site, &site.generate("dovecot"), true);
    let auth_port = dovecot.auth_port.expect("auth listener");
    let (dest_site, dest) = destination();
    let cert = ServerCert::new(&[pf::HOSTNAME]);
    let mut lines = relay_tls_lines(&site, &cert, &dest);
    lines.extend([
        "smtpd_tls_auth_only = yes".into(),
        "smtpd_sasl_auth_enable = yes".into(),
        "smtpd_sasl_type = dovecot".into(),
        format!("smtpd_sasl_path = inet:127.0.0.1:{auth_port}"),
        "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination".into(),
        "smtpd_sender_restrictions = reject_sender_login_mismatch".into(),
    ]);
    let postfix = Postfix::start(&site, &site.generate("postfix"), &lines);
    let dns = TestDns::start(&[(
        "example.test.",
        &format!("{}. IN A 127.0.0.1\n", pf::HOSTNAME),
    )]);

    // A wrong password first.
    let secret = site.path("relay.secret");
    std::fs::write(&secret, "wrong-password-17\n").expect("password file");
    let ca = site.path("relay-ca.pem");
    std::fs::write(&ca, &cert.ca_pem).expect("CA file");
    let relay = format!(
        "url = {}\nca = {}\nusername = {}\npassword_file = {}\n",
        q(&format!("smtp://{}:{}", pf::HOSTNAME, postfix.port)),
        q(&ca.to_string_lossy()),
        q(LOGIN),
        q(&secret.to_string_lossy()),
    );
    let (_sender_site, mut sender) = start_sender(&dns, &relay);
    submit(&sender, CAROL, "auth@a.test");
    let why = queued_error(&sender, &postfix, CAROL);
    assert!(
        why.contains(&format!("4.7.8 login as {LOGIN} refused: 535 5.7.8")),
        "{why}"
    );
    assert!(dest_site.new_mail(BOB).is_empty());

    // The right password: delivered through Postfix, authenticated, over TLS.
    std::fs::write(&secret, format!("{PASSWORD}\n")).expect("password file");
    sender.restart();
    wait_for_bob(&dest_site, 1, &postfix, &sender);
    let text = String::from_utf8_lossy(&dest_site.new_mail(BOB)[0]).into_owned();
    assert!(
        text.contains(&format!("by {} (Postfix) with ESMTPSA", pf::HOSTNAME)),
        "Postfix took it authenticated over TLS:\n{text}"
    );
    assert!(text.contains("Message-ID: <auth@a.test>"), "{text}");
    let log = postfix.log();
    assert!(
        log.contains(&format!("sasl_method=PLAIN, sasl_username={LOGIN}")),
        "{log}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || sender.queue().is_empty()),
        "the sender's queue empties: {:?}",
        sender.queue()
    );

    // A sender the login does not own: Postfix refuses it, the mail waits (no bounce to dave).
    submit(&sender, DAVE, "dave@a.test");
    let why = queued_error(&sender, &postfix, DAVE);
    assert!(
        why.contains("553 5.7.1") && why.contains("(the relay refuses mail from us)"),
        "{why}"
    );
    assert_eq!(dest_site.new_mail(BOB).len(), 1);
    let passwords = [PASSWORD, "wrong-password-17"];
    for p in passwords {
        assert!(!sender.log().contains(p), "a password is in the log");
    }
}

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn serve_sends_through_postfix_without_auth_over_starttls_and_never_in_clear() {
    let db = setup(&[Need::Postfix]);
    let site = Site::new(db);
    // The relay's own domain (and the schema its generated maps query).
    site.cli("domain add r.test");
    let (dest_site, dest) = destination();
    let cert = ServerCert::new(&[pf::HOSTNAME]);
    let mut lines = relay_tls_lines(&site, &cert, &dest);
    lines.extend([
        "mynetworks = 127.0.0.0/8".into(),
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination".into(),
    ]);
    let postfix = Postfix::start(&site, &site.generate("postfix"), &lines);
    let dns = TestDns::start(&[(
        "example.test.",
        &format!("{}. IN A 127.0.0.1\n", pf::HOSTNAME),
    )]);
    let ca = site.path("relay-ca.pem");
    std::fs::write(&ca, &cert.ca_pem).expect("CA file");

    let relay = format!(
        "url = {}\nca = {}\n",
        q(&format!("smtp://{}:{}", pf::HOSTNAME, postfix.port)),
        q(&ca.to_string_lossy()),
    );
    let (_sender_site, sender) = start_sender(&dns, &relay);
    submit(&sender, CAROL, "noauth@a.test");
    wait_for_bob(&dest_site, 1, &postfix, &sender);
    let text = String::from_utf8_lossy(&dest_site.new_mail(BOB)[0]).into_owned();
    assert!(
        text.contains(&format!("by {} (Postfix) with ESMTPS ", pf::HOSTNAME)),
        "Postfix took it over TLS, without a login:\n{text}"
    );

    // In clear (allowed for a relay on loopback): Postfix insists on STARTTLS; the mail waits.
    let relay = format!(
        "url = {}\ntls = \"none\"\n",
        q(&format!("smtp://127.0.0.1:{}", postfix.port))
    );
    let (_plain_site, plain) = start_sender(&dns, &relay);
    submit(&plain, CAROL, "plain@a.test");
    let why = queued_error(&plain, &postfix, CAROL);
    assert!(
        why.contains("530 5.7.0") && why.contains("(the relay refuses mail from us)"),
        "{why}"
    );
    assert_eq!(dest_site.new_mail(BOB).len(), 1);
    let trouble = postfix.trouble();
    assert!(
        trouble.is_empty(),
        "Postfix reported trouble:\n{}",
        trouble.join("\n")
    );
}
