//! `mailctl srs rotate|list|forward|reverse`: the SRS secrets in the database (never printed), rotation that
//! keeps old secrets verifying until every address they signed has expired, and the forward/reverse mapping
//! `serve` uses. Compatibility with postsrsd is in `interop`.

use kit::TestDb;

fn srs_cmd_rotates_lists_and_maps_without_ever_printing_a_secret(db: &TestDb) {
    assert_eq!(
        db.run(&["--json", "srs", "list"]).ok().json(),
        serde_json::json!([])
    );
    db.run(&[
        "srs",
        "forward",
        "bob@remote.example",
        "--domain",
        "fwd.example",
    ])
    .fails(1, "no SRS secret yet");
    db.run_stdin(&["srs", "rotate", "--secret-stdin"], "short\n")
        .fails(2, "8 to 255 characters");

    let first = "a postsrsd secret, migrated";
    db.run_stdin(&["srs", "rotate", "--secret-stdin"], &format!("{first}\n"))
        .ok();
    db.run_stdin(&["srs", "rotate", "--secret-stdin"], &format!("{first}\n"))
        .fails(2, "already stored");
    let old = db
        .run(&[
            "srs",
            "forward",
            "Bob@Remote.example",
            "--domain",
            "fwd.example",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(
        old.starts_with("SRS0=") && old.ends_with("=remote.example=Bob@fwd.example"),
        "{old}"
    );
    let reversed = db.run(&["--json", "srs", "reverse", &old]).ok().json();
    assert_eq!(reversed["to"], "Bob@remote.example");

    // A random second secret signs from now on; the first still verifies.
    let rotated = db.run(&["--json", "srs", "rotate"]).ok().json();
    assert_eq!(
        (rotated["kept"].clone(), rotated["removed"].clone()),
        (1.into(), 0.into())
    );
    let new = db
        .run(&[
            "srs",
            "forward",
            "bob@remote.example",
            "--domain",
            "fwd.example",
        ])
        .ok()
        .stdout;
    assert_ne!(new.trim(), old);
    assert_eq!(
        db.run(&["srs", "reverse", &old]).ok().stdout.trim(),
        "Bob@remote.example"
    );
    let list = db.run(&["--json", "srs", "list"]).ok();
    let rows = list.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    assert_eq!(
        (rows[0]["signs"].clone(), rows[1]["signs"].clone()),
        (true.into(), false.into())
    );
    let table = db.run(&["srs", "list"]).ok().stdout;
    for shown in [&list.stdout, &table] {
        assert!(!shown.contains(first), "a secret was printed: {shown}");
    }

    // Forged and foreign addresses are refused.
    let forged = old.replacen("=Bob@", "=carol@", 1);
    db.run(&["srs", "reverse", &forged]).fails(1, "forged");
    db.run(&["srs", "reverse", "bob@fwd.example"])
        .fails(1, "not an SRS address");
    db.run(&["srs", "reverse", "no-at-sign"])
        .fails(2, "not an address");

    // Secrets superseded more than 22 days ago are dropped at the next rotation: addresses they signed are
    // all expired. (Backdate the two stored ones.)
    db.query("UPDATE mailctl_srs_secrets SET created = '2020-01-01 00:00:00' WHERE id = (SELECT MIN(id) FROM (SELECT id FROM mailctl_srs_secrets) AS s)");
    db.query("UPDATE mailctl_srs_secrets SET created = '2020-02-01 00:00:00' WHERE id = (SELECT MAX(id) FROM (SELECT id FROM mailctl_srs_secrets) AS s)");
    let pruned = db.run(&["--json", "srs", "rotate"]).ok().json();
    assert_eq!(
        (pruned["kept"].clone(), pruned["removed"].clone()),
        (1.into(), 1.into())
    );
    db.run(&["srs", "reverse", &old]).fails(1, "forged");
}

kit::on_both_backends!(srs_cmd_rotates_lists_and_maps_without_ever_printing_a_secret,);
