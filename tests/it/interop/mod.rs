//! Interop with the real stack: the files `mailctl config postfix|dovecot` writes, run by the real Postfix
//! and Dovecot, and `mailctl serve` talking to them and to swaks. Each test starts private instances on
//! loopback and free ports, with every directory under its own temporary directory, against its own MariaDB
//! database provisioned with the `mailctl` binary (see `harness/mod.rs`).
//!
//! - Dovecot logs in with the password of every scheme mailctl hashes (and refuses a wrong password and a
//!   disabled mailbox), and serves mail `mailctl serve` delivered to Maildir and over LMTP to it.
//! - Postfix with the generated mysql maps accepts and refuses the same recipients at RCPT as `mailctl serve`
//!   on the same database: mailbox, alias, alias domain, catch-all, unknown user, unhosted domain.
//! - `mailctl serve` delivers outbound to Postfix (MX from a test DNS), which relays to a second `mailctl serve`
//!   that puts the mail in the Maildir.
//! - swaks submits to `mailctl serve` with STARTTLS and AUTH PLAIN (verifying the certificate).
//! - `mailctl serve` sends through Postfix as its relay host, with AUTH (Dovecot SASL) and without, over
//!   STARTTLS (`relay.rs`).
//!
//! Needs root, MariaDB and the Debian packages postfix postfix-mysql dovecot-core dovecot-imapd dovecot-lmtpd
//! dovecot-mysql swaks libnet-ssleay-perl, so the tests are ignored by default (the summary says so, with the
//! reason) and run with `cargo test --test it -- --ignored interop`, as `.ci/run` does after installing the
//! packages. Run that way, a missing program or privilege fails the test, naming what is missing.

mod acme;
mod app_passwords;
mod forward;
mod harness;
mod milter;
mod relay;
mod srs;

use std::time::Duration;

use harness::dovecot::Dovecot;
use harness::imap::Imap;
use harness::postfix::{self as pf, Postfix};
use harness::serve::{Serve, ServeOptions};
use harness::{Need, PASSWORD, Site, program, run_tool, setup, wait_until};
use kit::TestDb;
use kit::dns::TestDns;
use kit::serve::mail::{message, message_id};
use kit::smtp_client::SmtpClient;
use mailctl::password::Scheme;

/// A sender in a domain no test hosts.
const FAR: &str = "sender@far.test";

/// `file` with every bare LF made CRLF, as IMAP (and Dovecot) present a message.
fn crlf(file: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.len() + 64);
    let mut prev = 0u8;
    for &b in file {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The enhanced status code (`5.1.1`) at the start of a reply's first line, or "" when it has none.
fn enhanced(reply: &kit::serve::reply::Reply) -> String {
    reply
        .first()
        .split_whitespace()
        .next()
        .filter(|w| w.split('.').count() == 3 && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .unwrap_or("")
        .to_string()
}

// ------------------------------------------------------------------------------------------------ Dovecot

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn dovecot_logs_in_with_every_password_scheme_mailctl_hashes_and_refuses_wrong_ones() {
    let db = setup(&[Need::Dovecot]);
    let site = Site::new(db);
    site.cli("domain add example.org");
    // One mailbox per scheme mailctl can write (a new scheme is covered as soon as it is in Scheme::ALL),
    // plus one added without --scheme (the default scheme).
    let mut users: Vec<(String, String)> = Scheme::ALL
        .iter()
        .map(|s| {
            let local = s.name().to_ascii_lowercase().replace('-', "");
            (format!("{local}@example.org"), s.name().to_string())
        })
        .collect();
    for (user, scheme) in &users {
        site.add_mailbox(user, PASSWORD, Some(scheme));
    }
    site.add_mailbox("default@example.org", PASSWORD, None);
    users.push((
        "default@example.org".into(),
        Scheme::default().name().into(),
    ));
    for (user, scheme) in &users {
        let shown = site
            .mailctl_stdin(&["--json", "mailbox", "show", user], "")
            .ok()
            .json();
        assert_eq!(shown["password_scheme"], scheme.as_str(), "{user}: {shown}");
    }
    site.add_mailbox("dave@example.org", PASSWORD, None);
    site.cli("mailbox disable dave@example.org");

    let generated = site.generate("dovecot");
    let dovecot = Dovecot::start(&site, &generated);

    for (user, scheme) in &users {
        let mut c = Imap::connect(dovecot.imap());
        let login = c.login(user, PASSWORD);
        if !login.ok() {
            dovecot.fail(&format!("{scheme}: LOGIN {user} refused: {}", login.status));
        }
        // The userdb half: home, mail location, uid and gid from the generated user_query work.
        let select = c.command("SELECT INBOX");
        if !select.ok() || !select.text().contains("* 0 EXISTS") {
            dovecot.fail(&format!(
                "{scheme}: SELECT INBOX for {user}: {} {}",
                select.status,
                select.text()
            ));
        }
        assert!(c.command("LOGOUT").ok());
        let home = site.new_dir(user).parent().unwrap().to_path_buf();
        let meta = std::fs::metadata(&home)
            .unwrap_or_else(|e| dovecot.fail(&format!("{user}'s Maildir {}: {e}", home.display())));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.uid(), meta.gid()),
            site.vmail,
            "{user}'s Maildir belongs to the vmail uid/gid the userdb answered"
        );

        let mut c = Imap::connect(dovecot.imap());
        let wrong = c.login(user, "not the password");
        assert!(
            wrong.status.starts_with("NO") && wrong.status.contains("AUTHENTICATIONFAILED"),
            "{scheme}: a wrong password for {user} must fail: {}",
            wrong.status
        );
    }
    let mut c = Imap::connect(dovecot.imap());
    let disabled = c.login("dave@example.org", PASSWORD);
    assert!(
        disabled.status.starts_with("NO"),
        "a disabled mailbox must not log in: {}",
        disabled.status
    );
    let log = dovecot.log();
    assert!(
        !log.contains("Error:") && !log.contains("Fatal:"),
        "Dovecot logged errors:\n{log}"
    );
}

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn dovecot_serves_mail_that_serve_delivered_to_maildir_and_over_lmtp() {
    let db = setup(&[Need::Dovecot]);
    let site = Site::new(db);
    site.cli("domain add example.org");
    site.add_mailbox("alice@example.org", PASSWORD, None);
    site.cli("alias add info@example.org alice@example.org");
    let generated = site.generate("dovecot");
    let dovecot = Dovecot::start(&site, &generated);

    // Two daemons on the same database, both switching to the Maildir owner as in production: one writes
    // the Maildir itself, the other hands mail to Dovecot's LMTP listener.
    let mut options = ServeOptions::new("mx.example.test");
    options.as_vmail = true;
    let maildir = Serve::start(&site, options.clone());
    options.delivery = Some(format!("lmtp:127.0.0.1:{}", dovecot.lmtp_port));
    let lmtp = Serve::start(&site, options);

    let to_maildir = message(FAR, "alice@example.org", "via Maildir", "maildir@far.test");
    let mut c = SmtpClient::connect(maildir.smtp());
    c.ehlo("client.far.test");
    c.send_mail(FAR, &["alice@example.org"], &to_maildir)
        .expect(250, "2.0.0");
    let files = site.new_mail("alice@example.org");
    assert_eq!(files.len(), 1, "serve wrote one file to alice's Maildir");
    let written = files[0].clone();
    assert!(
        written.ends_with(&to_maildir),
        "the file ends with the message as sent"
    );

    let to_lmtp = message(FAR, "info@example.org", "via LMTP", "lmtp@far.test");
    let mut c = SmtpClient::connect(lmtp.smtp());
    c.ehlo("client.far.test");
    let reply = c.send_mail(FAR, &["info@example.org"], &to_lmtp);
    if reply.code != 250 {
        dovecot.fail(&format!(
            "serve answered {} to the LMTP delivery; serve log:\n{}",
            reply.raw(),
            lmtp.log()
        ));
    }

    let mut imap = Imap::connect(dovecot.imap());
    let login = imap.login("alice@example.org", PASSWORD);
    assert!(login.ok(), "LOGIN: {}", login.status);
    let select = imap.command("SELECT INBOX");
    if !select.ok() || !select.text().contains("* 2 EXISTS") {
        dovecot.fail(&format!(
            "SELECT INBOX: {} {}",
            select.status,
            select.text()
        ));
    }
    let fetch = imap.command("FETCH 1:2 (BODY[])");
    assert!(fetch.ok(), "FETCH: {}", fetch.status);
    let bodies: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            fetch
                .literal("BODY[]", i)
                .unwrap_or_else(|| panic!("no BODY[] literal #{i} in {}", fetch.text()))
        })
        .collect();
    let by_id = |id: &str| -> &Vec<u8> {
        bodies
            .iter()
            .find(|b| message_id(&crlf(b)).as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no message {id} over IMAP: {}", fetch.text()))
    };
    // What serve wrote, byte for byte (IMAP shows line ends as CRLF).
    assert_eq!(
        String::from_utf8_lossy(by_id("maildir@far.test")),
        String::from_utf8_lossy(&crlf(&written)),
        "Dovecot serves the file serve delivered"
    );
    let over_lmtp = by_id("lmtp@far.test");
    assert!(
        over_lmtp.ends_with(&to_lmtp),
        "the LMTP delivery keeps the message as sent:\n{}",
        String::from_utf8_lossy(over_lmtp)
    );
    let text = String::from_utf8_lossy(over_lmtp).to_ascii_lowercase();
    assert!(
        text.contains("delivered-to: alice@example.org") && text.contains("by mx.example.test"),
        "Dovecot stored it for alice (the alias resolved by serve), after serve's Received:\n{text}"
    );
    assert!(imap.command("LOGOUT").ok());
}

// ------------------------------------------------------------------------------------------------ Postfix

/// example.org (alice, bob, the alias info@ to both), its alias domain example.net, and catchall.test whose
/// catch-all forwards to alice.
fn provision_recipients(site: &Site) {
    site.cli("domain add example.org");
    site.add_mailbox("alice@example.org", PASSWORD, None);
    site.add_mailbox("bob@example.org", PASSWORD, None);
    site.cli("alias add info@example.org alice@example.org bob@example.org");
    site.cli("alias-domain add example.net example.org");
    site.cli("domain add catchall.test");
    site.cli("alias add @catchall.test alice@example.org");
}

/// The map files `mailctl config postfix` wrote with the database password are readable by Postfix's
/// unprivileged processes (mode 0640, group postfix) and nobody else.
fn assert_maps_readable_by_postfix(maps: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let (_, postfix_gid) = harness::user_ids("postfix");
    let mut seen = 0;
    for entry in std::fs::read_dir(maps).expect("maps directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "cf") {
            let meta = std::fs::metadata(&path).expect("map metadata");
            assert_eq!(
                (meta.mode() & 0o777, meta.gid()),
                (0o640, postfix_gid),
                "{}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no map files in {}", maps.display());
}

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn postfix_with_the_generated_maps_and_serve_agree_on_every_recipient() {
    let db = setup(&[Need::Postfix]);
    let site = Site::new(db);
    provision_recipients(&site);
    let maps = site.generate("postfix");
    assert_maps_readable_by_postfix(&maps);
    let postfix = Postfix::start(&site, &maps, &[]);
    let serve = Serve::start(&site, ServeOptions::new("mx.example.test"));

    let cases: [(&str, &str, u16, &str); 8] = [
        ("mailbox", "alice@example.org", 250, "2.1.5"),
        ("alias", "info@example.org", 250, "2.1.5"),
        ("alias domain: mailbox", "bob@example.net", 250, "2.1.5"),
        ("alias domain: alias", "info@example.net", 250, "2.1.5"),
        ("catch-all", "anyone@catchall.test", 250, "2.1.5"),
        ("unknown user", "nobody@example.org", 550, "5.1.1"),
        (
            "alias domain: unknown user",
            "nobody@example.net",
            550,
            "5.1.1",
        ),
        ("domain not hosted", "someone@elsewhere.test", 554, "5.7.1"),
    ];
    for (what, rcpt, code, status) in cases {
        let p = pf::rcpt_reply(postfix.addr(), FAR, rcpt);
        if (p.code, enhanced(&p).as_str()) != (code, status) {
            postfix.fail(&format!(
                "{what} <{rcpt}>: expected {code} {status} from Postfix, got `{}`",
                p.raw()
            ));
        }
        let s = pf::rcpt_reply(serve.smtp(), FAR, rcpt);
        assert_eq!(
            (s.code, enhanced(&s)),
            (p.code, enhanced(&p)),
            "{what} <{rcpt}>: mailctl serve answered `{}`, Postfix `{}`",
            s.raw(),
            p.raw()
        );
    }
    let trouble = postfix.trouble();
    assert!(
        trouble.is_empty(),
        "Postfix reported trouble:\n{}",
        trouble.join("\n")
    );
}

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn serve_delivers_outbound_through_postfix_to_serve_and_the_mail_lands_in_the_maildir() {
    let db = setup(&[Need::Postfix]);
    // The receiving side: example.org on MariaDB, its MX is Postfix, which relays to mailctl serve.
    let site = Site::new(db);
    provision_recipients(&site);
    let inbound = Serve::start(&site, ServeOptions::new("mx.example.test"));
    let maps = site.generate("postfix");
    let transport = format!(
        "virtual_transport = smtp:[127.0.0.1]:{}",
        inbound.smtp().port()
    );
    let postfix = Postfix::start(&site, &maps, &[transport]);
    let dns = TestDns::start(&[(
        "example.org.",
        "example.org. IN MX 10 mx.example.org.\nmx.example.org. IN A 127.0.0.1\n",
    )]);

    // The sending side: a.test on its own SQLite database, delivering to MX hosts on Postfix's port.
    let sender = Site::new(TestDb::sqlite());
    sender.cli("domain add a.test");
    sender.add_mailbox("carol@a.test", PASSWORD, None);
    let mut options = ServeOptions::new("mx.a.test");
    options.outbound_port = Some(postfix.port);
    options.nameserver = Some(dns.nameserver());
    let outbound = Serve::start(&sender, options);

    let msg = message(
        "carol@a.test",
        "bob@example.org",
        "through Postfix",
        "relay@a.test",
    );
    let mut c = SmtpClient::connect(outbound.submission());
    c.ehlo("laptop.a.test");
    c.starttls(&outbound.cert.ca, "mx.a.test");
    c.ehlo("laptop.a.test");
    c.auth_plain("carol@a.test", PASSWORD).expect(235, "2.7.0");
    c.send_mail(
        "carol@a.test",
        &["bob@example.org", "info@example.org"],
        &msg,
    )
    .expect(250, "2.0.0");
    let _ = c.try_command("QUIT");

    let arrived = wait_until(Duration::from_secs(30), || {
        !site.new_mail("bob@example.org").is_empty()
            && !site.new_mail("alice@example.org").is_empty()
    });
    if !arrived {
        postfix.fail(&format!(
            "mail did not reach the Maildirs within 30 s (bob: {}, alice: {})\n\
             --- sending serve log ---\n{}\n--- receiving serve log ---\n{}",
            site.new_mail("bob@example.org").len(),
            site.new_mail("alice@example.org").len(),
            harness::tail(&outbound.log(), 30),
            harness::tail(&inbound.log(), 30)
        ));
    }
    // alice through info@, which Postfix expanded with the alias map; bob directly and through info@, once
    // (Postfix drops the duplicate recipient, and the relay carries both in one transaction).
    let (bob, alice) = (
        site.new_mail("bob@example.org"),
        site.new_mail("alice@example.org"),
    );
    assert_eq!((bob.len(), alice.len()), (1, 1), "one copy each");
    for file in bob.iter().chain(&alice) {
        let text = String::from_utf8_lossy(file);
        assert!(file.ends_with(&msg), "the message arrives as sent:\n{text}");
        assert!(
            text.contains(&format!("by {} (Postfix)", pf::HOSTNAME)),
            "it passed through Postfix:\n{text}"
        );
        assert!(
            text.contains("by mx.a.test"),
            "it left through the sending serve:\n{text}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || outbound.queue().is_empty()),
        "the sender's queue empties: {:?}",
        outbound.queue()
    );
    // One line per recipient Postfix relayed: alice (from info@), bob, and bob again (from info@: Postfix
    // keeps a duplicate whose original recipient differs; the receiving serve stores one copy).
    let log = postfix.log();
    let relayed: Vec<&str> = log.lines().filter(|l| l.contains(" to=<")).collect();
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{}", inbound.smtp().port());
    assert!(
        relayed.len() == 3
            && relayed
                .iter()
                .all(|l| l.contains("status=sent") && l.contains(&relay))
            && relayed
                .iter()
                .any(|l| l.contains("to=<alice@example.org>, orig_to=<info@example.org>"))
            && relayed
                .iter()
                .any(|l| l.contains("to=<bob@example.org>, relay=")),
        "Postfix relayed every recipient to the receiving serve:\n{log}"
    );
    let trouble = postfix.trouble();
    assert!(
        trouble.is_empty(),
        "Postfix reported trouble:\n{}",
        trouble.join("\n")
    );
}

// -------------------------------------------------------------------------------------------------- swaks

#[test]
#[ignore = "interop: needs root, Postfix, Dovecot and swaks; run with --ignored (.ci/run does)"]
fn swaks_submits_to_serve_over_starttls_with_auth_plain() {
    let db = setup(&[Need::Swaks]);
    let site = Site::new(db);
    site.cli("domain add example.org");
    site.add_mailbox("alice@example.org", PASSWORD, None);
    site.add_mailbox("bob@example.org", PASSWORD, None);
    // Mail for elsewhere.test goes to an MX where nothing listens, so it stays queued.
    let dns = TestDns::start(&[(
        "elsewhere.test.",
        "elsewhere.test. IN MX 10 mx.elsewhere.test.\nmx.elsewhere.test. IN A 127.0.0.1\n",
    )]);
    let mut options = ServeOptions::new("mx.example.test");
    options.nameserver = Some(dns.nameserver());
    options.outbound_port = Some(harness::free_port());
    let serve = Serve::start(&site, options);
    let swaks = program("swaks").expect("swaks installed");
    let server = serve.submission().to_string();
    let ca = serve.ca_file.to_string_lossy().into_owned();
    let swaks_run = |to: &str, id: &str, password: &str, tls: bool| {
        let header = format!("Message-Id: <{id}>");
        let mut args = vec![
            "--server",
            &server,
            "--ehlo",
            "laptop.example.org",
            "--from",
            "alice@example.org",
            "--to",
            to,
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.org",
            "--auth-password",
            password,
            "--header",
            &header,
            "--body",
            "Sent by swaks through mailctl serve.",
            "--timeout",
            "20",
        ];
        if tls {
            args.extend(["--tls", "--tls-verify", "--tls-ca-path", &ca]);
        }
        run_tool(&swaks, &args, Duration::from_secs(40))
    };

    let local = swaks_run("bob@example.org", "swaks-local@example.org", PASSWORD, true);
    if local.code != 0 {
        serve.fail(&format!("swaks exit {}:\n{}", local.code, local.stdout));
    }
    assert!(
        local.stdout.contains("STARTTLS") && local.stdout.contains("235 "),
        "swaks used STARTTLS and authenticated:\n{}",
        local.stdout
    );
    let inbox = site.new_mail("bob@example.org");
    assert_eq!(inbox.len(), 1, "one message for bob:\n{}", local.stdout);
    assert_eq!(
        message_id(&crlf(&inbox[0])).as_deref(),
        Some("swaks-local@example.org")
    );

    let remote = swaks_run(
        "someone@elsewhere.test",
        "swaks-remote@example.org",
        PASSWORD,
        true,
    );
    if remote.code != 0 {
        serve.fail(&format!("swaks exit {}:\n{}", remote.code, remote.stdout));
    }
    let queue = serve.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(
        queue[0]["recipients"],
        serde_json::json!(["someone@elsewhere.test"]),
        "{queue:?}"
    );

    // swaks exit codes: 28 = AUTH failed (a wrong password; no AUTH offered before STARTTLS).
    let wrong = swaks_run("bob@example.org", "swaks-wrong@example.org", "wrong", true);
    assert_eq!(wrong.code, 28, "wrong password:\n{}", wrong.stdout);
    let plain = swaks_run(
        "bob@example.org",
        "swaks-plain@example.org",
        PASSWORD,
        false,
    );
    assert_eq!(plain.code, 28, "AUTH without TLS:\n{}", plain.stdout);
    assert_eq!(
        site.new_mail("bob@example.org").len(),
        1,
        "nothing more was delivered"
    );
}
