//! Bounces and delay warnings: content, where they go, and never to the null sender.

use super::*;

const REJECT: &str = "mx1.remote.test[127.0.0.2]: 550 5.1.1 <x@remote.test>: User unknown";

fn reject_x(address: &str) -> Outcome {
    if address.starts_with("x@") {
        Outcome::Failed(REJECT.into())
    } else {
        delivered("250 2.0.0 ok")
    }
}

/// The queued DSNs (null sender) and their bodies.
fn queued_dsns(queue: &SpoolQueue, now: DateTime<Utc>) -> Vec<(Queued, String)> {
    list(queue, now)
        .into_iter()
        .filter(|q| q.entry.sender.is_empty())
        .map(|q| {
            let body = String::from_utf8(queue.body(&q.entry.id).unwrap()).unwrap();
            (q, body)
        })
        .collect()
}

#[tokio::test]
async fn failure_queues_a_bounce_for_a_remote_sender() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(reject_x));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    let id = enqueue(
        &queue,
        "alice@example.org",
        &["x@remote.test", "y@remote.test"],
        t(0),
    );

    pass(&inner).await;
    assert!(
        queue.show(&id, t(0)).is_err(),
        "original entry finished and removed"
    );
    let dsns = queued_dsns(&queue, t(0));
    assert_eq!(dsns.len(), 1);
    let (q, body) = &dsns[0];
    assert_eq!(q.entry.recipients.len(), 1);
    assert_eq!(q.entry.recipients[0].address, "alice@example.org");
    assert!(body.contains("Content-Type: multipart/report; report-type=delivery-status"));
    assert!(body.contains("Reporting-MTA: dns; mx.example.org"));
    assert!(body.contains("Final-Recipient: rfc822; x@remote.test"));
    assert!(body.contains("Action: failed"));
    assert!(body.contains("Status: 5.1.1"));
    assert!(body.contains("Remote-MTA: dns; mx1.remote.test"));
    assert!(body.contains("Diagnostic-Code: smtp; 550 5.1.1 <x@remote.test>: User unknown"));
    assert!(body.contains("host mx1.remote.test said: 550 5.1.1"));
    assert!(body.contains("Subject: hello"), "original headers returned");
    assert!(
        !body.contains("y@remote.test"),
        "delivered recipient not reported"
    );
    assert!(local.delivered().is_empty());

    // The bounce itself goes out on the next pass, with the null sender.
    pass(&inner).await;
    let calls = transport.calls();
    let last = calls.last().unwrap();
    assert_eq!(
        (last.domain.as_str(), last.sender.as_str()),
        ("example.org", "")
    );
    assert!(list(&queue, t(0)).is_empty());
}

#[tokio::test]
async fn failure_bounces_locally_for_a_local_sender() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(reject_x));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    enqueue(&queue, "bob@local.test", &["x@remote.test"], t(0));

    pass(&inner).await;
    assert!(
        list(&queue, t(0)).is_empty(),
        "nothing queued: the bounce went to the mailbox"
    );
    let got = local.delivered();
    assert_eq!(got.len(), 1);
    let (sender, rcpt, message) = &got[0];
    assert_eq!((sender.as_str(), rcpt.as_str()), ("", "bob@local.test"));
    let text = String::from_utf8(message.clone()).unwrap();
    assert!(text.contains("Final-Recipient: rfc822; x@remote.test"));
    assert!(text.contains("550 5.1.1 <x@remote.test>: User unknown"));
}

#[tokio::test]
async fn null_sender_failure_gets_no_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(reject_x));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    enqueue(&queue, "", &["x@remote.test"], t(0));

    pass(&inner).await;
    assert!(
        list(&queue, t(0)).is_empty(),
        "failed, removed, nothing new queued"
    );
    assert!(local.delivered().is_empty());
    assert_eq!(transport.calls().len(), 1);
}

#[tokio::test]
async fn expired_recipient_bounces_with_the_last_reply() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff {
        give_up_after: Duration::from_secs(3600),
        warn_after: Duration::from_secs(100 * 3600),
        ..Backoff::default()
    };
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(|_| {
        Outcome::Deferred("mx1.remote.test[127.0.0.2]: 452 4.2.2 mailbox full".into())
    }));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    enqueue(&queue, "bob@local.test", &["x@remote.test"], t(0));
    pass(&inner).await;
    clock.set(t(3600));
    pass(&inner).await;
    assert!(list(&queue, t(3600)).is_empty());
    let got = local.delivered();
    assert_eq!(got.len(), 1);
    let text = String::from_utf8(got[0].2.clone()).unwrap();
    assert!(text.contains("Action: failed"));
    assert!(text.contains("Status: 4.2.2"));
    assert!(text.contains("452 4.2.2 mailbox full"));
}

#[tokio::test]
async fn delay_warning_is_sent_once_after_the_warning_age() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff {
        warn_after: Duration::from_secs(3600),
        ..Backoff::default()
    };
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(|a: &str| {
        if a.ends_with("@remote.test") {
            Outcome::Deferred("mx1.remote.test[127.0.0.2]: 451 4.4.1 no answer".into())
        } else {
            delivered("250 ok")
        }
    }));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    let id = enqueue(&queue, "alice@example.org", &["x@remote.test"], t(0));

    pass(&inner).await;
    assert!(
        queued_dsns(&queue, t(0)).is_empty(),
        "too early for a warning"
    );
    clock.set(t(2 * 3600));
    pass(&inner).await;
    let dsns = queued_dsns(&queue, t(2 * 3600));
    assert_eq!(dsns.len(), 1);
    let (q, body) = &dsns[0];
    assert_eq!(q.entry.recipients[0].address, "alice@example.org");
    assert!(body.contains("Delayed Mail"));
    assert!(body.contains("Action: delayed"));
    assert!(body.contains("Status: 4.4.1"));
    assert!(body.contains("Will-Retry-Until: "));
    assert!(body.contains("Final-Recipient: rfc822; x@remote.test"));
    let entry = queue.show(&id, t(2 * 3600)).unwrap().entry;
    assert!(entry.delay_warning_sent);

    // Later attempts deliver the warning and send no second one.
    for hours in [3, 4, 6] {
        clock.set(t(hours * 3600));
        pass(&inner).await;
    }
    assert!(queued_dsns(&queue, t(6 * 3600)).is_empty());
    let to_sender = transport
        .calls()
        .iter()
        .filter(|c| c.domain == "example.org")
        .count();
    assert_eq!(to_sender, 1, "exactly one warning delivered");
    assert_eq!(list(&queue, t(6 * 3600)).len(), 1, "original still queued");
}
