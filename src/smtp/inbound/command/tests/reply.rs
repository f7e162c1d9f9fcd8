//! Reply formatting and the reply each parse error maps to.

use crate::smtp::inbound::command::{CommandError, Reply};

#[test]
fn single_line_reply_with_enhanced_code() {
    let reply = Reply::new(250, Some((2, 1, 0)), "Ok");
    assert_eq!(reply.to_bytes(), b"250 2.1.0 Ok\r\n");
    assert!(reply.is_positive());
    assert_eq!(reply.text(), "Ok");
}

#[test]
fn single_line_reply_without_enhanced_code() {
    assert_eq!(
        Reply::new(220, None, "mx.example ESMTP").to_bytes(),
        b"220 mx.example ESMTP\r\n"
    );
    assert!(!Reply::new(550, None, "no").is_positive());
}

#[test]
fn empty_text_leaves_no_trailing_space() {
    assert_eq!(
        Reply::new(250, Some((2, 0, 0)), "").to_bytes(),
        b"250 2.0.0\r\n"
    );
    assert_eq!(Reply::new(354, None, "").to_bytes(), b"354 \r\n");
}

#[test]
fn multiline_reply_uses_dashes_until_the_last_line() {
    let reply = Reply::multiline(
        250,
        None,
        ["mx.example", "PIPELINING", "SIZE 10240000", "8BITMIME"],
    );
    assert_eq!(
        reply.to_bytes(),
        b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
    );
    assert_eq!(reply.lines().len(), 4);
}

#[test]
fn multiline_reply_repeats_the_enhanced_code_on_every_line() {
    let reply = Reply::multiline(
        214,
        Some((2, 0, 0)),
        vec!["one".to_owned(), "two".to_owned()],
    );
    assert_eq!(reply.to_bytes(), b"214-2.0.0 one\r\n214 2.0.0 two\r\n");
}

#[test]
fn empty_multiline_reply_is_one_empty_line() {
    assert_eq!(
        Reply::multiline(250, None, Vec::<String>::new()).to_bytes(),
        b"250 \r\n"
    );
}

#[test]
fn reply_text_cannot_inject_lines_or_8bit() {
    let reply = Reply::new(501, Some((5, 5, 4)), "bad\r\n250 2.0.0 forged\0é");
    let bytes = reply.to_bytes();
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
    assert!(bytes.is_ascii());
    assert_eq!(bytes, b"501 5.5.4 bad??250 2.0.0 forged??\r\n");
}

#[test]
fn reply_lines_are_capped_below_512_octets() {
    let reply = Reply::new(500, Some((5, 5, 2)), "x".repeat(10_000));
    assert!(reply.to_bytes().len() <= 512);
}

#[test]
fn display_shows_the_wire_form() {
    let reply = Reply::multiline(250, None, ["a", "b"]);
    assert_eq!(reply.to_string(), "250-a\r\n250 b");
}

#[test]
fn each_parse_error_maps_to_its_reply_code() {
    let cases = [
        (CommandError::Unrecognized, 500, (5, 5, 2)),
        (CommandError::NulByte, 500, (5, 5, 2)),
        (CommandError::ControlCharacter, 500, (5, 5, 2)),
        (CommandError::Syntax("x"), 501, (5, 5, 4)),
        (
            CommandError::InvalidParameter {
                keyword: "SIZE".into(),
                why: "x",
            },
            501,
            (5, 5, 4),
        ),
        (
            CommandError::UnsupportedParameter("RET".into()),
            555,
            (5, 5, 4),
        ),
        (CommandError::BadSender("x"), 501, (5, 1, 7)),
        (CommandError::BadRecipient("x"), 501, (5, 1, 3)),
        (CommandError::BadAuthResponse, 501, (5, 5, 2)),
    ];
    for (error, code, enhanced) in cases {
        let reply = error.reply();
        assert_eq!(
            (reply.code(), reply.enhanced()),
            (code, Some(enhanced)),
            "{error:?}"
        );
    }
}

#[test]
fn client_chosen_words_in_error_replies_are_shortened() {
    let reply = CommandError::UnsupportedParameter("X".repeat(500)).reply();
    assert!(reply.text().len() < 80);
}
