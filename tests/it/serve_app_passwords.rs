//! App passwords and the TOTP rule (postfixadmin's `mailbox_app_password`, `mailbox.totp_secret`,
//! `totp_exception_address`): `mailctl mailbox app-password add|list|revoke` and `mailctl mailbox totp`, and
//! submission AUTH taking the main password or any app password; with TOTP on, app passwords only, except
//! from an exception address (for the mailbox, its domain, or everyone).

use kit::TestDb;
use kit::serve::mail::{PASSWORD, example};
use kit::serve::{HOSTNAME, ServeOptions, TestServer};
use kit::smtp_client::SmtpClient;

const ALICE: &str = "alice@example.test";

/// AUTH PLAIN on the submission listener; the reply code.
fn login(server: &TestServer, user: &str, password: &str) -> u16 {
    let mut c = SmtpClient::connect(server.submission());
    c.ehlo("laptop.example.test");
    c.starttls(server.root(), HOSTNAME);
    c.ehlo("laptop.example.test");
    let code = c.auth_plain(user, password).code;
    c.command("QUIT");
    code
}

fn app_passwords_log_in_and_totp_keeps_the_main_password_out(db: &TestDb) {
    example(db);
    let added = db
        .run(&[
            "--json",
            "mailbox",
            "app-password",
            "add",
            ALICE,
            "--description",
            "phone",
            "--random",
        ])
        .ok()
        .json();
    let phone = added["generated_password"]
        .as_str()
        .expect("the generated password")
        .to_string();
    let phone_id = added["id"].as_i64().expect("an id");
    assert_eq!(added["description"], "phone");
    assert_eq!(added["replaced"], false);
    let laptop = "laptop secret 123";
    db.run_stdin(
        &[
            "mailbox",
            "app-password",
            "add",
            ALICE,
            "--description",
            "laptop",
            "--password-stdin",
        ],
        &format!("{laptop}\n"),
    )
    .ok();
    let list = db
        .run(&["--json", "mailbox", "app-password", "list", ALICE])
        .ok()
        .json();
    let descriptions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert_eq!(descriptions, ["phone", "laptop"]);
    assert!(
        !list.to_string().contains('$') && !list.to_string().contains("CRYPT"),
        "no hash is ever shown: {list}"
    );
    let table = db
        .run(&["mailbox", "app-password", "list", ALICE])
        .ok()
        .stdout;
    assert!(
        table.contains("phone") && table.contains("laptop"),
        "{table}"
    );

    let server = TestServer::start(db, ServeOptions::default().limit("auth_max_failures", 100));
    assert_eq!(login(&server, ALICE, PASSWORD), 235, "the main password");
    assert_eq!(login(&server, ALICE, &phone), 235, "an app password");
    assert_eq!(login(&server, ALICE, laptop), 235, "the other one");
    assert_eq!(
        login(&server, "bob@example.test", &phone),
        535,
        "only for its own mailbox"
    );

    // TOTP on: only app passwords log in.
    let totp = db
        .run(&["--json", "mailbox", "totp", "enable", ALICE])
        .ok()
        .json();
    let secret = totp["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "{totp}");
    assert!(
        secret
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)),
        "base32: {secret}"
    );
    assert!(
        totp["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/"),
        "{totp}"
    );
    assert_eq!(
        login(&server, ALICE, PASSWORD),
        535,
        "TOTP: no main password"
    );
    assert_eq!(login(&server, ALICE, &phone), 235);

    // An exception address for the domain lets the main password in again; deleting it shuts it out.
    let exception = db
        .run(&[
            "--json",
            "mailbox",
            "totp",
            "exception",
            "add",
            "127.0.0.1",
            "--for",
            "example.test",
            "--description",
            "the office",
        ])
        .ok()
        .json();
    assert_eq!(exception["username"], "example.test");
    assert_eq!(login(&server, ALICE, PASSWORD), 235, "from an exception");
    let id = exception["id"].as_i64().unwrap().to_string();
    let listed = db
        .run(&["mailbox", "totp", "exception", "list"])
        .ok()
        .stdout;
    assert!(
        listed.contains("127.0.0.1") && listed.contains("the office"),
        "{listed}"
    );
    db.run(&["mailbox", "totp", "exception", "delete", &id])
        .ok();
    assert_eq!(login(&server, ALICE, PASSWORD), 535);
    // One for everyone works too.
    let everyone = db
        .run(&["--json", "mailbox", "totp", "exception", "add", "127.0.0.1"])
        .ok()
        .json();
    assert_eq!(login(&server, ALICE, PASSWORD), 235);

    // Revoked: the phone's password no longer logs in; TOTP off: the main password from anywhere.
    db.run(&["mailbox", "app-password", "revoke", &phone_id.to_string()])
        .ok();
    assert_eq!(login(&server, ALICE, &phone), 535);
    assert_eq!(login(&server, ALICE, laptop), 235);
    db.run(&["mailbox", "totp", "disable", ALICE]).ok();
    let everyone = everyone["id"].as_i64().unwrap().to_string();
    db.run(&["mailbox", "totp", "exception", "delete", &everyone])
        .ok();
    assert_eq!(login(&server, ALICE, PASSWORD), 235);

    // Re-adding a description replaces its password.
    let again = db
        .run(&[
            "--json",
            "mailbox",
            "app-password",
            "add",
            ALICE,
            "--description",
            "laptop",
            "--random",
        ])
        .ok()
        .json();
    assert_eq!(again["replaced"], true);
    assert_eq!(
        login(&server, ALICE, laptop),
        535,
        "the old laptop password"
    );
    let new = again["generated_password"].as_str().unwrap();
    assert_eq!(login(&server, ALICE, new), 235);

    // Deleting the mailbox takes its app passwords along.
    db.run(&["mailbox", "delete", ALICE]).ok();
    db.run_stdin(
        &["mailbox", "add", ALICE, "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    let list = db
        .run(&["--json", "mailbox", "app-password", "list", ALICE])
        .ok()
        .json();
    assert_eq!(list, serde_json::json!([]));

    // So does deleting the domain: a domain and mailbox made again start without them.
    db.run(&[
        "mailbox",
        "app-password",
        "add",
        ALICE,
        "--description",
        "tablet",
        "--random",
    ])
    .ok();
    db.run(&["domain", "delete", "example.test", "--force"])
        .ok();
    example(db);
    let list = db
        .run(&["--json", "mailbox", "app-password", "list", ALICE])
        .ok()
        .json();
    assert_eq!(list, serde_json::json!([]), "nothing inherited");
}

kit::on_both_backends!(app_passwords_log_in_and_totp_keeps_the_main_password_out);

#[test]
fn bad_app_password_and_totp_input_is_refused_with_one_line() {
    let db = TestDb::sqlite();
    example(&db);
    let random = ["--description", "phone", "--random"];
    let run = |args: &[&str]| db.run(args);
    let mut add = vec!["mailbox", "app-password", "add", "nobody@example.test"];
    add.extend_from_slice(&random);
    run(&add).fails(1, "nobody@example.test");
    run(&[
        "mailbox",
        "app-password",
        "add",
        ALICE,
        "--description",
        " ",
        "--random",
    ])
    .fails(2, "--description must say what the password is for");
    run(&[
        "mailbox",
        "app-password",
        "add",
        ALICE,
        "--description",
        "a\nb",
        "--random",
    ])
    .fails(2, "control characters");
    run(&["mailbox", "app-password", "revoke", "999"]).fails(1, "999");
    run(&["mailbox", "app-password", "revoke", "0"]).fails(2, "is not an app password id");
    run(&["mailbox", "totp", "enable", "nobody@example.test"]).fails(1, "nobody@example.test");
    run(&["mailbox", "totp", "exception", "add", "not-an-ip"])
        .fails(2, "'not-an-ip' is not an IP address");
    run(&[
        "mailbox",
        "totp",
        "exception",
        "add",
        "192.0.2.1",
        "--for",
        "unknown.test",
    ])
    .fails(1, "unknown.test");
    run(&["mailbox", "totp", "exception", "add", "192.0.2.1"]).ok();
    run(&["mailbox", "totp", "exception", "add", "192.0.2.1"]).fails(1, "192.0.2.1 for everyone");
    run(&["mailbox", "totp", "exception", "delete", "77"]).fails(1, "77");
}
