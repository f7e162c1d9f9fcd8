//! MAIL and RCPT parameters: typed ones, xtext, unknown ones, and abuse.

use super::{codes, err, ok};
use crate::smtp::inbound::command::{
    Body, Command, CommandError, MailParams, RcptParams, decode_xtext,
};

/// The parameters of a MAIL line that must parse.
fn mail(line: &str) -> MailParams {
    match ok(line) {
        Command::Mail { params, .. } => params,
        other => panic!("{line:?} gave {other:?}"),
    }
}

/// The parameters of a RCPT line that must parse.
fn rcpt(line: &str) -> RcptParams {
    match ok(line) {
        Command::Rcpt { params, .. } => params,
        other => panic!("{line:?} gave {other:?}"),
    }
}

#[test]
fn no_parameters_gives_defaults() {
    assert_eq!(mail("MAIL FROM:<a@b.example>"), MailParams::default());
    assert_eq!(mail("MAIL FROM:<a@b.example>   "), MailParams::default());
}

#[test]
fn size_body_smtputf8_and_auth_are_decoded_with_any_keyword_case() {
    let p = mail("MAIL FROM:<a@b.example> size=4096 Body=8bitmime SMTPUTF8 auth=a+2Bb@b.example");
    assert_eq!(p.size, Some(4096));
    assert_eq!(p.body, Some(Body::EightBitMime));
    assert!(p.smtputf8);
    assert_eq!(p.auth.as_deref(), Some("a+b@b.example"));
    assert!(p.other.is_empty());
    assert_eq!(mail("MAIL FROM:<> BODY=7BIT").body, Some(Body::SevenBit));
    assert_eq!(
        mail("MAIL FROM:<> BODY=BINARYMIME").body,
        Some(Body::BinaryMime)
    );
    assert_eq!(mail("MAIL FROM:<> AUTH=<>").auth.as_deref(), Some("<>"));
    assert_eq!(
        mail("MAIL FROM:<> SIZE=18446744073709551615").size,
        Some(u64::MAX)
    );
}

#[test]
fn several_blanks_between_parameters_are_fine() {
    let p = mail("MAIL FROM:<a@b.example>  SIZE=1 \t BODY=7BIT");
    assert_eq!((p.size, p.body), (Some(1), Some(Body::SevenBit)));
}

#[test]
fn bad_values_of_known_parameters_are_a_501() {
    for line in [
        "MAIL FROM:<> SIZE=",
        "MAIL FROM:<> SIZE",
        "MAIL FROM:<> SIZE=-1",
        "MAIL FROM:<> SIZE=1e6",
        "MAIL FROM:<> SIZE=18446744073709551616",
        "MAIL FROM:<> SIZE=000000000000000000001",
        "MAIL FROM:<> BODY=8BIT",
        "MAIL FROM:<> BODY",
        "MAIL FROM:<> SMTPUTF8=yes",
        "MAIL FROM:<> AUTH",
        "MAIL FROM:<> AUTH=a+2",
        "MAIL FROM:<> AUTH=a+ZZb",
        "MAIL FROM:<> AUTH=a+00b",
        "MAIL FROM:<> AUTH=a+0Db",
        "MAIL FROM:<> AUTH=a+FFb",
    ] {
        assert_eq!(codes(line.as_bytes()), "501 5.5.4", "{line}");
    }
}

#[test]
fn unknown_parameters_are_collected_with_raw_values() {
    let p = mail("MAIL FROM:<a@b.example> ret=HDRS ENVID=QQ314159+2B1 X-FLAG");
    assert_eq!(
        p.other,
        vec![
            ("RET".to_owned(), Some("HDRS".to_owned())),
            ("ENVID".to_owned(), Some("QQ314159+2B1".to_owned())),
            ("X-FLAG".to_owned(), None),
        ]
    );
    let r = rcpt("RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.example");
    assert_eq!(r.other.len(), 2);
    assert_eq!(r.other.first().map(|(k, _)| k.as_str()), Some("NOTIFY"));
}

#[test]
fn unsupported_parameters_are_refused_by_the_session_check_with_555() {
    let p = mail("MAIL FROM:<> RET=FULL");
    let e = p.check_supported(&[]).err();
    assert_eq!(e, Some(CommandError::UnsupportedParameter("RET".into())));
    let reply = e.map(|e| e.reply());
    assert_eq!(reply.as_ref().map(|r| r.code()), Some(555));
    assert_eq!(reply.and_then(|r| r.enhanced()), Some((5, 5, 4)));
    assert_eq!(p.check_supported(&["RET"]), Ok(()));
    let r = rcpt("RCPT TO:<a@b.example> NOTIFY=NEVER");
    assert!(r.check_supported(&[]).is_err());
    assert_eq!(r.check_supported(&["NOTIFY"]), Ok(()));
}

#[test]
fn malformed_parameters_are_a_501() {
    for line in [
        "MAIL FROM:<> =x",
        "MAIL FROM:<> -X=1",
        "MAIL FROM:<> X_Y=1",
        "MAIL FROM:<> X=",
        "MAIL FROM:<> X=a=b",
        "RCPT TO:<a@b.example> NOTIFY=",
        "RCPT TO:<a@b.example> ORCPT=rfc822;a=b",
    ] {
        assert_eq!(codes(line.as_bytes()), "501 5.5.4", "{line}");
    }
}

#[test]
fn duplicate_parameters_are_refused() {
    let e = err(b"MAIL FROM:<> SIZE=1 size=2");
    assert!(matches!(e, CommandError::InvalidParameter { ref keyword, .. } if keyword == "SIZE"));
    assert_eq!(codes(b"MAIL FROM:<> SMTPUTF8 SMTPUTF8"), "501 5.5.4");
    assert_eq!(
        codes(b"RCPT TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER"),
        "501 5.5.4"
    );
}

#[test]
fn too_many_parameters_are_refused() {
    let many: Vec<String> = (0..17).map(|i| format!("X{i}=1")).collect();
    let line = format!("MAIL FROM:<> {}", many.join(" "));
    assert_eq!(codes(line.as_bytes()), "501 5.5.4");
    let sixteen = format!(
        "MAIL FROM:<> {}",
        many.get(..16).unwrap_or_default().join(" ")
    );
    assert_eq!(mail(&sixteen).other.len(), 16);
}

#[test]
fn very_long_parameters_parse_or_fail_cleanly_and_replies_stay_short() {
    let key = "K".repeat(10_000);
    let line = format!("MAIL FROM:<> {key}=1");
    assert_eq!(
        mail(&line).other.first().map(|(k, _)| k.len()),
        Some(10_000)
    );
    let bad = format!("MAIL FROM:<> {key}=a=b");
    let reply = err(bad.as_bytes()).reply();
    assert!(reply.to_bytes().len() < 512);
    let size = format!("MAIL FROM:<> SIZE={}", "9".repeat(5_000));
    assert_eq!(codes(size.as_bytes()), "501 5.5.4");
    let auth = format!("MAIL FROM:<> AUTH={}", "+41".repeat(5_000));
    assert_eq!(mail(&auth).auth.map(|a| a.len()), Some(5_000));
}

#[test]
fn xtext_decodes_hex_escapes() {
    assert_eq!(decode_xtext("abc"), Ok("abc".into()));
    assert_eq!(decode_xtext("a+2Bb+3Dc"), Ok("a+b=c".into()));
    assert_eq!(decode_xtext("+C3+A9"), Ok("é".into()));
    assert_eq!(decode_xtext("+c3+a9"), Ok("é".into()));
    assert_eq!(decode_xtext(""), Ok(String::new()));
}

#[test]
fn xtext_refuses_bad_escapes_controls_and_raw_specials() {
    for text in [
        "+", "+4", "+4G", "a=b", "a b", "+00", "+0A", "+7F", "+C3", "+FF", "é",
    ] {
        assert!(decode_xtext(text).is_err(), "{text}");
    }
}
