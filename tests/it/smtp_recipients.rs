//! How the SMTP daemon will treat recipients and senders (`mailctl::smtp::inbound::recipients`), on SQLite and MariaDB:
//! the database is provisioned with the real binary (and, for tables the CLI refuses to build, raw SQL), then
//! the store is opened in-process and every answer is checked.

use kit::TestDb;
use mailctl::model::Address;
use mailctl::smtp::inbound::recipients::{Recipient, ResolveLimits, may_send_as, resolve};
use mailctl::store::Store;

/// The open store of a test database, with the runtime that drives it.
struct Probe {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl Probe {
    fn open(db: &TestDb) -> Probe {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (store, _) = rt.block_on(Store::open(&db.url)).expect("open store");
        Probe { rt, store }
    }

    fn resolve_with(&self, address: &str, limits: ResolveLimits) -> Recipient {
        let address: Address = address.parse().expect("test address");
        self.rt.block_on(async {
            let mut tx = self.store.begin().await.expect("begin");
            let r = resolve(&mut tx, &address, limits).await.expect("resolve");
            tx.rollback().await.expect("rollback");
            r
        })
    }

    fn resolve(&self, address: &str) -> Recipient {
        self.resolve_with(address, ResolveLimits::default())
    }

    /// Mailbox usernames and external addresses (both sorted) of a `Local` answer; panics on any other.
    fn local(&self, address: &str) -> (Vec<String>, Vec<String>) {
        local_of(&self.resolve(address), address)
    }

    /// Just the mailboxes of a `Local` answer.
    fn boxes(&self, address: &str) -> Vec<String> {
        self.local(address).0
    }

    fn via(&self, address: &str) -> Vec<String> {
        match self.resolve(address) {
            Recipient::Local { via, .. } => via,
            other => panic!("{address}: expected Local, got {other:?}"),
        }
    }

    fn may_send_as(&self, login: &str, sender: &str) -> bool {
        let login: Address = login.parse().expect("login");
        let sender: Address = sender.parse().expect("sender");
        self.rt.block_on(async {
            let mut tx = self.store.begin().await.expect("begin");
            let ok = may_send_as(&mut tx, &login, &sender, Some('+'))
                .await
                .expect("may_send_as");
            tx.rollback().await.expect("rollback");
            ok
        })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Close the pool before the test database is dropped, so MariaDB's DROP DATABASE never waits on it.
        self.rt.block_on(self.store.close());
    }
}

fn local_of(r: &Recipient, address: &str) -> (Vec<String>, Vec<String>) {
    match r {
        Recipient::Local {
            mailboxes,
            external,
            ..
        } => {
            let mut m: Vec<String> = mailboxes.iter().map(|m| m.username.clone()).collect();
            let mut e: Vec<String> = external.iter().map(ToString::to_string).collect();
            m.sort();
            e.sort();
            (m, e)
        }
        other => panic!("{address}: expected Local, got {other:?}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn add_mailbox(db: &TestDb, address: &str) {
    db.run_stdin(
        &["mailbox", "add", address, "--password-stdin"],
        "correct horse battery\n",
    )
    .ok();
}

/// Runs the real binary with whitespace-separated arguments and asserts success.
fn cli(db: &TestDb, args: &str) {
    db.run(&args.split_whitespace().collect::<Vec<_>>()).ok();
}

/// `example.test` with mailboxes alice and bob.
fn example(db: &TestDb) {
    cli(db, "domain add example.test");
    add_mailbox(db, "alice@example.test");
    add_mailbox(db, "bob@example.test");
}

/// Inserts an alias row behind the CLI's back (it refuses loops, and rightly so).
fn raw_alias(db: &TestDb, address: &str, goto: &str) {
    db.query(&format!(
        "INSERT INTO alias (address, goto, domain, active) VALUES ('{address}', '{goto}', 'example.test', 1)"
    ));
}

fn mailbox_and_aliases_with_local_and_external_targets(db: &TestDb) {
    example(db);
    cli(
        db,
        "alias add info@example.test alice@example.test bob@example.test friend@far.test",
    );
    let p = Probe::open(db);
    assert_eq!(
        p.local("alice@example.test"),
        (strings(&["alice@example.test"]), vec![])
    );
    assert_eq!(
        p.local("info@example.test"),
        (
            strings(&["alice@example.test", "bob@example.test"]),
            strings(&["friend@far.test"])
        )
    );
    let Recipient::Local { mailboxes, .. } = p.resolve("alice@example.test") else {
        panic!("alice is local")
    };
    assert_eq!(mailboxes[0].maildir, "example.test/alice/");
    assert!(mailboxes[0].active);
    assert!(
        mailboxes[0].password.is_empty(),
        "no hash travels with a delivery"
    );
}

fn nested_aliases_expand_and_deliver_each_mailbox_once(db: &TestDb) {
    example(db);
    cli(
        db,
        "alias add info@example.test alice@example.test bob@example.test",
    );
    cli(
        db,
        "alias add team@example.test info@example.test carol@far.test",
    );
    cli(
        db,
        "alias add all@example.test team@example.test alice@example.test",
    );
    let p = Probe::open(db);
    assert_eq!(
        p.local("all@example.test"),
        (
            strings(&["alice@example.test", "bob@example.test"]),
            strings(&["carol@far.test"])
        )
    );
    let via = p.via("team@example.test");
    assert_eq!(
        via[..2],
        strings(&[
            "team@example.test -> info@example.test, carol@far.test",
            "info@example.test -> alice@example.test, bob@example.test",
        ])
    );
}

fn loop_written_directly_into_the_database_terminates(db: &TestDb) {
    example(db);
    raw_alias(db, "ping@example.test", "pong@example.test");
    raw_alias(
        db,
        "pong@example.test",
        "ping@example.test,alice@example.test",
    );
    raw_alias(db, "tick@example.test", "tock@example.test");
    raw_alias(db, "tock@example.test", "tick@example.test");
    raw_alias(db, "narcissus@example.test", "narcissus@example.test");
    let p = Probe::open(db);
    assert_eq!(p.boxes("ping@example.test"), ["alice@example.test"]);
    assert!(
        p.via("ping@example.test")
            .contains(&"ping@example.test: already expanded (loop or duplicate)".to_string())
    );
    assert_eq!(p.resolve("tick@example.test"), Recipient::Unknown);
    assert_eq!(p.resolve("narcissus@example.test"), Recipient::Unknown);
}

fn depth_and_target_limits_cut_expansion(db: &TestDb) {
    example(db);
    // hop1 -> hop2 -> hop3 -> hop4 -> alice: alice is four rewrites away from hop1.
    cli(db, "alias add hop4@example.test alice@example.test");
    for i in (1..4).rev() {
        let from = format!("hop{i}@example.test");
        let to = format!("hop{}@example.test", i + 1);
        db.run(&["alias", "add", &from, &to]).ok();
    }
    cli(
        db,
        "alias add many@example.test a@far.test b@far.test c@far.test d@far.test",
    );
    let p = Probe::open(db);
    let depth = |max_depth| ResolveLimits {
        max_depth,
        ..ResolveLimits::default()
    };
    assert_eq!(
        local_of(&p.resolve_with("hop1@example.test", depth(4)), "hop1").0,
        strings(&["alice@example.test"])
    );
    assert_eq!(
        p.resolve_with("hop1@example.test", depth(3)),
        Recipient::Unknown
    );
    assert_eq!(p.boxes("hop1@example.test"), ["alice@example.test"]);
    let two = ResolveLimits {
        max_targets: 2,
        ..ResolveLimits::default()
    };
    let r = p.resolve_with("many@example.test", two);
    assert_eq!(
        local_of(&r, "many").1,
        strings(&["a@far.test", "b@far.test"])
    );
    let Recipient::Local { via, .. } = r else {
        unreachable!()
    };
    assert!(
        via.iter()
            .any(|v| v.contains("2 more targets dropped (limit of 2")),
        "{via:?}"
    );
}

fn alias_domain_maps_to_mailboxes_and_aliases(db: &TestDb) {
    example(db);
    cli(db, "alias add info@example.test bob@example.test");
    cli(db, "alias-domain add alias.test example.test");
    cli(db, "alias-domain add sleepy.test example.test --inactive");
    let p = Probe::open(db);
    assert_eq!(p.boxes("alice@alias.test"), ["alice@example.test"]);
    assert_eq!(
        p.via("alice@alias.test")[0],
        "alice@alias.test => alice@example.test (alias domain)"
    );
    assert_eq!(p.boxes("info@alias.test"), ["bob@example.test"]);
    assert_eq!(p.resolve("nobody@alias.test"), Recipient::Unknown);
    // An inactive mapping maps nothing; its domain row was created inactive too, so it is not hosted.
    assert_eq!(p.resolve("alice@sleepy.test"), Recipient::NotLocal);
    // A hosted domain whose mapping is switched off is an ordinary, empty domain.
    db.query("UPDATE alias_domain SET active = 0 WHERE alias_domain = 'alias.test'");
    assert_eq!(p.resolve("alice@alias.test"), Recipient::Unknown);
}

fn catch_all_takes_unknown_names_but_never_a_mailbox(db: &TestDb) {
    example(db);
    add_mailbox(db, "carol@example.test");
    cli(db, "mailbox disable bob@example.test");
    cli(db, "alias add @example.test alice@example.test");
    let p = Probe::open(db);
    assert_eq!(p.boxes("nobody@example.test"), ["alice@example.test"]);
    assert_eq!(
        p.via("nobody@example.test")[0],
        "nobody@example.test -> @example.test (catch-all)"
    );
    assert_eq!(p.boxes("carol@example.test"), ["carol@example.test"]);
    assert_eq!(p.resolve("bob@example.test"), Recipient::Disabled);
    // Even with their self-alias rows switched off (where Postfix would fall through to the catch-all).
    db.query(
        "UPDATE alias SET active = 0 WHERE address IN ('bob@example.test', 'carol@example.test')",
    );
    assert_eq!(p.boxes("carol@example.test"), ["carol@example.test"]);
    assert_eq!(p.resolve("bob@example.test"), Recipient::Disabled);
}

fn disabled_mailboxes_and_inactive_aliases(db: &TestDb) {
    example(db);
    cli(db, "mailbox disable bob@example.test");
    cli(db, "alias add bobs@example.test bob@example.test");
    cli(
        db,
        "alias add old@example.test alice@example.test --inactive",
    );
    let p = Probe::open(db);
    assert_eq!(p.resolve("bob@example.test"), Recipient::Disabled);
    assert_eq!(p.resolve("bobs@example.test"), Recipient::Disabled);
    assert_eq!(p.resolve("old@example.test"), Recipient::Unknown);
    cli(db, "alias add @example.test alice@example.test");
    // An inactive alias is as if absent: the catch-all takes its name.
    assert_eq!(
        p.via("old@example.test")[0],
        "old@example.test -> @example.test (catch-all)"
    );
}

fn inactive_foreign_and_backup_mx_domains_are_not_local(db: &TestDb) {
    example(db);
    cli(db, "domain add sleepy.test");
    add_mailbox(db, "dora@sleepy.test");
    cli(db, "domain update sleepy.test --inactive");
    cli(db, "domain add backup.test --backup-mx");
    let p = Probe::open(db);
    assert_eq!(p.resolve("dora@sleepy.test"), Recipient::NotLocal);
    assert_eq!(p.resolve("anyone@backup.test"), Recipient::NotLocal);
    assert_eq!(p.resolve("alice@nowhere.test"), Recipient::NotLocal);
}

fn subaddress_falls_back_to_the_base_address(db: &TestDb) {
    example(db);
    cli(db, "alias add info@example.test bob@example.test");
    cli(db, "alias add @example.test bob@example.test");
    let p = Probe::open(db);
    assert_eq!(p.boxes("alice+news@example.test"), ["alice@example.test"]);
    assert_eq!(
        p.via("alice+news@example.test")[0],
        "alice+news@example.test -> alice@example.test (subaddress)"
    );
    assert_eq!(p.boxes("info+x@example.test"), ["bob@example.test"]);
    let off = ResolveLimits {
        delimiter: None,
        ..ResolveLimits::default()
    };
    // Without a delimiter the catch-all takes the name instead.
    assert_eq!(
        local_of(
            &p.resolve_with("alice+news@example.test", off),
            "alice+news"
        )
        .0,
        strings(&["bob@example.test"])
    );
}

fn sender_must_be_owned_by_the_login(db: &TestDb) {
    example(db);
    cli(
        db,
        "alias add sales@example.test alice@example.test bob@example.test",
    );
    cli(db, "alias add support@example.test bob@example.test");
    cli(db, "alias add front@example.test sales@example.test");
    cli(db, "alias-domain add alias.test example.test");
    let p = Probe::open(db);
    let alice = "alice@example.test";
    assert!(p.may_send_as(alice, alice), "own mailbox");
    assert!(
        p.may_send_as(alice, "sales@example.test"),
        "alias pointing to the login"
    );
    assert!(
        !p.may_send_as(alice, "support@example.test"),
        "alias not pointing to the login"
    );
    assert!(
        !p.may_send_as(alice, "bob@example.test"),
        "another user's mailbox"
    );
    assert!(
        !p.may_send_as(alice, "front@example.test"),
        "nested aliases do not count"
    );
    assert!(
        p.may_send_as(alice, "alice@alias.test"),
        "own mailbox in an alias domain"
    );
    assert!(
        p.may_send_as(alice, "alice+lists@example.test"),
        "own subaddress"
    );
    assert!(!p.may_send_as(alice, "alice@far.test"), "a foreign domain");
    assert!(
        !p.may_send_as("nobody@example.test", "nobody@example.test"),
        "not a mailbox"
    );
}

kit::on_both_backends!(
    mailbox_and_aliases_with_local_and_external_targets,
    nested_aliases_expand_and_deliver_each_mailbox_once,
    loop_written_directly_into_the_database_terminates,
    depth_and_target_limits_cut_expansion,
    alias_domain_maps_to_mailboxes_and_aliases,
    catch_all_takes_unknown_names_but_never_a_mailbox,
    disabled_mailboxes_and_inactive_aliases,
    inactive_foreign_and_backup_mx_domains_are_not_local,
    subaddress_falls_back_to_the_base_address,
    sender_must_be_owned_by_the_login,
);
