//! Resolution of recipients: mailboxes, aliases, alias domains, catch-alls, limits and hostile tables.

use super::*;

#[test]
fn base_address_strips_the_extension_at_the_first_delimiter() {
    let base = base_address(&addr("alice+news+x@d.test"), Some('+'));
    assert_eq!(base, Some(addr("alice@d.test")));
    assert_eq!(base_address(&addr("alice@d.test"), Some('+')), None);
    assert_eq!(base_address(&addr("alice+x@d.test"), None), None);
    assert_eq!(
        base_address(&addr("alice-x@d.test"), Some('-')),
        Some(addr("alice@d.test"))
    );
}

#[test]
fn base_address_refuses_an_empty_or_malformed_base() {
    assert_eq!(base_address(&addr("+tag@d.test"), Some('+')), None);
    assert_eq!(base_address(&addr("alice.+tag@d.test"), Some('+')), None);
}

#[tokio::test]
async fn active_mailbox_is_local_and_its_row_carries_no_password() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    let r = res(&mut tx, "alice@d.test").await;
    assert_eq!(local(&r), (vec!["alice@d.test".to_string()], vec![]));
    let Recipient::Local { mailboxes, .. } = &r else {
        unreachable!()
    };
    assert_eq!(mailboxes[0].maildir, "d.test/alice/");
    assert!(mailboxes[0].password.is_empty());
    assert!(!format!("{r:?}").contains("secret"));
}

#[tokio::test]
async fn disabled_mailbox_with_active_self_alias_is_disabled() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    assert_eq!(res(&mut tx, "bob@d.test").await, Recipient::Disabled);
}

#[tokio::test]
async fn mailbox_without_self_alias_row_still_receives() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    tx.delete_alias("alice@d.test").await.expect("delete");
    assert_eq!(
        local(&res(&mut tx, "alice@d.test").await).0,
        ["alice@d.test"]
    );
}

#[tokio::test]
async fn forward_set_on_a_disabled_mailbox_still_forwards() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    let mut row = tx.alias("bob@d.test").await.expect("read").expect("row");
    row.goto = "bob@d.test,alice@d.test".into();
    tx.update_alias(&row).await.expect("update");
    let r = res(&mut tx, "bob@d.test").await;
    assert_eq!(local(&r).0, ["alice@d.test"]);
    assert!(via(&r).iter().any(|v| v == "bob@d.test: mailbox disabled"));
}

#[tokio::test]
async fn unknown_names_are_unknown_and_other_domains_not_local() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    assert_eq!(res(&mut tx, "nobody@d.test").await, Recipient::Unknown);
    assert_eq!(
        res(&mut tx, "alice@elsewhere.test").await,
        Recipient::NotLocal
    );
}

#[tokio::test]
async fn raw_parts_with_routing_tricks_never_relay() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    let parts = |l: &'static str, d: &'static str| (l, d);
    let cases = [
        (parts("x%elsewhere.test", "d.test"), Recipient::Unknown),
        (parts("elsewhere.test!x", "d.test"), Recipient::Unknown),
        (parts("alice@elsewhere.test", "d.test"), Recipient::Unknown),
        (parts("al ice", "d.test"), Recipient::Unknown),
        (parts("ålice", "d.test"), Recipient::Unknown),
        (parts("x%d.test", "elsewhere.test"), Recipient::NotLocal),
        (parts("alice", "[127.0.0.1]"), Recipient::NotLocal),
        (parts("alice", "d.test."), Recipient::NotLocal),
        (parts("", "d.test"), Recipient::Unknown),
    ];
    for ((l, d), want) in cases {
        let got = resolve_parts(&mut tx, l, d, ResolveLimits::default())
            .await
            .expect("resolve");
        assert_eq!(got, want, "{l}@{d}");
    }
    let long = "a".repeat(300);
    let got = resolve_parts(&mut tx, &long, "d.test", ResolveLimits::default())
        .await
        .expect("resolve");
    assert_eq!(got, Recipient::Unknown);
    let upper = resolve_parts(&mut tx, "ALICE", "d.test", ResolveLimits::default())
        .await
        .expect("resolve");
    assert_eq!(local(&upper).0, ["alice@d.test"]);
}

#[tokio::test]
async fn broken_goto_entries_are_skipped_and_escaped_in_via() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    alias(
        &mut tx,
        "info@d.test",
        " ALICE@D.TEST , not\r\nan address, ,@d.test,alice@d.test",
        true,
    )
    .await;
    let r = res(&mut tx, "info@d.test").await;
    assert_eq!(local(&r).0, ["alice@d.test"]);
    let notes = via(&r);
    assert_eq!(notes[0], "info@d.test -> alice@d.test");
    assert!(
        notes.iter().all(|v| !v.contains('\r') && !v.contains('\n')),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|v| v.contains("not\\r\\nan address")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn alias_of_only_unknown_hosted_names_is_unknown() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    alias(
        &mut tx,
        "ghosts@d.test",
        "casper@d.test,slimer@d.test",
        true,
    )
    .await;
    assert_eq!(res(&mut tx, "ghosts@d.test").await, Recipient::Unknown);
}

#[tokio::test]
async fn self_listing_alias_without_mailbox_delivers_nothing() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    alias(&mut tx, "echo@d.test", "echo@d.test", true).await;
    assert_eq!(res(&mut tx, "echo@d.test").await, Recipient::Unknown);
}

#[tokio::test]
async fn self_loop_through_catch_all_terminates() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    // Every unknown name goes to another unknown name, which the catch-all takes again.
    alias(&mut tx, "@d.test", "void@d.test", true).await;
    assert_eq!(res(&mut tx, "x@d.test").await, Recipient::Unknown);
}

#[tokio::test]
async fn huge_goto_list_is_capped_and_each_mailbox_delivered_once() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    // 5,000 copies of one name, then 5,000 distinct unknown names.
    let mut targets = vec!["alice@d.test".to_string(); 5000];
    targets.extend((0..5000).map(|i| format!("u{i}@d.test")));
    let goto = targets.join(",");
    alias(&mut tx, "spam@d.test", &goto, true).await;
    let limits = ResolveLimits {
        max_targets: 7,
        ..ResolveLimits::default()
    };
    let r = resolve(&mut tx, &addr("spam@d.test"), limits)
        .await
        .expect("resolve");
    assert_eq!(local(&r).0, ["alice@d.test"]);
    assert!(
        via(&r)
            .iter()
            .any(|v| v.contains("4994 more targets dropped")),
        "{:?}",
        via(&r)
    );
}

#[tokio::test]
async fn zero_depth_follows_no_alias_but_delivers_mailboxes() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    alias(&mut tx, "info@d.test", "alice@d.test", true).await;
    let limits = ResolveLimits {
        max_depth: 0,
        ..ResolveLimits::default()
    };
    assert_eq!(
        resolve(&mut tx, &addr("info@d.test"), limits)
            .await
            .expect("resolve"),
        Recipient::Unknown
    );
    // The self-alias is not a hop: a mailbox is delivered even with no depth at all.
    let r = resolve(&mut tx, &addr("alice@d.test"), limits)
        .await
        .expect("resolve");
    assert_eq!(local(&r).0, ["alice@d.test"]);
}

#[tokio::test]
async fn alias_domain_with_a_disabled_target_is_disabled() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    domain(&mut tx, "off.test", false, false).await;
    domain(&mut tx, "alias.test", true, false).await;
    alias_domain(&mut tx, "alias.test", "off.test", true).await;
    assert_eq!(res(&mut tx, "x@alias.test").await, Recipient::Disabled);
}

#[tokio::test]
async fn alias_target_in_a_disabled_domain_is_not_relayed() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    domain(&mut tx, "off.test", false, false).await;
    domain(&mut tx, "backup.test", true, true).await;
    alias(&mut tx, "a@d.test", "x@off.test", true).await;
    alias(&mut tx, "b@d.test", "x@off.test,y@backup.test", true).await;
    assert_eq!(res(&mut tx, "a@d.test").await, Recipient::Disabled);
    assert_eq!(local(&res(&mut tx, "b@d.test").await).1, ["y@backup.test"]);
}

#[tokio::test]
async fn alias_domains_pointing_at_each_other_terminate() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    domain(&mut tx, "one.test", true, false).await;
    domain(&mut tx, "two.test", true, false).await;
    alias_domain(&mut tx, "one.test", "two.test", true).await;
    alias_domain(&mut tx, "two.test", "one.test", true).await;
    assert_eq!(res(&mut tx, "x@one.test").await, Recipient::Unknown);
}

#[tokio::test]
async fn subaddress_prefers_an_exact_match() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    mailbox(&mut tx, "alice+list@d.test", true).await;
    assert_eq!(
        local(&res(&mut tx, "alice+list@d.test").await).0,
        ["alice+list@d.test"]
    );
    assert_eq!(
        local(&res(&mut tx, "alice+other@d.test").await).0,
        ["alice@d.test"]
    );
    assert_eq!(res(&mut tx, "bob+x@d.test").await, Recipient::Disabled);
}
