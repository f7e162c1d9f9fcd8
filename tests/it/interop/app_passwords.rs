//! App passwords and the TOTP rule through the real Dovecot, with the configuration `mailctl config dovecot`
//! writes: the SQL passdb takes the main password (unless TOTP keeps it out), the checkpassword passdb
//! (`mailctl checkpassword`) takes any app password; and swaks submits to `mailctl serve` with an app password.

use std::time::Duration;

use super::PASSWORD;
use super::harness::dovecot::Dovecot;
use super::harness::imap::Imap;
use super::harness::serve::{Serve, ServeOptions};
use super::harness::{Need, Site, program, run_tool, setup};

const ALICE: &str = "alice@example.org";

fn imap_login(dovecot: &Dovecot, user: &str, password: &str) -> bool {
    let mut c = Imap::connect(dovecot.imap());
    let login = c.login(user, password);
    let ok = login.ok();
    if ok {
        let _ = c.command("LOGOUT");
    }
    ok
}

#[test]
#[ignore = "interop: needs root, MariaDB, Dovecot and swaks; run with --ignored interop"]
fn interop_dovecot_takes_app_passwords_and_applies_the_totp_rule() {
    let db = setup(&[Need::Dovecot, Need::Swaks]);
    let site = Site::new(db);
    site.cli("domain add example.org");
    site.add_mailbox(ALICE, PASSWORD, None);
    site.add_mailbox("bob@example.org", PASSWORD, None);
    let phone = "phone password 1";
    site.mailctl_stdin(
        &[
            "mailbox",
            "app-password",
            "add",
            ALICE,
            "--description",
            "phone",
            "--password-stdin",
        ],
        &format!("{phone}\n"),
    )
    .ok();
    let generated = site.generate("dovecot");
    let auth = std::fs::read_to_string(generated.join("auth-mailctl.conf.ext")).expect("auth conf");
    assert!(
        auth.contains("driver = checkpassword") && auth.contains("checkpassword\n"),
        "{auth}"
    );
    let dovecot = Dovecot::start(&site, &generated);

    let check = |user: &str, password: &str, expected: bool, what: &str| {
        if imap_login(&dovecot, user, password) != expected {
            dovecot.fail(&format!("{what}: LOGIN {user} should be {expected}"));
        }
    };
    check(ALICE, PASSWORD, true, "the main password");
    check(ALICE, phone, true, "an app password");
    check(ALICE, "not the password", false, "a wrong password");
    check(
        "bob@example.org",
        phone,
        false,
        "someone else's app password",
    );

    // TOTP on: the main password is refused, app passwords still work; an exception address lets it in.
    site.cli("mailbox totp enable alice@example.org");
    check(ALICE, PASSWORD, false, "the main password with TOTP on");
    check(ALICE, phone, true, "an app password with TOTP on");
    site.cli("mailbox totp exception add 127.0.0.1 --for alice@example.org");
    check(
        ALICE,
        PASSWORD,
        true,
        "the main password from an exception address",
    );

    // swaks submits to serve with the app password; without the exception, the main password is refused there
    // too.
    let exceptions = site
        .mailctl_stdin(&["--json", "mailbox", "totp", "exception", "list"], "")
        .ok()
        .json();
    let id = exceptions[0]["id"]
        .as_i64()
        .expect("the exception's id")
        .to_string();
    site.cli(&format!("mailbox totp exception delete {id}"));
    let serve = Serve::start(&site, ServeOptions::new("mx.example.test"));
    let swaks = program("swaks").expect("swaks installed");
    let server = serve.submission().to_string();
    let ca = serve.ca_file.to_string_lossy().into_owned();
    let submit = |password: &str| {
        run_tool(
            &swaks,
            &[
                "--server",
                &server,
                "--ehlo",
                "laptop.example.org",
                "--from",
                ALICE,
                "--to",
                "bob@example.org",
                "--auth",
                "PLAIN",
                "--auth-user",
                ALICE,
                "--auth-password",
                password,
                "--tls",
                "--tls-verify",
                "--tls-ca-path",
                &ca,
                "--timeout",
                "20",
            ],
            Duration::from_secs(40),
        )
    };
    let sent = submit(phone);
    if sent.code != 0 || !sent.stdout.contains("235 ") {
        serve.fail(&format!(
            "swaks with the app password, exit {}:\n{}",
            sent.code, sent.stdout
        ));
    }
    assert_eq!(site.new_mail("bob@example.org").len(), 1);
    let refused = submit(PASSWORD);
    assert!(
        refused.code != 0 && refused.stdout.contains("535 "),
        "TOTP: the main password is refused for SMTP too:\n{}",
        refused.stdout
    );

    let log = dovecot.log();
    assert!(
        !log.contains("Error:") && !log.contains("Fatal:"),
        "Dovecot logged errors:\n{log}"
    );
}
