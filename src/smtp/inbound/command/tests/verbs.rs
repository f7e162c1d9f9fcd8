//! Every verb, its case variants, argument rules and hostile lines.

use super::{codes, err, ok};
use crate::smtp::inbound::command::{Command, CommandError, ReversePath, parse};

#[test]
fn every_verb_without_arguments_parses() {
    assert_eq!(ok("DATA"), Command::Data);
    assert_eq!(ok("RSET"), Command::Rset);
    assert_eq!(ok("NOOP"), Command::Noop);
    assert_eq!(ok("HELP"), Command::Help);
    assert_eq!(ok("QUIT"), Command::Quit);
    assert_eq!(ok("STARTTLS"), Command::StartTls);
}

#[test]
fn verbs_are_case_insensitive() {
    assert_eq!(ok("quit"), Command::Quit);
    assert_eq!(ok("QuIt"), Command::Quit);
    assert_eq!(ok("starttls"), Command::StartTls);
    assert_eq!(
        ok("ehlo client.example"),
        Command::Ehlo("client.example".into())
    );
    assert!(matches!(
        ok("mail from:<a@b.example>"),
        Command::Mail { .. }
    ));
    assert!(matches!(ok("rCpT tO:<a@b.example>"), Command::Rcpt { .. }));
}

#[test]
fn surrounding_blanks_are_ignored() {
    assert_eq!(ok("QUIT "), Command::Quit);
    assert_eq!(ok("  DATA\t"), Command::Data);
    assert_eq!(
        ok("EHLO   client.example  "),
        Command::Ehlo("client.example".into())
    );
}

#[test]
fn ehlo_and_helo_keep_the_argument_as_sent() {
    assert_eq!(
        ok("EHLO Client.Example"),
        Command::Ehlo("Client.Example".into())
    );
    assert_eq!(ok("HELO [192.0.2.1]"), Command::Helo("[192.0.2.1]".into()));
    assert_eq!(
        ok("EHLO [IPv6:2001:db8::1]"),
        Command::Ehlo("[IPv6:2001:db8::1]".into())
    );
    assert_eq!(ok("HELO localhost"), Command::Helo("localhost".into()));
}

#[test]
fn ehlo_without_exactly_one_word_is_a_501() {
    assert_eq!(codes(b"EHLO"), "501 5.5.4");
    assert_eq!(codes(b"HELO"), "501 5.5.4");
    assert_eq!(codes(b"EHLO two words"), "501 5.5.4");
    let long = format!("EHLO {}", "a".repeat(300));
    assert_eq!(codes(long.as_bytes()), "501 5.5.4");
}

#[test]
fn ehlo_with_utf8_is_refused_because_smtputf8_is_not_negotiated_yet() {
    assert_eq!(codes("EHLO bücher.example".as_bytes()), "501 5.5.4");
}

#[test]
fn commands_that_take_no_arguments_refuse_them() {
    for line in ["DATA now", "RSET x", "QUIT please", "STARTTLS x"] {
        assert_eq!(codes(line.as_bytes()), "501 5.5.4", "{line}");
    }
}

#[test]
fn noop_and_help_ignore_their_arguments() {
    assert_eq!(ok("NOOP anything at all"), Command::Noop);
    assert_eq!(ok("HELP MAIL"), Command::Help);
}

#[test]
fn vrfy_and_expn_need_an_argument() {
    assert_eq!(ok("VRFY postmaster"), Command::Vrfy("postmaster".into()));
    assert_eq!(ok("EXPN staff list"), Command::Expn("staff list".into()));
    assert_eq!(codes(b"VRFY"), "501 5.5.4");
    assert_eq!(codes(b"EXPN "), "501 5.5.4");
}

#[test]
fn bdat_parses_size_and_last() {
    assert_eq!(
        ok("BDAT 1000"),
        Command::Bdat {
            size: 1000,
            last: false
        }
    );
    assert_eq!(
        ok("bdat 0 last"),
        Command::Bdat {
            size: 0,
            last: true
        }
    );
    assert_eq!(
        ok("BDAT 18446744073709551615 LAST"),
        Command::Bdat {
            size: u64::MAX,
            last: true
        }
    );
}

#[test]
fn malformed_bdat_is_a_501() {
    for line in [
        "BDAT",
        "BDAT -1",
        "BDAT +5",
        "BDAT 12x",
        "BDAT 18446744073709551616",
        "BDAT 99999999999999999999999999",
        "BDAT 10 FIRST",
        "BDAT 10 LAST extra",
    ] {
        assert_eq!(codes(line.as_bytes()), "501 5.5.4", "{line}");
    }
}

#[test]
fn auth_upper_cases_the_mechanism_and_keeps_the_initial_response() {
    assert_eq!(
        ok("auth plain AGFsaWNlAHNlY3JldA=="),
        Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("AGFsaWNlAHNlY3JldA==".into())
        }
    );
    assert_eq!(
        ok("AUTH login"),
        Command::Auth {
            mechanism: "LOGIN".into(),
            initial: None
        }
    );
    assert_eq!(
        ok("AUTH PLAIN ="),
        Command::Auth {
            mechanism: "PLAIN".into(),
            initial: Some("=".into())
        }
    );
    assert_eq!(
        ok("AUTH SCRAM-SHA-256"),
        Command::Auth {
            mechanism: "SCRAM-SHA-256".into(),
            initial: None
        }
    );
}

#[test]
fn malformed_auth_lines_are_refused() {
    assert_eq!(codes(b"AUTH"), "501 5.5.4");
    assert_eq!(codes(b"AUTH PL@IN"), "501 5.5.4");
    assert_eq!(codes(b"AUTH ABCDEFGHIJKLMNOPQRSTUVWXYZ"), "501 5.5.4");
    assert_eq!(codes(b"AUTH PLAIN abc def"), "501 5.5.4");
    assert_eq!(codes(b"AUTH PLAIN not*base64"), "501 5.5.2");
    assert_eq!(codes(b"AUTH PLAIN ab=c"), "501 5.5.2");
    assert_eq!(codes(b"AUTH PLAIN abc==="), "501 5.5.2");
}

#[test]
fn unknown_verbs_are_a_500() {
    for line in [
        "",
        "   ",
        "FOO",
        "GET / HTTP/1.1",
        "MAILFROM:<a@b.example>",
        "X-FOO bar",
        "EHL0 x",
    ] {
        assert_eq!(err(line.as_bytes()), CommandError::Unrecognized, "{line:?}");
        assert_eq!(codes(line.as_bytes()), "500 5.5.2");
    }
}

#[test]
fn nul_bytes_anywhere_refuse_the_line() {
    for line in [
        &b"\0"[..],
        b"QUIT\0",
        b"MAIL FROM:<a\0@b.example>",
        b"NO\0OP",
        b"RCPT TO:<a@b.example> X=\0",
    ] {
        assert_eq!(err(line), CommandError::NulByte);
        assert_eq!(codes(line), "500 5.5.2");
    }
}

#[test]
fn control_characters_refuse_the_line() {
    for line in [
        &b"QUIT\r"[..],
        b"DATA\nQUIT",
        b"NOOP \x1b[31m",
        b"RSET\x7f",
        b"MAIL FROM:<a@b\rc.example>",
    ] {
        assert_eq!(err(line), CommandError::ControlCharacter, "{line:?}");
    }
}

#[test]
fn eight_bit_garbage_outside_addresses_is_refused() {
    assert_eq!(codes(b"\xff\xfe\xfd"), "500 5.5.2");
    assert_eq!(codes("QUİT".as_bytes()), "500 5.5.2");
    assert_eq!(codes(b"NOOP \xe9t\xe9"), "501 5.5.4");
    assert_eq!(codes(b"VRFY j\xc3\xa9r\xc3\xb4me"), "501 5.5.4");
    assert_eq!(codes(b"MAIL FROM:<a@b.example> X=\xff"), "501 5.5.4");
}

#[test]
fn random_bytes_never_panic() {
    // A tiny deterministic fuzz loop: every result is fine as long as parse returns.
    let mut state: u32 = 0x1234_5678;
    let alphabet = b"MAILFROMRCPTTO:<>@\"\\[]., =+-_%!abcIPv6:\t\x00\xc3\xa9\xff0123456789";
    for _ in 0..20_000 {
        let mut line = Vec::new();
        for _ in 0..(state % 40) {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let pick = (state >> 16) as usize % alphabet.len();
            line.push(alphabet.get(pick).copied().unwrap_or(b'x'));
        }
        let _ = parse(&line);
        state = state.wrapping_add(7);
    }
}

#[test]
fn mail_accepts_a_space_after_the_colon_but_not_missing_brackets() {
    let expected = ok("MAIL FROM:<a@b.example>");
    assert_eq!(ok("MAIL FROM: <a@b.example>"), expected);
    assert_eq!(ok("MAIL\tFROM:\t<a@b.example>"), expected);
    let e = err(b"MAIL FROM:a@b.example");
    assert_eq!(
        e,
        CommandError::BadSender("the address must be enclosed in <>")
    );
    assert_eq!(codes(b"MAIL FROM:a@b.example"), "501 5.1.7");
    assert_eq!(codes(b"RCPT TO:a@b.example"), "501 5.1.3");
    assert!(e.reply().text().contains("enclosed in <>"));
}

#[test]
fn mail_and_rcpt_without_their_keyword_are_a_501() {
    for line in [
        "MAIL",
        "MAIL <a@b.example>",
        "MAIL TO:<a@b.example>",
        "MAIL FROM <a@b.example>",
        "RCPT",
        "RCPT FROM:<a@b.example>",
    ] {
        assert_eq!(codes(line.as_bytes()), "501 5.5.4", "{line}");
    }
}

#[test]
fn null_reverse_path_is_accepted_for_mail_only() {
    assert!(matches!(
        ok("MAIL FROM:<>"),
        Command::Mail {
            from: ReversePath::Null,
            ..
        }
    ));
    assert!(matches!(
        ok("MAIL FROM: <> SIZE=10"),
        Command::Mail {
            from: ReversePath::Null,
            ..
        }
    ));
    assert_eq!(codes(b"RCPT TO:<>"), "501 5.1.3");
}

#[test]
fn verb_names_are_reported_for_logs() {
    assert_eq!(ok("mail from:<>").verb(), "MAIL");
    assert_eq!(ok("starttls").verb(), "STARTTLS");
    assert_eq!(ok("BDAT 1 LAST").verb(), "BDAT");
}
