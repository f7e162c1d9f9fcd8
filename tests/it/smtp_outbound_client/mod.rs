//! The outbound SMTP client (`smtp::outbound::Outbound::deliver_domain`) against fake MX hosts on loopback,
//! found through the in-process test DNS server: per-recipient results, MX fallback (refused connection, 421
//! greeting), 4xx at RCPT, null MX, the implicit MX, opportunistic STARTTLS (bad certificate, broken
//! handshake), MTA-STS enforce (bad certificate, no STARTTLS, MX not in the policy, good certificate) and
//! testing, a silent or vanishing server after DATA, and IPv6.

mod fake_mx;
mod tls;

use std::time::Duration;

use fake_mx::{Final, MxScript, start_group};
use kit::dns::TestDns;
use mailctl::dns::Resolver;
use mailctl::smtp::outbound::Outbound;
use mailctl::smtp::queue::Outcome;
use mailctl::smtp::settings::OutboundSettings;

const HOSTNAME: &str = "mail.a.test";
const SENDER: &str = "sender@a.test";

const ZONE: &str = "\
rcpts.test.\tIN\tMX\t10 mx1.rcpts.test.
mx1.rcpts.test.\tIN\tA\t127.66.1.1
refused.test.\tIN\tMX\t10 mx1.refused.test.
refused.test.\tIN\tMX\t20 mx2.refused.test.
mx1.refused.test.\tIN\tA\t127.66.2.1
mx2.refused.test.\tIN\tA\t127.66.2.2
busy.test.\tIN\tMX\t10 mx1.busy.test.
busy.test.\tIN\tMX\t20 mx2.busy.test.
mx1.busy.test.\tIN\tA\t127.66.3.1
mx2.busy.test.\tIN\tA\t127.66.3.2
later.test.\tIN\tMX\t10 mx.later.test.
mx.later.test.\tIN\tA\t127.66.4.1
nullmx.test.\tIN\tMX\t0 .
nullmx.test.\tIN\tA\t127.66.5.1
nomx.test.\tIN\tA\t127.66.6.1
opp.test.\tIN\tMX\t10 mx.opp.test.
mx.opp.test.\tIN\tA\t127.66.7.1
brokentls.test.\tIN\tMX\t10 mx.brokentls.test.
mx.brokentls.test.\tIN\tA\t127.66.8.1
sts-bad.test.\tIN\tMX\t10 mx.sts-bad.test.
mx.sts-bad.test.\tIN\tA\t127.66.9.1
_mta-sts.sts-bad.test.\tIN\tTXT\t\"v=STSv1; id=1\"
mta-sts.sts-bad.test.\tIN\tA\t127.66.9.9
sts-good.test.\tIN\tMX\t10 mx.sts-good.test.
mx.sts-good.test.\tIN\tA\t127.66.10.1
_mta-sts.sts-good.test.\tIN\tTXT\t\"v=STSv1; id=1\"
mta-sts.sts-good.test.\tIN\tA\t127.66.10.9
sts-plain.test.\tIN\tMX\t10 mx.sts-plain.test.
mx.sts-plain.test.\tIN\tA\t127.66.11.1
_mta-sts.sts-plain.test.\tIN\tTXT\t\"v=STSv1; id=1\"
mta-sts.sts-plain.test.\tIN\tA\t127.66.11.9
sts-other.test.\tIN\tMX\t10 mx.sts-other.test.
mx.sts-other.test.\tIN\tA\t127.66.12.1
_mta-sts.sts-other.test.\tIN\tTXT\t\"v=STSv1; id=1\"
mta-sts.sts-other.test.\tIN\tA\t127.66.12.9
slow.test.\tIN\tMX\t10 mx.slow.test.
mx.slow.test.\tIN\tA\t127.66.13.1
drop.test.\tIN\tMX\t10 mx.drop.test.
mx.drop.test.\tIN\tA\t127.66.14.1
six.test.\tIN\tMX\t10 mx.six.test.
mx.six.test.\tIN\tA\t127.66.15.1
mx.six.test.\tIN\tAAAA\t::1
sts-test.test.\tIN\tMX\t10 mx.sts-test.test.
mx.sts-test.test.\tIN\tA\t127.66.16.1
_mta-sts.sts-test.test.\tIN\tTXT\t\"v=STSv1; id=1\"
mta-sts.sts-test.test.\tIN\tA\t127.66.16.9
utf8.test.\tIN\tMX\t10 mx.utf8.test.
mx.utf8.test.\tIN\tA\t127.66.17.1
";

/// A message with a non-ASCII body and lines that need dot-stuffing.
const MESSAGE: &[u8] =
    "From: sender@a.test\r\nTo: alice@rcpts.test\r\nSubject: hello\r\n\r\nline one\r\n\
.leading dot\r\n..two dots\r\n.\r\nünïcödé\r\n"
        .as_bytes();

struct Setup {
    _dns: TestDns,
    resolver: Resolver,
}

fn dns() -> Setup {
    let dns = TestDns::start(&[("test.", ZONE)]);
    let resolver = Resolver::build(&[&dns.nameserver()], Duration::from_secs(2)).unwrap();
    Setup {
        _dns: dns,
        resolver,
    }
}

fn outbound(setup: &Setup, port: u16) -> Outbound {
    let settings = OutboundSettings {
        port,
        concurrency: 1,
        per_domain: 1,
        timeout: Duration::from_secs(5),
        extra_ca: None,
        mta_sts_port: 443,
        relay: None,
    };
    Outbound::new(setup.resolver.clone(), HOSTNAME.into(), &settings).expect("outbound client")
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn delivered(o: &Outcome) -> &str {
    match o {
        Outcome::Delivered(t) => t,
        other => panic!("expected Delivered, got {other:?}"),
    }
}

fn deferred(o: &Outcome) -> &str {
    match o {
        Outcome::Deferred(t) => t,
        other => panic!("expected Deferred, got {other:?}"),
    }
}

fn failed(o: &Outcome) -> &str {
    match o {
        Outcome::Failed(t) => t,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn one_transaction_settles_each_recipient_with_the_remote_reply() {
    let setup = dns();
    let mut script = MxScript::accepting("mx1.rcpts.test");
    script.rcpt.push((
        "nobody@rcpts.test".into(),
        "550 5.1.1 <nobody@rcpts.test>: Recipient address rejected: User unknown".into(),
    ));
    let (port, mx) = start_group(vec![("127.66.1.1", script)]).await;
    let results = outbound(&setup, port)
        .deliver_domain(
            "rcpts.test",
            SENDER,
            &rcpts(&["alice@rcpts.test", "nobody@rcpts.test"]),
            MESSAGE,
        )
        .await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].address, "alice@rcpts.test");
    assert_eq!(
        delivered(&results[0].outcome),
        "mx1.rcpts.test[127.66.1.1]: 250 2.0.0 Ok: queued as FAKE1"
    );
    assert_eq!(
        failed(&results[1].outcome),
        "mx1.rcpts.test[127.66.1.1]: 550 5.1.1 <nobody@rcpts.test>: Recipient address rejected: User unknown"
    );
    let sessions = mx[0].sessions_after_quit().await;
    assert_eq!(sessions.len(), 1, "one connection for the whole domain");
    let s = &sessions[0];
    assert_eq!(
        s.message.as_deref(),
        Some(MESSAGE),
        "the message arrives byte for byte"
    );
    assert_eq!(
        s.commands,
        [
            "EHLO mail.a.test",
            "MAIL FROM:<sender@a.test> BODY=8BITMIME",
            "RCPT TO:<alice@rcpts.test>",
            "RCPT TO:<nobody@rcpts.test>",
            "DATA",
            "QUIT"
        ]
    );
}

#[tokio::test]
async fn a_refused_connection_moves_on_to_the_next_mx() {
    let setup = dns();
    // Only the second MX listens.
    let (port, mx) = start_group(vec![(
        "127.66.2.2",
        MxScript::accepting("mx2.refused.test"),
    )])
    .await;
    let results = outbound(&setup, port)
        .deliver_domain(
            "refused.test",
            SENDER,
            &rcpts(&["bob@refused.test"]),
            MESSAGE,
        )
        .await;
    assert!(delivered(&results[0].outcome).starts_with("mx2.refused.test[127.66.2.2]: 250 "));
    assert_eq!(mx[0].sessions().len(), 1);
}

#[tokio::test]
async fn a_421_greeting_moves_on_to_the_next_mx_and_everything_down_defers() {
    let setup = dns();
    let mut busy = MxScript::accepting("mx1.busy.test");
    busy.greeting = "421 4.3.2 mx1.busy.test too busy, try later".into();
    let (port, mx) = start_group(vec![
        ("127.66.3.1", busy.clone()),
        ("127.66.3.2", MxScript::accepting("mx2.busy.test")),
    ])
    .await;
    let results = outbound(&setup, port)
        .deliver_domain("busy.test", SENDER, &rcpts(&["bob@busy.test"]), MESSAGE)
        .await;
    assert!(delivered(&results[0].outcome).starts_with("mx2.busy.test[127.66.3.2]: 250 "));
    assert_eq!(mx[0].sessions().len(), 1);
    assert!(!mx[0].saw_mail());
    drop(mx);

    // Both hosts busy: deferred with the last host's greeting.
    let (port, _mx) = start_group(vec![("127.66.3.1", busy.clone()), ("127.66.3.2", busy)]).await;
    let results = outbound(&setup, port)
        .deliver_domain("busy.test", SENDER, &rcpts(&["bob@busy.test"]), MESSAGE)
        .await;
    assert_eq!(
        deferred(&results[0].outcome),
        "mx2.busy.test[127.66.3.2]: 421 4.3.2 mx1.busy.test too busy, try later"
    );
}

/// Delivers two messages to `rcpts.test` at the same time: the session that ends first is kept.
async fn two_at_once(out: &Outbound) {
    let (a, b) = (rcpts(&["a@rcpts.test"]), rcpts(&["b@rcpts.test"]));
    let (first, second) = tokio::join!(
        out.deliver_domain("rcpts.test", SENDER, &a, MESSAGE),
        out.deliver_domain("rcpts.test", SENDER, &b, MESSAGE),
    );
    delivered(&first[0].outcome);
    delivered(&second[0].outcome);
}

/// The connection cache, on demand (Postfix's `smtp_connection_cache_on_demand`): a session that ends while
/// another delivery to the same host is under way is kept, and the next delivery takes it after `RSET`; a
/// session that ends alone says `QUIT` at once.
#[tokio::test]
async fn a_backlog_for_one_host_reuses_the_session_and_a_lone_message_ends_with_quit() {
    let setup = dns();
    let (port, mx) = start_group(vec![("127.66.1.1", MxScript::accepting("mx1.rcpts.test"))]).await;
    let out = outbound(&setup, port);
    two_at_once(&out).await;
    let third = out
        .deliver_domain("rcpts.test", SENDER, &rcpts(&["c@rcpts.test"]), MESSAGE)
        .await;
    delivered(&third[0].outcome);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let sessions = loop {
        let sessions = mx[0].sessions();
        let all_quit = sessions
            .iter()
            .all(|s| s.commands.last().is_some_and(|c| c == "QUIT"));
        if all_quit || tokio::time::Instant::now() >= deadline {
            break sessions;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        sessions.len(),
        2,
        "three messages, two connections: {sessions:?}"
    );
    let reused = sessions
        .iter()
        .find(|s| s.commands.iter().any(|c| c == "RSET"))
        .unwrap_or_else(|| panic!("no session was reused: {sessions:?}"));
    let mails = reused
        .commands
        .iter()
        .filter(|c| c.starts_with("MAIL FROM"))
        .count();
    assert_eq!(mails, 2, "{:?}", reused.commands);
    assert!(
        sessions
            .iter()
            .all(|s| s.commands.last().is_some_and(|c| c == "QUIT")),
        "with nothing more under way every session ends with QUIT: {sessions:?}"
    );
}

/// A kept session that no later delivery takes is closed with `QUIT` once it has been idle for
/// `pool::IDLE`, not held for ever.
#[tokio::test]
async fn a_kept_session_nobody_takes_is_closed_with_quit_after_idling() {
    let setup = dns();
    let (port, mx) = start_group(vec![("127.66.1.1", MxScript::accepting("mx1.rcpts.test"))]).await;
    let out = outbound(&setup, port);
    two_at_once(&out).await;
    let quits = |sessions: &[fake_mx::Session]| {
        sessions
            .iter()
            .filter(|s| s.commands.last().is_some_and(|c| c == "QUIT"))
            .count()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quits(&mx[0].sessions()), 1, "one session is kept");
    let limit = mailctl::smtp::outbound::pool::IDLE + Duration::from_secs(3);
    let deadline = tokio::time::Instant::now() + limit;
    while quits(&mx[0].sessions()) < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(quits(&mx[0].sessions()), 2, "{:?}", mx[0].sessions());
    drop(out);
}

#[tokio::test]
async fn a_4xx_at_rcpt_defers_and_no_data_is_sent() {
    let setup = dns();
    let mut script = MxScript::accepting("mx.later.test");
    script.rcpt.push((
        "carol@later.test".into(),
        "451 4.3.0 <carol@later.test>: greylisted, come back".into(),
    ));
    let (port, mx) = start_group(vec![("127.66.4.1", script)]).await;
    let results = outbound(&setup, port)
        .deliver_domain("later.test", SENDER, &rcpts(&["carol@later.test"]), MESSAGE)
        .await;
    assert_eq!(
        deferred(&results[0].outcome),
        "mx.later.test[127.66.4.1]: 451 4.3.0 <carol@later.test>: greylisted, come back"
    );
    let s = &mx[0].sessions_after_quit().await[0];
    assert!(s.message.is_none());
    assert!(!s.commands.iter().any(|c| c == "DATA"), "{:?}", s.commands);
    assert_eq!(s.commands.last().map(String::as_str), Some("QUIT"));
}

#[tokio::test]
async fn a_null_mx_fails_every_recipient_without_connecting() {
    let setup = dns();
    // The domain also has an A record with a listening server: it must not be used.
    let (port, mx) = start_group(vec![("127.66.5.1", MxScript::accepting("nullmx.test"))]).await;
    let results = outbound(&setup, port)
        .deliver_domain(
            "nullmx.test",
            SENDER,
            &rcpts(&["a@nullmx.test", "b@nullmx.test"]),
            MESSAGE,
        )
        .await;
    for r in &results {
        assert_eq!(
            failed(&r.outcome),
            "nullmx.test: 556 5.1.10 domain does not accept mail (null MX)"
        );
    }
    assert!(mx[0].sessions().is_empty());
}

#[tokio::test]
async fn without_mx_the_domain_address_is_used_and_the_null_sender_is_sent() {
    let setup = dns();
    let (port, mx) = start_group(vec![("127.66.6.1", MxScript::accepting("nomx.test"))]).await;
    let results = outbound(&setup, port)
        .deliver_domain("nomx.test", "", &rcpts(&["dave@nomx.test"]), MESSAGE)
        .await;
    assert!(delivered(&results[0].outcome).starts_with("nomx.test[127.66.6.1]: 250 "));
    let commands = &mx[0].sessions()[0].commands;
    assert_eq!(commands[1], "MAIL FROM:<> BODY=8BITMIME");
}

#[tokio::test]
async fn no_reply_after_the_data_defers() {
    let setup = dns();
    let mut script = MxScript::accepting("mx.slow.test");
    script.end = Final::Silent;
    let (port, mx) = start_group(vec![("127.66.13.1", script)]).await;
    let client = outbound(&setup, port).with_data_timeout(Duration::from_secs(1));
    let results = client
        .deliver_domain(
            "slow.test",
            SENDER,
            &rcpts(&["lee@slow.test", "max@slow.test"]),
            MESSAGE,
        )
        .await;
    for r in &results {
        assert_eq!(
            deferred(&r.outcome),
            "mx.slow.test[127.66.13.1]: 4.4.2 no reply to the end of data within 1 s"
        );
    }
    assert_eq!(mx[0].sessions().len(), 1, "no second attempt right away");
}

#[tokio::test]
async fn a_connection_closed_after_the_data_defers() {
    let setup = dns();
    let mut script = MxScript::accepting("mx.drop.test");
    script.end = Final::Close;
    let (port, mx) = start_group(vec![("127.66.14.1", script)]).await;
    let results = outbound(&setup, port)
        .deliver_domain("drop.test", SENDER, &rcpts(&["ned@drop.test"]), MESSAGE)
        .await;
    let text = deferred(&results[0].outcome);
    assert!(
        text.starts_with(
            "mx.drop.test[127.66.14.1]: 4.4.2 connection broken during the end of data"
        ),
        "{text}"
    );
    assert_eq!(mx[0].sessions().len(), 1);
}

#[tokio::test]
async fn ipv6_is_tried_after_ipv4() {
    let setup = dns();
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "this test needs an IPv6 loopback address (::1)"
    );
    // Nothing on the IPv4 address; the IPv6 one listens.
    let (port, mx) = start_group(vec![("::1", MxScript::accepting("mx.six.test"))]).await;
    let results = outbound(&setup, port)
        .deliver_domain("six.test", SENDER, &rcpts(&["oz@six.test"]), MESSAGE)
        .await;
    assert!(delivered(&results[0].outcome).starts_with("mx.six.test[::1]: 250 "));
    assert_eq!(mx[0].sessions().len(), 1);
}

#[tokio::test]
async fn addresses_that_cannot_be_sent_fail_without_connecting() {
    let setup = dns();
    let (port, mx) = start_group(vec![("127.66.1.1", MxScript::accepting("mx1.rcpts.test"))]).await;
    let results = outbound(&setup, port)
        .deliver_domain(
            "rcpts.test",
            SENDER,
            &rcpts(&["evil@rcpts.test>\r\nRSET", "no at sign"]),
            MESSAGE,
        )
        .await;
    for r in &results {
        assert!(
            failed(&r.outcome).starts_with("rcpts.test: 5.1.3 "),
            "{:?}",
            r.outcome
        );
    }
    assert!(mx[0].sessions().is_empty());
}

#[tokio::test]
async fn smtputf8_is_used_when_offered_and_required_addresses_fail_without_it() {
    let setup = dns();
    let list = rcpts(&["alice@utf8.test", "jörg@utf8.test"]);
    let (port, mx) = start_group(vec![("127.66.17.1", MxScript::accepting("mx.utf8.test"))]).await;
    let results = outbound(&setup, port)
        .deliver_domain("utf8.test", SENDER, &list, MESSAGE)
        .await;
    delivered(&results[0].outcome);
    assert_eq!(
        failed(&results[1].outcome),
        "mx.utf8.test[127.66.17.1]: 5.6.7 SMTPUTF8 is required but not offered by the server"
    );
    assert!(
        !mx[0].sessions()[0]
            .commands
            .iter()
            .any(|c| c.contains("jörg"))
    );
    drop(mx);

    let mut script = MxScript::accepting("mx.utf8.test");
    script.extensions.push("SMTPUTF8");
    let (port, mx) = start_group(vec![("127.66.17.1", script)]).await;
    let results = outbound(&setup, port)
        .deliver_domain("utf8.test", SENDER, &list, MESSAGE)
        .await;
    delivered(&results[0].outcome);
    delivered(&results[1].outcome);
    let commands = &mx[0].sessions()[0].commands;
    assert_eq!(
        commands[1],
        "MAIL FROM:<sender@a.test> SMTPUTF8 BODY=8BITMIME"
    );
    assert_eq!(commands[3], "RCPT TO:<jörg@utf8.test>");
}
