//! The SMTP command-line parser, the parameter and path decoders it uses, and reply formatting.
//!
//! Asserts: `parse` never panics; an accepted line's verb is the line's first word; an accepted path printed
//! with `Display` parses back to the same mailbox; every refusal's reply, and any reply built from fuzzed
//! text, is well-formed on the wire (no line over 512 octets, no CR or LF inside a line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailctl::smtp::inbound::command::{
    self, Command, ForwardPath, MailParams, Path, PathDomain, Reply, ReversePath,
    decode_login_step, decode_plain, decode_xtext,
};
use mailctl_fuzz::check_reply;

fuzz_target!(|data: &[u8]| {
    match command::parse(data) {
        Ok(command) => accepted(data, &command),
        Err(e) => check_reply(&e.reply()),
    }
    // The same bytes as free text: an xtext value, a domain, and the text of a reply.
    let text = String::from_utf8_lossy(data);
    if let Ok(decoded) = decode_xtext(&text) {
        assert!(
            !decoded.chars().any(char::is_control),
            "xtext decoded to a control character"
        );
    }
    if let Ok(domain) = PathDomain::parse(&text) {
        canonical_domain(&domain);
    }
    let (code, enhanced) = match data {
        [a, b, c, d, ..] => (
            100 + u16::from_le_bytes([*a, *b]) % 900,
            Some((*c, u16::from(*d), u16::from(*a))),
        ),
        _ => (250, None),
    };
    check_reply(&Reply::new(code, enhanced, &*text));
    check_reply(&Reply::multiline(code, enhanced, text.split('\n')));
});

fn accepted(line: &[u8], command: &Command) {
    let first_word = line
        .trim_ascii()
        .split(|&b| b == b' ' || b == b'\t')
        .next()
        .unwrap_or_default();
    assert!(
        first_word.eq_ignore_ascii_case(command.verb().as_bytes()),
        "verb {} for a line starting {first_word:?}",
        command.verb()
    );
    match command {
        Command::Mail { from, params } => {
            if let ReversePath::Path(path) = from {
                round_trip(path);
            }
            mail_params(params);
        }
        Command::Rcpt { to, params } => {
            if let ForwardPath::Path(path) = to {
                round_trip(path);
            }
            let _ = params.check_supported(&["NOTIFY", "ORCPT"]);
            for (_, value) in &params.other {
                if let Some(v) = value {
                    let _ = decode_xtext(v);
                }
            }
        }
        Command::Ehlo(name) | Command::Helo(name) => {
            if let Ok(domain) = PathDomain::parse(name) {
                canonical_domain(&domain);
            }
        }
        Command::Auth {
            initial: Some(b64), ..
        } => {
            let _ = decode_plain(b64).map_err(|e| check_reply(&e.reply()));
            let _ = decode_login_step(b64).map_err(|e| check_reply(&e.reply()));
        }
        _ => {}
    }
}

fn mail_params(params: &MailParams) {
    if let Err(e) = params.check_supported(&["ENVID", "RET"]) {
        check_reply(&e.reply());
    }
    if let Some(auth) = &params.auth {
        assert!(
            !auth.chars().any(char::is_control),
            "AUTH= decoded to a control character"
        );
    }
    for (key, value) in &params.other {
        assert!(
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        );
        if let Some(v) = value {
            let _ = decode_xtext(v);
        }
    }
}

/// A domain the parser returned is canonical: parsing its printed form gives it back.
fn canonical_domain(domain: &PathDomain) {
    if let PathDomain::Name(name) = domain {
        assert!(
            !name.bytes().any(|b| b.is_ascii_uppercase()),
            "domain not lower-case: {name}"
        );
    }
    let again = PathDomain::parse(&domain.to_string());
    assert_eq!(
        again.as_ref(),
        Ok(domain),
        "domain {domain} does not parse back"
    );
}

/// An accepted path, printed with `Display` (re-quoting its local part when needed), is accepted again as the
/// same mailbox, so what the server logs, stores and relays names what the client sent.
fn round_trip(path: &Path) {
    canonical_domain(&path.domain);
    let line = format!("RCPT TO:<{path}>");
    match command::parse(line.as_bytes()) {
        Ok(Command::Rcpt {
            to: ForwardPath::Path(again),
            ..
        }) => {
            assert_eq!(
                again.local, path.local,
                "local part changed through {line:?}"
            );
            assert_eq!(again.domain, path.domain, "domain changed through {line:?}");
            // Printed domains are A-labels, so only a UTF-8 local part keeps the flag.
            assert_eq!(again.utf8, !path.local.is_ascii());
        }
        Ok(Command::Rcpt {
            to: ForwardPath::Postmaster,
            ..
        }) => panic!("{line:?} became <Postmaster>"),
        other => panic!("{line:?} printed from an accepted path gives {other:?}"),
    }
}
