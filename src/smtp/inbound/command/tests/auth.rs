//! SASL PLAIN and LOGIN decoding, with RFC 4616 vectors and malformed input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::smtp::inbound::command::auth::MAX_AUTH_LINE;
use crate::smtp::inbound::command::{AuthError, PlainCredentials, decode_login_step, decode_plain};

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[test]
fn plain_without_authzid_decodes() {
    // RFC 4616 section 4 example: "\0tim\0tanstaaftanstaaf".
    let creds = decode_plain("AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    assert_eq!(
        creds,
        Ok(PlainCredentials {
            authzid: None,
            authcid: "tim".into(),
            password: "tanstaaftanstaaf".into()
        })
    );
}

#[test]
fn plain_with_authzid_decodes() {
    // RFC 4616 section 4 example: "Ursel\0Kurt\0xipj3plmq".
    let creds = decode_plain("VXJzZWwAS3VydAB4aXBqM3BsbXE=");
    assert_eq!(
        creds,
        Ok(PlainCredentials {
            authzid: Some("Ursel".into()),
            authcid: "Kurt".into(),
            password: "xipj3plmq".into()
        })
    );
}

#[test]
fn plain_accepts_missing_padding_and_utf8() {
    let padded = b64("\0jérôme@example.org\0pässwörd".as_bytes());
    let unpadded = padded.trim_end_matches('=');
    let creds = decode_plain(unpadded);
    assert_eq!(
        creds.as_ref().map(|c| c.authcid.as_str()),
        Ok("jérôme@example.org")
    );
    assert_eq!(creds.map(|c| c.password), Ok("pässwörd".into()));
}

#[test]
fn plain_password_may_contain_spaces_and_symbols() {
    let creds = decode_plain(&b64(b"\0alice\0 p a:s\"s\\ "));
    assert_eq!(creds.map(|c| c.password), Ok(" p a:s\"s\\ ".into()));
}

#[test]
fn plain_refuses_malformed_messages() {
    for raw in [
        &b""[..],
        b"alice",
        b"\0alice",
        b"\0alice\0",
        b"\0\0secret",
        b"\0alice\0sec\0ret",
        b"\0\0\0",
        b"\0ali\rce\0secret",
        b"\0alice\nx\0secret",
        b"ad\x01min\0alice\0secret",
        b"\0\xffalice\0secret",
        b"\0alice\0\xc3",
    ] {
        assert!(
            matches!(decode_plain(&b64(raw)), Err(AuthError::Malformed(_))),
            "{raw:?}"
        );
    }
}

#[test]
fn plain_empty_response_is_malformed() {
    assert!(matches!(decode_plain("="), Err(AuthError::Malformed(_))));
}

#[test]
fn star_cancels_both_mechanisms() {
    assert_eq!(decode_plain("*"), Err(AuthError::Cancelled));
    assert_eq!(decode_login_step("*"), Err(AuthError::Cancelled));
    let reply = AuthError::Cancelled.reply();
    assert_eq!((reply.code(), reply.enhanced()), (501, Some((5, 0, 0))));
}

#[test]
fn invalid_base64_is_refused_with_501_5_5_2() {
    for text in [
        "not base64!",
        "AHRpbQ B0",
        "A",
        "AHRpbQB0YW5zdGFhZnRhbnN0YWFm===",
        "=AAA",
        "A=AA",
        "****",
    ] {
        assert_eq!(decode_plain(text), Err(AuthError::InvalidBase64), "{text}");
        assert_eq!(
            decode_login_step(text),
            Err(AuthError::InvalidBase64),
            "{text}"
        );
    }
    let reply = AuthError::InvalidBase64.reply();
    assert_eq!((reply.code(), reply.enhanced()), (501, Some((5, 5, 2))));
}

#[test]
fn over_long_input_is_refused_before_decoding() {
    let long = "A".repeat(MAX_AUTH_LINE + 4);
    assert_eq!(decode_plain(&long), Err(AuthError::TooLong));
    assert_eq!(decode_login_step(&long), Err(AuthError::TooLong));
    let reply = AuthError::TooLong.reply();
    assert_eq!((reply.code(), reply.enhanced()), (500, Some((5, 5, 6))));
    let just_fits = b64(&[b'a'; 1536]);
    assert_eq!(just_fits.len(), MAX_AUTH_LINE);
    assert!(decode_login_step(&just_fits).is_ok());
}

#[test]
fn login_steps_decode_user_and_password() {
    assert_eq!(
        decode_login_step("YWxpY2VAZXhhbXBsZS5vcmc="),
        Ok("alice@example.org".into())
    );
    assert_eq!(decode_login_step("c2VjcmV0"), Ok("secret".into()));
}

#[test]
fn login_refuses_empty_nul_and_non_utf8_values() {
    assert!(matches!(
        decode_login_step("="),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        decode_login_step(""),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        decode_login_step(&b64(b"al\0ice")),
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        decode_login_step(&b64(b"\xff\xfe")),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn debug_output_never_shows_the_password() {
    let creds = PlainCredentials {
        authzid: None,
        authcid: "alice".into(),
        password: "hunter2".into(),
    };
    let shown = format!("{creds:?}");
    assert!(shown.contains("alice"));
    assert!(!shown.contains("hunter2"));
}

#[test]
fn malformed_reply_is_a_501_5_5_2() {
    let reply = AuthError::Malformed("empty password").reply();
    assert_eq!((reply.code(), reply.enhanced()), (501, Some((5, 5, 2))));
}
