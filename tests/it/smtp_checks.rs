//! The inbound checks of `mailctl serve` (iprev, DNSBL, SPF, DKIM, DMARC) called directly, without a daemon,
//! against an authoritative DNS server on loopback serving every record they look up.
//!
//! Client IPs are in 192.0.2.0/24 and 198.51.100.0/24: the resolver answers PTR queries under
//! `127.in-addr.arpa` itself, so loopback reverse zones cannot be served. All names sit in one zone `example.`,
//! so DMARC's tree walk (which climbs to `_dmarc.example.`) gets NXDOMAIN rather than the REFUSED the server
//! gives for names outside its zones. Where DNS must not answer at all, a silent UDP socket stands in for the
//! server and counts the queries it swallows.

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kit::dns::TestDns;
use mailctl::dkim::{KeySpec, keys};
use mailctl::dns::Resolver;
use mailctl::smtp::inbound::checks::{Checks, ConnectResult, Outcome, SpfResult, Verdict};
use mailctl::smtp::metrics::RejectReason;
use mailctl::smtp::settings::{Action, CheckPolicy};

const HOST: &str = "mx.test.example";
/// Forward-confirmed: PTR mx.good.example, which resolves back. Authorized by spfpass.example's SPF.
const GOOD: &str = "192.0.2.10";
/// PTR mail.badptr.example, which resolves to another address.
const BAD_PTR: &str = "192.0.2.40";
/// No PTR at all.
const NO_PTR: &str = "192.0.2.50";
/// Listed on bl.example.
const LISTED: &str = "198.51.100.66";
/// bl.example answers its "you may not query" code 127.255.255.254 for this one.
const ERROR_CODE: &str = "198.51.100.67";

const ZONE: &str = r#"
mx.good.example.          IN A   192.0.2.10
mail.badptr.example.      IN A   192.0.2.41
spfpass.example.          IN TXT "v=spf1 ip4:192.0.2.10 -all"
_dmarc.spfpass.example.   IN TXT "v=DMARC1; p=reject"
spffail.example.          IN TXT "v=spf1 ip4:192.0.2.99 -all"
spfsoft.example.          IN TXT "v=spf1 ip4:192.0.2.99 ~all"
helo.good.example.        IN TXT "v=spf1 ip4:192.0.2.10 -all"
helo.bad.example.         IN TXT "v=spf1 -all"
reject.example.           IN TXT "v=spf1 -all"
_dmarc.reject.example.    IN TXT "v=DMARC1; p=reject"
quarantine.example.       IN TXT "v=spf1 -all"
_dmarc.quarantine.example. IN TXT "v=DMARC1; p=quarantine"
none.example.             IN TXT "v=spf1 -all"
_dmarc.none.example.      IN TXT "v=DMARC1; p=none"
_dmarc.signed.example.    IN TXT "v=DMARC1; p=reject"
66.100.51.198.bl.example. IN A   127.0.0.2
67.100.51.198.bl.example. IN A   127.255.255.254
"#;

const REVERSE_V4: &str = "
10.2.0.192.in-addr.arpa.  IN PTR mx.good.example.
40.2.0.192.in-addr.arpa.  IN PTR mail.badptr.example.
";

/// The served zones (with a fresh Ed25519 key for `sel._domainkey.signed.example`) and that key.
struct World {
    dns: TestDns,
    key: keys::KeyPair,
}

fn world() -> World {
    let key = keys::generate(KeySpec::Ed25519).unwrap();
    let txt =
        mailctl::dkim::zone_txt_rdata(&mailctl::dkim::txt_value(key.algorithm, &key.public_b64));
    let zone = format!("{ZONE}sel._domainkey.signed.example. IN TXT {txt}\n");
    let dns = TestDns::start(&[("example.", &zone), ("2.0.192.in-addr.arpa.", REVERSE_V4)]);
    World { dns, key }
}

fn policy(spf: Action, dkim: Action, dmarc: Action, iprev: Action, dnsbl: Action) -> CheckPolicy {
    CheckPolicy {
        spf,
        dkim,
        dmarc,
        iprev,
        dnsbl,
        dnsbl_lists: vec!["bl.example".into()],
    }
}

/// Every check with the same action.
fn all(action: Action) -> CheckPolicy {
    policy(action, action, action, action, action)
}

fn checks(nameserver: &str, policy: CheckPolicy) -> Checks {
    let resolver = Resolver::build(&[nameserver], Duration::from_secs(2)).unwrap();
    Checks::new(resolver, policy, HOST.to_string())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn message(from: &str, body: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <bob@test.example>\r\nSubject: checks\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n\
         Message-ID: <c1@test.example>\r\n\r\n{body}\r\n"
    )
}

fn signed(world: &World, from: &str) -> String {
    let out = mailctl::dkim::sign::sign(
        message(from, "Hello Bob").as_bytes(),
        &"signed.example".parse().unwrap(),
        &"sel".parse().unwrap(),
        &world.key,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

/// A whole transaction: connect, MAIL FROM, DATA.
async fn transaction(
    checks: &Checks,
    client: &str,
    helo: &str,
    sender: &str,
    msg: &str,
) -> (ConnectResult, SpfResult, Verdict) {
    let conn = checks.connect(ip(client)).await;
    let spf = checks.mail_from(&conn, ip(client), helo, sender).await;
    let verdict = checks
        .message(&conn, &spf, ip(client), helo, sender, msg.as_bytes())
        .await;
    (conn, spf, verdict)
}

fn reply_line(reply: &mailctl::smtp::inbound::command::Reply) -> String {
    String::from_utf8(reply.to_bytes()).unwrap()
}

/// A UDP "nameserver" on loopback that never answers, counting the queries it receives.
struct SilentDns {
    addr: String,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SilentDns {
    fn start() -> SilentDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap().to_string();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                if socket.recv_from(&mut buf).is_ok() {
                    q.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        SilentDns {
            addr,
            queries,
            stop,
        }
    }
}

impl Drop for SilentDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks the header's structure: the first line names the authserv-id, every other line is one result
/// starting with a tab, `;` only ends a result, and no comment or extra field can hide outside quoted strings.
/// Returns the results with quoted strings blanked out.
fn structure(header: &str) -> Vec<String> {
    let body = header.strip_suffix("\r\n").expect("ends in CRLF");
    let mut lines = body.split("\r\n");
    assert_eq!(
        lines.next(),
        Some(format!("Authentication-Results: {HOST};").as_str())
    );
    let mut results = Vec::new();
    for line in lines {
        let entry = line
            .strip_prefix('\t')
            .expect("continuation lines start with a tab");
        assert!(!entry.contains(['\r', '\n', '\t']), "{header:?}");
        // Blank out quoted strings (honouring backslash escapes).
        let mut plain = String::new();
        let (mut quoted, mut escaped) = (false, false);
        for c in entry.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                _ if quoted => {}
                _ => plain.push(c),
            }
        }
        assert!(!quoted, "unterminated quoted string in {header:?}");
        let plain = plain.strip_suffix(';').unwrap_or(&plain).to_string();
        assert!(!plain.contains([';', '(', ')']), "{header:?}");
        results.push(plain);
    }
    results
}

#[tokio::test]
async fn spf_pass_fail_and_softfail_with_each_action() {
    let w = world();
    for action in [Action::Reject, Action::Mark] {
        let c = checks(
            &w.dns.nameserver(),
            policy(action, Action::Off, Action::Off, Action::Off, Action::Off),
        );
        let conn = ConnectResult::default();
        let pass = c
            .mail_from(&conn, ip(GOOD), "mx.good.example", "a@spfpass.example")
            .await;
        assert_eq!(pass.outcome, Some(Outcome::Pass));
        assert!(pass.reject.is_none() && !pass.junk && pass.reason.is_none());

        let fail = c
            .mail_from(&conn, ip(GOOD), "mx.good.example", "a@spffail.example")
            .await;
        assert_eq!(fail.outcome, Some(Outcome::Fail));
        assert_eq!(fail.reason, Some(RejectReason::Spf));
        match action {
            Action::Reject => {
                assert_eq!(
                    reply_line(fail.reject.as_ref().unwrap()),
                    "550 5.7.23 SPF check failed for spffail.example\r\n"
                );
                assert!(!fail.junk);
            }
            _ => assert!(fail.junk && fail.reject.is_none()),
        }

        let soft = c
            .mail_from(&conn, ip(GOOD), "mx.good.example", "a@spfsoft.example")
            .await;
        assert_eq!(soft.outcome, Some(Outcome::SoftFail));
        assert!(
            soft.reject.is_none() && !soft.junk,
            "softfail has no consequence"
        );

        let v = c
            .message(
                &conn,
                &fail,
                ip(GOOD),
                "mx.good.example",
                "a@spffail.example",
                b"x: y\r\n\r\n",
            )
            .await;
        assert_eq!(
            v.authentication_results,
            format!(
                "Authentication-Results: {HOST};\r\n\tspf=fail smtp.mailfrom=a@spffail.example\r\n"
            )
        );
        assert_eq!(v.summary, "spf=fail");
        assert_eq!(
            v.junk,
            action == Action::Mark,
            "a mark at MAIL FROM carries into the verdict"
        );
    }
}

#[tokio::test]
async fn the_null_sender_is_checked_by_its_helo_name() {
    let w = world();
    let c = checks(
        &w.dns.nameserver(),
        policy(
            Action::Reject,
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Off,
        ),
    );
    let conn = ConnectResult::default();
    let good = c.mail_from(&conn, ip(GOOD), "helo.good.example", "").await;
    assert_eq!(good.outcome, Some(Outcome::Pass));
    let v = c
        .message(
            &conn,
            &good,
            ip(GOOD),
            "helo.good.example",
            "",
            b"x: y\r\n\r\n",
        )
        .await;
    assert!(
        v.authentication_results
            .contains("\tspf=pass smtp.helo=helo.good.example\r\n"),
        "{v:?}"
    );

    let bad = c.mail_from(&conn, ip(GOOD), "helo.bad.example", "").await;
    assert_eq!(bad.outcome, Some(Outcome::Fail));
    assert_eq!(
        reply_line(bad.reject.as_ref().unwrap()),
        "550 5.7.23 SPF check failed for helo.bad.example\r\n"
    );

    // An address literal has no SPF: none, without a lookup.
    let literal = c.mail_from(&conn, ip(GOOD), "[192.0.2.10]", "").await;
    assert_eq!(literal.outcome, Some(Outcome::None));
    assert!(literal.reject.is_none());
}

#[tokio::test]
async fn dkim_passes_and_aligns_and_a_changed_body_fails() {
    let w = world();
    let nameserver = w.dns.nameserver();
    let c = checks(
        &nameserver,
        policy(
            Action::Mark,
            Action::Mark,
            Action::Reject,
            Action::Off,
            Action::Off,
        ),
    );
    let msg = signed(&w, "alice@signed.example");
    // The envelope is another domain's (as for a mailing list): DMARC passes through the aligned signature.
    let (_, _, v) = transaction(&c, GOOD, "mx.good.example", "bounce@spfpass.example", &msg).await;
    assert_eq!(
        v.authentication_results,
        format!(
            "Authentication-Results: {HOST};\r\n\tspf=pass smtp.mailfrom=bounce@spfpass.example;\r\n\t\
             dkim=pass header.d=signed.example header.s=sel;\r\n\tdmarc=pass header.from=signed.example\r\n"
        )
    );
    assert_eq!(v.summary, "spf=pass dkim=pass dmarc=pass");
    assert!(v.reject.is_none() && !v.junk && v.reason.is_none());

    let tampered = msg.replace("Hello Bob", "Hello Bot");
    for action in [Action::Mark, Action::Reject] {
        let c = checks(
            &nameserver,
            policy(Action::Off, action, Action::Off, Action::Off, Action::Off),
        );
        let (_, _, v) = transaction(
            &c,
            GOOD,
            "mx.good.example",
            "bounce@spfpass.example",
            &tampered,
        )
        .await;
        assert!(
            v.authentication_results
                .contains("\tdkim=fail header.d=signed.example header.s=sel\r\n"),
            "{v:?}"
        );
        assert_eq!(v.summary, "dkim=fail");
        assert_eq!(v.reason, Some(RejectReason::Dkim));
        match action {
            Action::Reject => assert_eq!(v.reject.unwrap().code(), 550),
            _ => assert!(v.junk && v.reject.is_none()),
        }
    }

    // Unsigned mail is no DKIM failure.
    let c = checks(
        &nameserver,
        policy(
            Action::Off,
            Action::Reject,
            Action::Off,
            Action::Off,
            Action::Off,
        ),
    );
    let plain = message("alice@signed.example", "hi");
    let (_, _, v) = transaction(
        &c,
        GOOD,
        "mx.good.example",
        "bounce@spfpass.example",
        &plain,
    )
    .await;
    assert_eq!(v.summary, "dkim=none");
    assert!(v.reject.is_none() && !v.junk);
}

#[tokio::test]
async fn dmarc_follows_the_domain_policy_or_marks_every_failure() {
    let w = world();
    let ns = w.dns.nameserver();
    let honour = checks(
        &ns,
        policy(
            Action::Off,
            Action::Off,
            Action::Reject,
            Action::Off,
            Action::Off,
        ),
    );
    let mark = checks(
        &ns,
        policy(
            Action::Off,
            Action::Off,
            Action::Mark,
            Action::Off,
            Action::Off,
        ),
    );
    let run = |c: &'static str| message(&format!("ceo@{c}"), "pay me");
    let from = |d: &str| format!("x@{d}");

    let (_, _, v) = transaction(
        &honour,
        GOOD,
        "mx.good.example",
        &from("reject.example"),
        &run("reject.example"),
    )
    .await;
    assert_eq!(
        reply_line(v.reject.as_ref().unwrap()),
        "550 5.7.1 rejected by DMARC policy of reject.example\r\n"
    );
    assert_eq!(v.reason, Some(RejectReason::Dmarc));
    assert!(
        v.authentication_results
            .contains("\tdmarc=fail header.from=reject.example\r\n"),
        "{v:?}"
    );
    assert!(
        !v.authentication_results.contains("spf="),
        "SPF is off: evaluated for DMARC, not reported"
    );

    let (_, _, v) = transaction(
        &honour,
        GOOD,
        "mx.good.example",
        &from("quarantine.example"),
        &run("quarantine.example"),
    )
    .await;
    assert!(v.reject.is_none() && v.junk, "{v:?}");
    assert_eq!(v.reason, Some(RejectReason::Dmarc));

    let (_, _, v) = transaction(
        &honour,
        GOOD,
        "mx.good.example",
        &from("none.example"),
        &run("none.example"),
    )
    .await;
    assert!(v.reject.is_none() && !v.junk, "p=none: report only");
    assert_eq!(v.summary, "dmarc=fail");

    for d in ["reject.example", "none.example"] {
        let (_, _, v) = transaction(&mark, GOOD, "mx.good.example", &from(d), &run(d)).await;
        assert!(
            v.reject.is_none() && v.junk,
            "mark files every DMARC failure into Junk"
        );
    }

    // SPF alignment alone passes DMARC.
    let (_, _, v) = transaction(
        &honour,
        GOOD,
        "mx.good.example",
        "b@spfpass.example",
        &run("spfpass.example"),
    )
    .await;
    assert!(
        v.authentication_results
            .contains("\tdmarc=pass header.from=spfpass.example\r\n"),
        "{v:?}"
    );
    assert!(v.reject.is_none() && !v.junk);

    // No DMARC record: none, no consequence.
    let (_, _, v) = transaction(
        &honour,
        GOOD,
        "mx.good.example",
        "b@spffail.example",
        &run("spffail.example"),
    )
    .await;
    assert_eq!(v.summary, "dmarc=none");
    assert!(v.reject.is_none() && !v.junk);
}

#[tokio::test]
async fn dnsbl_listings_reject_or_mark_and_error_codes_do_not() {
    let w = world();
    let ns = w.dns.nameserver();
    let reject = checks(
        &ns,
        policy(
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Reject,
        ),
    );
    let conn = reject.connect(ip(LISTED)).await;
    assert_eq!(
        reply_line(conn.reject.as_ref().unwrap()),
        "554 5.7.1 client [198.51.100.66] blocked using bl.example\r\n"
    );
    assert_eq!(conn.reason, Some(RejectReason::Dnsbl));
    assert_eq!(conn.summary(), "dnsbl=listed:bl.example");
    // Nothing else runs for a refused client.
    let spf = reject
        .mail_from(&conn, ip(LISTED), "h.example", "a@spffail.example")
        .await;
    assert!(spf.eval.is_none());

    // IPv4-mapped IPv6 (a dual-stack listener) is looked up as IPv4.
    let mapped = reject
        .connect("::ffff:198.51.100.66".parse().unwrap())
        .await;
    assert!(mapped.reject.is_some());

    let clean = reject.connect(ip(GOOD)).await;
    assert!(clean.reject.is_none() && !clean.junk);
    assert_eq!(clean.summary(), "dnsbl=clean");
    let v = reject
        .message(
            &clean,
            &SpfResult::default(),
            ip(GOOD),
            "h",
            "",
            b"a: b\r\n\r\n",
        )
        .await;
    assert_eq!(v.summary, "dnsbl=clean");
    assert_eq!(
        v.authentication_results,
        format!("Authentication-Results: {HOST}; none\r\n")
    );

    let refused = reject.connect(ip(ERROR_CODE)).await;
    assert!(refused.reject.is_none() && !refused.junk);
    assert_eq!(
        refused.summary(),
        "dnsbl=refused:bl.example/127.255.255.254"
    );

    let mark = checks(
        &ns,
        policy(
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Mark,
        ),
    );
    let conn = mark.connect(ip(LISTED)).await;
    assert!(conn.reject.is_none() && conn.junk);
    let v = mark
        .message(
            &conn,
            &SpfResult::default(),
            ip(LISTED),
            "h",
            "",
            b"a: b\r\n\r\n",
        )
        .await;
    assert!(v.junk);
    assert_eq!(v.reason, Some(RejectReason::Dnsbl));

    // A zone the server does not serve answers REFUSED: temperror, never a listing.
    let mut unserved = policy(
        Action::Off,
        Action::Off,
        Action::Off,
        Action::Off,
        Action::Reject,
    );
    unserved.dnsbl_lists = vec!["bl.elsewhere.test".into()];
    let conn = checks(&ns, unserved).connect(ip(LISTED)).await;
    assert!(conn.reject.is_none());
    assert_eq!(conn.summary(), "dnsbl=temperror:bl.elsewhere.test");
}

#[tokio::test]
async fn a_blocklist_that_never_answers_does_not_reject_nor_hold_the_client() {
    let silent = SilentDns::start();
    // The resolver would wait 5 s twice; the step limit cuts that short.
    let resolver = Resolver::build(&[&silent.addr], Duration::from_secs(5)).unwrap();
    let c = Checks::new(resolver, all(Action::Reject), HOST.into())
        .with_step_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let (conn, spf, v) = transaction(
        &c,
        LISTED,
        "mx.good.example",
        "a@spffail.example",
        &message("a@reject.example", "x"),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(conn.reject.is_none() && !conn.junk);
    assert!(spf.reject.is_none() && !spf.junk);
    assert!(v.reject.is_none() && !v.junk, "{v:?}");
    assert_eq!(
        v.summary,
        "iprev=temperror spf=temperror dkim=none dmarc=temperror dnsbl=temperror:bl.example"
    );
    assert!(silent.queries.load(Ordering::Relaxed) > 0);

    // With only the resolver's own timeout (short here) the answer is the same.
    let resolver = Resolver::build(&[&silent.addr], Duration::from_millis(200)).unwrap();
    let c = Checks::new(resolver, all(Action::Reject), HOST.into());
    let conn = c.connect(ip(LISTED)).await;
    assert!(conn.reject.is_none());
    assert_eq!(conn.summary(), "iprev=temperror dnsbl=temperror:bl.example");
}

#[tokio::test]
async fn iprev_passes_for_forward_confirmed_names_only() {
    let w = world();
    let ns = w.dns.nameserver();
    let reject = checks(
        &ns,
        policy(
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Reject,
            Action::Off,
        ),
    );
    let good = reject.connect(ip(GOOD)).await;
    assert_eq!(good.ptr.as_deref(), Some("mx.good.example"));
    assert!(good.reject.is_none());
    let v = reject
        .message(
            &good,
            &SpfResult::default(),
            ip(GOOD),
            "h",
            "",
            b"a: b\r\n\r\n",
        )
        .await;
    assert_eq!(
        v.authentication_results,
        format!("Authentication-Results: {HOST};\r\n\tiprev=pass policy.iprev=192.0.2.10\r\n")
    );

    let bad = reject.connect(ip(BAD_PTR)).await;
    assert_eq!(bad.iprev.as_ref().unwrap().outcome, Outcome::Fail);
    assert_eq!(bad.ptr, None);
    assert_eq!(
        reply_line(bad.reject.as_ref().unwrap()),
        "550 5.7.25 reverse DNS validation failed for [192.0.2.40]\r\n"
    );
    assert_eq!(bad.reason, Some(RejectReason::Iprev));

    let none = reject.connect(ip(NO_PTR)).await;
    assert_eq!(none.iprev.as_ref().unwrap().outcome, Outcome::PermError);
    assert!(none.reject.is_some(), "no PTR at all fails iprev too");

    let mark = checks(
        &ns,
        policy(
            Action::Off,
            Action::Off,
            Action::Off,
            Action::Mark,
            Action::Off,
        ),
    );
    let conn = mark.connect(ip(BAD_PTR)).await;
    assert!(conn.reject.is_none() && conn.junk);
}

#[tokio::test]
async fn hostile_values_cannot_break_the_authentication_results_header() {
    let w = world();
    let c = checks(&w.dns.nameserver(), all(Action::Mark));
    let msg = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=evil.example;\r\n \
               s=a\"b(c)\\d=dkim=pass; h=from; bh=YWJj; b=YWJj\r\n\
               From: <ceo@evil.example>\r\nSubject: x\r\n\r\nbody\r\n";
    let sender = "x\"y;(dkim=pass)@spfpass.example";
    let (_, _, v) = transaction(&c, GOOD, "mx.good.example", sender, msg).await;
    let results = structure(&v.authentication_results);
    assert_eq!(results.len(), 4, "{}", v.authentication_results);
    assert!(results[0].starts_with("iprev=pass "));
    assert!(results[1].starts_with("spf="), "{results:?}");
    assert!(results[2].starts_with("dkim="), "{results:?}");
    assert!(!results[2].starts_with("dkim=pass"), "{results:?}");
    assert!(results[3].starts_with("dmarc="), "{results:?}");
    assert_eq!(
        results.iter().filter(|r| r.contains("dkim=pass")).count(),
        0
    );

    // A From domain with a line break in it (an encoded or folded trick) stays inside one value.
    let msg = "From: ceo@\"evil.example;\r\n\tdkim=pass\"\r\nSubject: x\r\n\r\nbody\r\n";
    let (_, _, v) = transaction(&c, GOOD, "mx.good.example", "a@spfpass.example", msg).await;
    let results = structure(&v.authentication_results);
    assert_eq!(results.len(), 4, "{}", v.authentication_results);
    assert!(
        !results.iter().any(|r| r.starts_with("dkim=pass")),
        "{results:?}"
    );

    // The login of an authenticated user.
    let h = c.submission_results("alice@example.org\r\nX-Evil: yes");
    assert!(h.starts_with(&format!(
        "Authentication-Results: {HOST};\r\n\tauth=pass smtp.auth=\"alice"
    )));
    assert_eq!(structure(&h).len(), 1);
    assert_eq!(
        c.submission_results("alice@example.org"),
        format!("Authentication-Results: {HOST};\r\n\tauth=pass smtp.auth=alice@example.org\r\n")
    );
}

#[tokio::test]
async fn every_check_off_runs_nothing() {
    let silent = SilentDns::start();
    let resolver = Resolver::build(&[&silent.addr], Duration::from_secs(5)).unwrap();
    let c = Checks::new(resolver, all(Action::Off), HOST.into());
    let started = Instant::now();
    let w = world();
    let (conn, spf, v) = transaction(
        &c,
        LISTED,
        "helo.bad.example",
        "a@spffail.example",
        &signed(&w, "a@reject.example"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(conn.iprev.is_none() && conn.dnsbl.is_none() && conn.ptr.is_none());
    assert!(spf.eval.is_none() && spf.outcome.is_none());
    assert!(v.dkim.is_none() && v.dmarc.is_none());
    assert!(conn.reject.is_none() && spf.reject.is_none() && v.reject.is_none());
    assert!(!v.junk && v.reason.is_none());
    assert_eq!(
        v.authentication_results,
        format!("Authentication-Results: {HOST}; none\r\n")
    );
    assert_eq!(v.summary, "none");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        silent.queries.load(Ordering::Relaxed),
        0,
        "no DNS query was sent"
    );
}
