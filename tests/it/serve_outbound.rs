//! `mailctl serve` delivering to other domains, end to end between two real instances on loopback: alice
//! submits to A (STARTTLS + AUTH), A signs with a.test's DKIM key, queues, looks up the MX through the test
//! DNS server and delivers to B, whose inbound checks must all pass; a recipient B refuses comes back to alice
//! as a DSN in A's Maildir (and a DSN that cannot be delivered ends there); MX preference, fallback to the
//! next MX, null MX and the implicit MX; MTA-STS `enforce` with a certificate A cannot verify defers instead
//! of sending in clear. See `worlds/outbound_world.rs` for the DNS and the addresses.
//! The queue's retries, restarts and `mailctl queue` are in `serve_outbound_queue.rs`.

use crate::worlds::outbound_world;

use std::time::Duration;

use kit::serve::HOSTNAME;
use kit::serve::mail::{Delivered, PASSWORD, cli, message, message_id};
use kit::smtp::{HttpsServer, TestCa, policy_response};
use kit::smtp_client::SmtpClient;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use outbound_world::{
    ALICE, BOB, SELECTOR, World, all_delivered, bounces, ids, queue_list, submit, wait_for,
};

/// Submits a lettre-built message from alice to `to` on A's submission listener over STARTTLS with AUTH.
fn lettre_submit(world: &World, to: &str, id: &str) {
    let a = &world.a;
    let cert = a.server.cert.as_ref().expect("TLS");
    let root = Certificate::from_pem(cert.ca_pem.as_bytes()).expect("CA PEM");
    let tls = TlsParameters::builder(HOSTNAME.to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(root)
        .build_rustls()
        .expect("TLS parameters");
    let addr = a.addr("submission");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(Tls::Required(tls))
        .hello_name(ClientId::Domain("laptop.a.test".into()))
        .credentials(Credentials::new(ALICE.into(), PASSWORD.into()))
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let msg = Message::builder()
        .from(format!("Alice <{ALICE}>").parse().expect("from"))
        .to(to.parse().expect("to"))
        .subject("from A to B")
        .message_id(Some(format!("<{id}>")))
        .body(String::from("Hello Bob,\r\nthis crossed two servers.\r\n"))
        .expect("message");
    let sent = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(transport.send(msg));
    let reply = sent.unwrap_or_else(|e| a.fail(&format!("lettre submission: {e}")));
    assert_eq!(reply.code().to_string(), "250");
}

#[test]
fn submitted_mail_is_signed_delivered_to_the_other_server_and_passes_spf_dkim_and_dmarc() {
    let mut w = World::new(1);
    w.b.start();
    w.a.start();
    lettre_submit(&w, BOB, "ab1@a.test");
    wait_for(&w.a, "bob@b.test has the message on B", 15, || {
        !w.b.server.inbox(BOB).is_empty()
    });
    let files = w.b.server.inbox(BOB);
    assert_eq!(files.len(), 1, "exactly one copy");
    assert!(
        w.b.server.junk(BOB).read_dir().is_err(),
        "nothing went to Junk"
    );
    let d = Delivered::parse(&files[0]);
    let results = d.fields("Authentication-Results");
    assert_eq!(results.len(), 1, "{:?}", d.trace);
    let results = &results[0];
    for expected in [
        format!("spf=pass smtp.mailfrom={ALICE}"),
        format!("dkim=pass header.d=a.test header.s={SELECTOR}"),
        "dmarc=pass header.from=a.test".to_string(),
    ] {
        assert!(
            results.contains(&expected),
            "{expected:?} missing in {results}"
        );
    }
    // B's Received says the hop used TLS (opportunistic STARTTLS; B's certificate is from a CA A does not know).
    let received = &d.fields("Received")[0];
    assert!(received.contains("with ESMTPS"), "{received}");
    assert!(
        received.contains(&format!("from {HOSTNAME} (")),
        "{received}"
    );
    // A's own Received and the signature travel with the message.
    let rest = String::from_utf8_lossy(&d.rest);
    assert!(rest.contains("DKIM-Signature: "), "{rest}");
    assert!(rest.contains("with ESMTPSA"), "{rest}");
    assert_eq!(message_id(&d.rest).as_deref(), Some("ab1@a.test"));
    wait_for(&w.a, "A's queue is empty", 10, || {
        queue_list(&w.a).is_empty()
    });
    assert!(bounces(&w.a, ALICE).is_empty());
}

#[test]
fn a_refused_recipient_comes_back_to_the_sender_as_a_dsn_and_dsns_never_loop() {
    let mut w = World::new(3);
    cli(w.a_db(), "alias add fwd@a.test nobody@b.test");
    w.b.start();
    w.a.start();
    // One message, one accepted and one unknown recipient at B.
    let msg = message(ALICE, BOB, "partly refused", "refused@a.test");
    submit(&w.a, &[BOB, "nobody@b.test"], &msg);
    wait_for(&w.a, "alice has a DSN", 15, || {
        !bounces(&w.a, ALICE).is_empty()
    });
    assert_eq!(ids(&w.b, BOB).get("refused@a.test"), Some(&1));
    let dsn = &bounces(&w.a, ALICE)[0];
    for expected in [
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>",
        "To: <alice@a.test>",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; nobody@b.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.b.test",
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@b.test>",
        "Message-ID: <refused@a.test>",
    ] {
        assert!(
            dsn.contains(expected),
            "{expected:?} missing in DSN:\n{dsn}"
        );
    }
    assert!(
        !dsn.contains("Final-Recipient: rfc822; bob@b.test"),
        "the delivered recipient is not reported:\n{dsn}"
    );
    wait_for(&w.a, "A's queue is empty", 10, || {
        queue_list(&w.a).is_empty()
    });

    // Mail from outside to an alias forwarding to the unknown user: ghost@b.test is not authenticated (b.test
    // publishes neither SPF nor DMARC), so the copy went out with a silent SRS sender and A's DSN for it is
    // dropped rather than sent to a sender who may be forged (see serve_forward.rs); the queue empties.
    let mut mx = SmtpClient::connect(w.a.addr("smtp"));
    mx.ehlo("client.b.test");
    let fwd = message("ghost@b.test", "fwd@a.test", "forwarded", "fwd@b.test");
    mx.send_mail("ghost@b.test", &["fwd@a.test"], &fwd)
        .expect(250, "2.0.0");
    wait_for(
        &w.a,
        "the forwarded message is refused and its DSN dropped",
        15,
        || {
            let log = w.a.server.log();
            log.contains("DSN refused by local delivery; dropped") && queue_list(&w.a).is_empty()
        },
    );
    std::thread::sleep(Duration::from_secs(6));
    assert!(queue_list(&w.a).is_empty(), "{:?}", queue_list(&w.a));
    assert_eq!(bounces(&w.a, ALICE).len(), 1, "alice got exactly one DSN");
    let log = w.a.server.log();
    assert!(
        !log.lines().any(|l| l.contains("DSN queued")),
        "no DSN went out: {log}"
    );
    assert_eq!(
        all_delivered(&w.b).len(),
        1,
        "B holds only bob's copy: {:?}",
        all_delivered(&w.b)
    );
}

#[test]
fn mx_preference_fallback_null_mx_and_the_implicit_mx() {
    let mut w = World::new(5);
    // The second-preference MX of p.test records every connection; the first (B) must take the mail.
    let recorder = std::net::TcpListener::bind((w.ip(9), w.port)).expect("recorder");
    recorder.set_nonblocking(true).expect("nonblocking");
    w.b.start();
    w.a.start();
    let cases = [
        ("bob@c.test", "fallback@a.test"),
        ("bob@p.test", "preference@a.test"),
        ("bob@e.test", "implicit@a.test"),
        ("bob@null.test", "nullmx@a.test"),
    ];
    for (to, id) in cases {
        submit(&w.a, &[to], &message(ALICE, to, id, id));
    }
    wait_for(&w.a, "three deliveries and one DSN", 15, || {
        cases[..3]
            .iter()
            .all(|(to, _)| !w.b.server.inbox(to).is_empty())
            && !bounces(&w.a, ALICE).is_empty()
    });
    for (to, id) in &cases[..3] {
        assert_eq!(ids(&w.b, to), [(id.to_string(), 1)].into(), "{to}");
    }
    assert!(
        recorder.accept().is_err(),
        "the MX of preference 20 was contacted although preference 10 took the mail"
    );
    assert!(w.b.server.inbox("bob@null.test").is_empty());
    let dsns = bounces(&w.a, ALICE);
    assert_eq!(dsns.len(), 1, "{dsns:?}");
    for expected in [
        "Final-Recipient: rfc822; bob@null.test",
        "Status: 5.1.10",
        "556 5.1.10",
        "Message-ID: <nullmx@a.test>",
    ] {
        assert!(
            dsns[0].contains(expected),
            "{expected:?} missing in:\n{}",
            dsns[0]
        );
    }
    wait_for(&w.a, "A's queue is empty", 10, || {
        queue_list(&w.a).is_empty()
    });
}

#[test]
fn mta_sts_enforce_with_an_unverifiable_certificate_defers_and_never_sends_in_clear() {
    let mut w = World::new(6);
    // s.test publishes an enforce policy naming mx.s.test (B), whose certificate is from B's own CA: A trusts
    // the policy server's CA (for the HTTPS fetch) but not B's.
    let ca = TestCa::new();
    let body = "version: STSv1\r\nmode: enforce\r\nmx: mx.s.test\r\nmax_age: 86400\r\n";
    let policy = HttpsServer::start(
        &w.ip(10).to_string(),
        ca.server_config(&["mta-sts.s.test"], 30),
        policy_response(body),
    );
    let ca_file = w.a.server.path("policy-ca.pem");
    ca.write_pem(&ca_file);
    let ca_file = toml::Value::from(ca_file.to_string_lossy().into_owned()).to_string();
    w.a.set_outbound("mta_sts_port", &policy.port())
        .set_outbound("extra_ca", &ca_file);
    w.b.start();
    w.a.start();
    submit(
        &w.a,
        &["bob@s.test"],
        &message(ALICE, "bob@s.test", "sts", "sts@a.test"),
    );
    // Control: b.test has no policy, and the same certificate is fine for opportunistic TLS.
    submit(&w.a, &[BOB], &message(ALICE, BOB, "no sts", "nosts@a.test"));
    wait_for(&w.a, "bob@b.test has the control message", 15, || {
        !w.b.server.inbox(BOB).is_empty()
    });
    let deferred = |min_attempts: u64| {
        let list = queue_list(&w.a);
        list.len() == 1
            && list[0]["attempts"].as_u64().unwrap_or(0) >= min_attempts
            && list[0]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("MTA-STS"))
    };
    wait_for(
        &w.a,
        "the s.test message is deferred for MTA-STS",
        15,
        || deferred(1),
    );
    wait_for(&w.a, "it was retried and deferred again", 15, || {
        deferred(2)
    });
    let list = queue_list(&w.a);
    let error = list[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "mx.s.test[{}]: 4.7.5 TLS required by the MTA-STS policy of s.test failed",
            w.ip(3)
        )),
        "{error}"
    );
    assert_eq!(list[0]["recipients"], serde_json::json!(["bob@s.test"]));
    assert!(
        w.b.server.inbox("bob@s.test").is_empty(),
        "delivered despite the policy"
    );
    assert!(
        bounces(&w.a, ALICE).is_empty(),
        "a deferral is not a bounce"
    );
}
