//! Which senders a login owns.

use super::*;

#[tokio::test]
async fn may_send_as_needs_an_smtp_enabled_active_login() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    let alice = addr("alice@d.test");
    assert!(
        may_send_as(&mut tx, &alice, &alice, Some('+'))
            .await
            .expect("q")
    );
    let mut row = tx.mailbox("alice@d.test").await.expect("q").expect("row");
    row.smtp_active = false;
    tx.update_mailbox(&row).await.expect("update");
    assert!(
        !may_send_as(&mut tx, &alice, &alice, Some('+'))
            .await
            .expect("q")
    );
    let bob = addr("bob@d.test");
    assert!(
        !may_send_as(&mut tx, &bob, &bob, Some('+'))
            .await
            .expect("q")
    );
}

#[tokio::test]
async fn may_send_as_refuses_catch_alls_forwards_and_foreign_domains() {
    let f = fixture().await;
    let mut tx = standard(&f).await;
    mailbox(&mut tx, "carol@d.test", true).await;
    alias(&mut tx, "@d.test", "alice@d.test", true).await;
    let mut row = tx.alias("carol@d.test").await.expect("q").expect("row");
    row.goto = "carol@d.test,alice@d.test".into();
    tx.update_alias(&row).await.expect("update");
    let alice = addr("alice@d.test");
    for sender in ["random@d.test", "carol@d.test", "alice@gmail.test"] {
        assert!(
            !may_send_as(&mut tx, &alice, &addr(sender), Some('+'))
                .await
                .expect("q"),
            "{sender}"
        );
    }
    assert!(
        may_send_as(&mut tx, &alice, &addr("alice+x@d.test"), Some('+'))
            .await
            .expect("q")
    );
    assert!(
        !may_send_as(&mut tx, &alice, &addr("alice+x@d.test"), None)
            .await
            .expect("q")
    );
}
