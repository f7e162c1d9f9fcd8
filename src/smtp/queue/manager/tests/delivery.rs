//! Results reach the queue: delivered entries go, deferred ones wait per the backoff, local recipients are
//! delivered locally, recipients are grouped by domain.

use super::*;
use crate::smtp::outbound::dsn::Diagnostic;
use crate::smtp::queue::Status;
use crate::smtp::queue::manager::limits::Limits;
use crate::smtp::queue::manager::notice::{enhanced_code, parse_reply};

#[tokio::test]
async fn delivered_entry_is_removed_and_domains_share_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(|_| delivered("250 2.0.0 queued as 1")));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    enqueue(
        &queue,
        "alice@example.org",
        &[
            "a@Remote.Test",
            "b@remote.test",
            "c@other.test",
            "d@local.test",
        ],
        t(0),
    );

    assert_eq!(pass(&inner).await, 1);
    assert!(list(&queue, t(0)).is_empty(), "delivered entry removed");
    let mut calls = transport.calls();
    calls.sort_by(|a, b| a.domain.cmp(&b.domain));
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].domain, "other.test");
    assert_eq!(calls[1].domain, "remote.test");
    assert_eq!(calls[1].recipients, ["a@Remote.Test", "b@remote.test"]);
    assert_eq!(calls[1].sender, "alice@example.org");
    assert_eq!(calls[1].message, BODY);
    let local = local.delivered();
    assert_eq!(local.len(), 1);
    assert_eq!(
        (local[0].0.as_str(), local[0].1.as_str()),
        ("alice@example.org", "d@local.test")
    );
    assert_eq!(pass(&inner).await, 0, "nothing left to claim");
}

#[tokio::test]
async fn deferred_recipient_is_retried_on_the_backoff_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    let transport = Arc::new(FakeTransport::new(|_| {
        Outcome::Deferred("mx1.remote.test[127.0.0.2]: 451 4.3.0 try later".into())
    }));
    let local = Arc::new(FakeLocal::default());
    let clock = TestClock::at(t(0));
    let inner = stepped(&queue, &transport, &local, backoff, &clock);
    let id = enqueue(&queue, "alice@example.org", &["x@remote.test"], t(0));

    pass(&inner).await;
    let q = queue.show(&id, t(0)).unwrap();
    assert!(q.lease.is_none(), "claim released");
    let r = &q.entry.recipients[0];
    assert_eq!(r.status, Status::Pending);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.next_attempt, t(300), "5 minutes after the first failure");
    assert!(r.last_error.as_deref().unwrap().contains("451 4.3.0"));

    clock.set(t(299));
    assert_eq!(pass(&inner).await, 0, "not due yet");
    clock.set(t(300));
    assert_eq!(pass(&inner).await, 1);
    let r = &queue.show(&id, t(300)).unwrap().entry.recipients[0];
    assert_eq!(r.attempts, 2);
    assert_eq!(r.next_attempt, t(300 + 600), "then 10 minutes");
    assert_eq!(transport.calls().len(), 2);
    assert!(list(&queue, t(300)).len() == 1, "no DSN for a deferral");
}

#[tokio::test]
async fn missing_transport_results_count_as_deferred() {
    let dir = tempfile::tempdir().unwrap();
    let backoff = Backoff::default();
    let queue = open(dir.path(), backoff);
    // The transport answers for a different address only.
    struct Wrong;
    impl Transport for Wrong {
        fn deliver_domain<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a [String],
            _: &'a [u8],
        ) -> BoxFuture<'a, Vec<RecipientResult>> {
            Box::pin(async {
                vec![RecipientResult {
                    address: "other@remote.test".into(),
                    outcome: delivered("250 ok"),
                }]
            })
        }
    }
    let m = Manager::new(
        queue.clone(),
        Arc::new(Wrong),
        Arc::new(FakeLocal::default()),
        "mx.example.org".into(),
        settings(4, 2),
        backoff,
    )
    .with_clock(TestClock::at(t(0)).clock());
    let inner = Arc::new(m.inner);
    let id = enqueue(&queue, "alice@example.org", &["x@remote.test"], t(0));
    pass(&inner).await;
    let r = &queue.show(&id, t(0)).unwrap().entry.recipients[0];
    assert_eq!((r.status, r.attempts), (Status::Pending, 1));
}

#[test]
fn replies_are_taken_apart_for_the_dsn() {
    let p = parse_reply("mx1.b.test[127.0.0.2]: 550 5.1.1 <x@b.test>: User unknown");
    assert_eq!(p.host, Some("mx1.b.test"));
    assert_eq!(p.reply, Some("550 5.1.1 <x@b.test>: User unknown"));
    assert_eq!(
        p.diagnostic,
        Some(Diagnostic::Smtp(
            "550 5.1.1 <x@b.test>: User unknown".into()
        ))
    );
    assert_eq!(enhanced_code(p.reply.unwrap()), Some("5.1.1"));

    let p = parse_reply("mx1.b.test: 421 4.7.0 too busy");
    assert_eq!(
        (p.host, p.reply),
        (Some("mx1.b.test"), Some("421 4.7.0 too busy"))
    );

    let p =
        parse_reply("relay smtp.provider.test[192.0.2.1]: 552 5.3.4 Message size exceeds limit");
    assert_eq!(
        (p.host, p.reply),
        (
            Some("smtp.provider.test"),
            Some("552 5.3.4 Message size exceeds limit")
        )
    );

    let p = parse_reply("550 no such user");
    assert_eq!((p.host, p.reply), (None, Some("550 no such user")));
    assert_eq!(enhanced_code("550 no such user"), None);

    let p = parse_reply("connection to mx1.b.test[127.0.0.2]:25 refused");
    assert_eq!((p.host, p.reply), (None, None));
    assert!(matches!(p.diagnostic, Some(Diagnostic::Local(_))));

    let p = parse_reply("b.test: no MX, A or AAAA records");
    assert_eq!(
        p.reply, None,
        "a host prefix without a reply is a local diagnostic"
    );
    assert!(parse_reply("").diagnostic.is_none());
}

#[tokio::test]
async fn domain_limits_forget_idle_domains() {
    let limits = Limits::new(4, 1);
    let a = limits.acquire("a.test").await;
    let b = limits.acquire("b.test").await;
    assert_eq!(limits.tracked_domains(), 2);
    let waiting = limits.acquire("a.test");
    drop(a);
    let a2 = waiting.await;
    drop(b);
    assert_eq!(limits.tracked_domains(), 1);
    drop(a2);
    assert_eq!(limits.tracked_domains(), 0);
}
