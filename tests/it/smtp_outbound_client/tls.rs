//! STARTTLS and MTA-STS: opportunistic TLS over a bad certificate and over a broken handshake, MTA-STS
//! enforce (bad certificate, no STARTTLS, MX not in the policy, good certificate with the policy cached) and
//! testing.

use super::fake_mx::{MxScript, start_group};
use super::{MESSAGE, SENDER, deferred, delivered, dns, outbound, rcpts};
use kit::smtp::{HttpsServer, TestCa, policy_response};

/// An MTA-STS policy server for `domain` on `ip`, with a certificate from `ca`.
fn policy_server(ca: &TestCa, ip: &str, domain: &str, mode: &str, mx: &str) -> HttpsServer {
    let body = format!("version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n");
    let tls = ca.server_config(&[&format!("mta-sts.{domain}")], 30);
    HttpsServer::start(ip, tls, policy_response(&body))
}

#[tokio::test]
async fn opportunistic_tls_accepts_a_bad_certificate() {
    let setup = dns();
    // Signed by a CA nobody trusts, for another name.
    let untrusted = TestCa::new();
    let mut script = MxScript::accepting("mx.opp.test");
    script.tls = Some(untrusted.server_config(&["wrong.example"], 30));
    let (port, mx) = start_group(vec![("127.66.7.1", script)]).await;
    let results = outbound(&setup, port)
        .deliver_domain("opp.test", SENDER, &rcpts(&["erin@opp.test"]), MESSAGE)
        .await;
    assert!(delivered(&results[0].outcome).starts_with("mx.opp.test[127.66.7.1]: 250 "));
    let sessions = mx[0].sessions();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].tls, "delivered over TLS");
    assert_eq!(sessions[0].message.as_deref(), Some(MESSAGE));
}

#[tokio::test]
async fn a_failed_opportunistic_handshake_is_retried_in_plain_text() {
    let setup = dns();
    let mut script = MxScript::accepting("mx.brokentls.test");
    script.broken_tls = true;
    let (port, mx) = start_group(vec![("127.66.8.1", script)]).await;
    let results = outbound(&setup, port)
        .deliver_domain(
            "brokentls.test",
            SENDER,
            &rcpts(&["fay@brokentls.test"]),
            MESSAGE,
        )
        .await;
    assert!(delivered(&results[0].outcome).starts_with("mx.brokentls.test[127.66.8.1]: 250 "));
    let sessions = mx[0].sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(sessions[0].commands.iter().any(|c| c == "STARTTLS"));
    assert!(sessions[0].message.is_none());
    assert!(!sessions[1].commands.iter().any(|c| c == "STARTTLS"));
    assert_eq!(sessions[1].message.as_deref(), Some(MESSAGE));
}

#[tokio::test]
async fn mta_sts_enforce_defers_on_a_bad_certificate_and_never_sends_in_clear() {
    let setup = dns();
    let ca = TestCa::new();
    let policy = policy_server(
        &ca,
        "127.66.9.9",
        "sts-bad.test",
        "enforce",
        "mx.sts-bad.test",
    );
    let untrusted = TestCa::new();
    let mut script = MxScript::accepting("mx.sts-bad.test");
    script.tls = Some(untrusted.server_config(&["mx.sts-bad.test"], 30));
    let (port, mx) = start_group(vec![("127.66.9.1", script)]).await;
    let client = outbound(&setup, port)
        .with_extra_ca(&ca.pem)
        .unwrap()
        .with_mta_sts_port(policy.port().parse().unwrap());
    let results = client
        .deliver_domain(
            "sts-bad.test",
            SENDER,
            &rcpts(&["gus@sts-bad.test"]),
            MESSAGE,
        )
        .await;
    let text = deferred(&results[0].outcome);
    assert!(
        text.starts_with(
            "mx.sts-bad.test[127.66.9.1]: 4.7.5 TLS required by the MTA-STS policy of sts-bad.test failed"
        ),
        "{text}"
    );
    assert!(
        !mx[0].saw_mail(),
        "nothing was sent in clear: {:?}",
        mx[0].sessions()
    );
    assert!(mx[0].sessions().iter().all(|s| s.message.is_none()));
}

#[tokio::test]
async fn mta_sts_enforce_defers_when_starttls_is_missing_or_the_mx_is_not_in_the_policy() {
    let setup = dns();
    let ca = TestCa::new();
    let plain_policy = policy_server(
        &ca,
        "127.66.11.9",
        "sts-plain.test",
        "enforce",
        "mx.sts-plain.test",
    );
    let (port, mx) = start_group(vec![(
        "127.66.11.1",
        MxScript::accepting("mx.sts-plain.test"),
    )])
    .await;
    let client = outbound(&setup, port)
        .with_extra_ca(&ca.pem)
        .unwrap()
        .with_mta_sts_port(plain_policy.port().parse().unwrap());
    let results = client
        .deliver_domain(
            "sts-plain.test",
            SENDER,
            &rcpts(&["hal@sts-plain.test"]),
            MESSAGE,
        )
        .await;
    assert_eq!(
        deferred(&results[0].outcome),
        "mx.sts-plain.test[127.66.11.1]: 4.7.5 STARTTLS not offered, required by the MTA-STS policy of \
         sts-plain.test"
    );
    assert!(!mx[0].saw_mail());

    let other_policy = policy_server(
        &ca,
        "127.66.12.9",
        "sts-other.test",
        "enforce",
        "*.elsewhere.test",
    );
    let (port, mx) = start_group(vec![(
        "127.66.12.1",
        MxScript::accepting("mx.sts-other.test"),
    )])
    .await;
    let client = outbound(&setup, port)
        .with_extra_ca(&ca.pem)
        .unwrap()
        .with_mta_sts_port(other_policy.port().parse().unwrap());
    let results = client
        .deliver_domain(
            "sts-other.test",
            SENDER,
            &rcpts(&["ida@sts-other.test"]),
            MESSAGE,
        )
        .await;
    assert_eq!(
        deferred(&results[0].outcome),
        "sts-other.test: 4.7.5 no MX host matches the MTA-STS policy (mx: *.elsewhere.test)"
    );
    assert!(mx[0].sessions().is_empty());
}

#[tokio::test]
async fn mta_sts_enforce_delivers_over_verified_tls() {
    let setup = dns();
    let ca = TestCa::new();
    let policy = policy_server(
        &ca,
        "127.66.10.9",
        "sts-good.test",
        "enforce",
        "*.sts-good.test",
    );
    let mut script = MxScript::accepting("mx.sts-good.test");
    script.tls = Some(ca.server_config(&["mx.sts-good.test"], 30));
    let (port, mx) = start_group(vec![("127.66.10.1", script)]).await;
    let client = outbound(&setup, port)
        .with_extra_ca(&ca.pem)
        .unwrap()
        .with_mta_sts_port(policy.port().parse().unwrap());
    for round in 0..2 {
        let results = client
            .deliver_domain(
                "sts-good.test",
                SENDER,
                &rcpts(&["jo@sts-good.test"]),
                MESSAGE,
            )
            .await;
        assert!(
            delivered(&results[0].outcome).starts_with("mx.sts-good.test[127.66.10.1]: 250 "),
            "round {round}"
        );
    }
    let sessions = mx[0].sessions();
    assert_eq!(sessions.len(), 2);
    assert!(
        sessions
            .iter()
            .all(|s| s.tls && s.message.as_deref() == Some(MESSAGE))
    );
    // The policy was cached: the policy server going away changes nothing.
    drop(policy);
    let results = client
        .deliver_domain(
            "sts-good.test",
            SENDER,
            &rcpts(&["jo@sts-good.test"]),
            MESSAGE,
        )
        .await;
    delivered(&results[0].outcome);
}

#[tokio::test]
async fn mta_sts_testing_reports_but_delivers() {
    let setup = dns();
    let ca = TestCa::new();
    let policy = policy_server(
        &ca,
        "127.66.16.9",
        "sts-test.test",
        "testing",
        "mx.sts-test.test",
    );
    let untrusted = TestCa::new();
    let mut script = MxScript::accepting("mx.sts-test.test");
    script.tls = Some(untrusted.server_config(&["mx.sts-test.test"], 30));
    let (port, mx) = start_group(vec![("127.66.16.1", script)]).await;
    let client = outbound(&setup, port)
        .with_extra_ca(&ca.pem)
        .unwrap()
        .with_mta_sts_port(policy.port().parse().unwrap());
    let results = client
        .deliver_domain(
            "sts-test.test",
            SENDER,
            &rcpts(&["kim@sts-test.test"]),
            MESSAGE,
        )
        .await;
    delivered(&results[0].outcome);
    assert!(mx[0].sessions()[0].tls);
}
