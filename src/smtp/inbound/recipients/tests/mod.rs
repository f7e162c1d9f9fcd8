//! Unit tests over a throw-away SQLite store, with rows written directly (so broken tables the CLI would refuse
//! can be built too). The end-to-end tests on both backends are in `tests/it/smtp_recipients.rs`.

mod resolve;
mod sender;

use super::*;
use crate::store::{AliasDomainRow, AliasRow, DomainRow, Store};

const NOW: &str = "2024-01-01 00:00:00";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let (store, _) = Store::open(&url).await.expect("open store");
    Fixture { _dir: dir, store }
}

fn addr(s: &str) -> Address {
    s.parse().expect("test address")
}

async fn domain(tx: &mut Tx, name: &str, active: bool, backupmx: bool) {
    tx.insert_domain(&DomainRow {
        domain: name.into(),
        description: String::new(),
        aliases: 0,
        mailboxes: 0,
        maxquota: 0,
        quota: 0,
        transport: String::new(),
        backupmx,
        created: NOW.into(),
        modified: NOW.into(),
        active,
    })
    .await
    .expect("insert domain");
}

async fn alias(tx: &mut Tx, address: &str, goto: &str, active: bool) {
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    tx.insert_alias(&AliasRow {
        address: address.into(),
        goto: goto.into(),
        domain: domain.into(),
        created: NOW.into(),
        modified: NOW.into(),
        active,
    })
    .await
    .expect("insert alias");
}

/// A mailbox with its postfixadmin self-alias row (always active, as mailctl keeps it).
async fn mailbox(tx: &mut Tx, address: &str, active: bool) {
    let (local, domain) = address.rsplit_once('@').expect("address");
    tx.insert_mailbox(&MailboxRow {
        username: address.into(),
        password: "{SHA512-CRYPT}$6$secret".into(),
        name: String::new(),
        maildir: format!("{domain}/{local}/"),
        quota: 0,
        local_part: local.into(),
        domain: domain.into(),
        created: NOW.into(),
        modified: NOW.into(),
        active,
        smtp_active: true,
    })
    .await
    .expect("insert mailbox");
    alias(tx, address, address, true).await;
}

async fn alias_domain(tx: &mut Tx, alias: &str, target: &str, active: bool) {
    tx.insert_alias_domain(&AliasDomainRow {
        alias_domain: alias.into(),
        target_domain: target.into(),
        created: NOW.into(),
        modified: NOW.into(),
        active,
    })
    .await
    .expect("insert alias domain");
}

/// `d.test` with mailboxes alice (active) and bob (disabled).
async fn standard(f: &Fixture) -> Tx {
    let mut tx = f.store.begin().await.expect("begin");
    domain(&mut tx, "d.test", true, false).await;
    mailbox(&mut tx, "alice@d.test", true).await;
    mailbox(&mut tx, "bob@d.test", false).await;
    tx
}

async fn res(tx: &mut Tx, a: &str) -> Recipient {
    resolve(tx, &addr(a), ResolveLimits::default())
        .await
        .expect("resolve")
}

/// The mailbox usernames and external addresses of a `Local` answer; panics on any other answer.
fn local(r: &Recipient) -> (Vec<String>, Vec<String>) {
    match r {
        Recipient::Local {
            mailboxes,
            external,
            ..
        } => (
            mailboxes.iter().map(|m| m.username.clone()).collect(),
            external.iter().map(ToString::to_string).collect(),
        ),
        other => panic!("expected Local, got {other:?}"),
    }
}

fn via(r: &Recipient) -> Vec<String> {
    match r {
        Recipient::Local { via, .. } => via.clone(),
        _ => Vec::new(),
    }
}
