//! SMTP smuggling (CVE-2023-51764, -51765, -51766 class): the published fake end-of-data sequences.
//!
//! Each payload is placed the way SEC Consult's write-up and their `smtp_smuggling_scanner.py` place it: a
//! first message, the fake terminator, then a complete second transaction (`MAIL`, `RCPT`, `DATA`, a forged
//! message) and the real `<CRLF>.<CRLF>`, followed by the client's next pipelined command. The reader must see
//! exactly one message, end it only at the real terminator, refuse it, and leave only the genuine next command.

use super::{
    DataError, DataReader, Outcome, Progress, UNLIMITED, oracle, read_bytewise, read_chunks,
    read_whole,
};

/// Every fake end-of-data sequence from the scanner's inbound and outbound lists, the Postfix and Sendmail
/// advisories, plus the mirror images, each with the first violation it contains.
const PAYLOADS: &[(&[u8], DataError)] = &[
    (b"\n.\n", DataError::BareLineFeed),
    (b"\n.\r\n", DataError::BareLineFeed),
    (b"\n.\r", DataError::BareLineFeed),
    (b"\r.\n", DataError::BareCarriageReturn),
    (b"\r.\r", DataError::BareCarriageReturn),
    (b"\r.\r\n", DataError::BareCarriageReturn),
    (b"\r\n.\n", DataError::BareLineFeed),
    (b"\r\n.\r", DataError::BareCarriageReturn),
    (b"\r\n.\r\r\n", DataError::BareCarriageReturn),
    (b"\r\r\n.\r\r\n", DataError::BareCarriageReturn),
    (b"\r\n\x00.\r\n", DataError::NulByte),
    (b"\r\n.\x00\r\n", DataError::NulByte),
    (b"\n\n.\n\n", DataError::BareLineFeed),
    (b"\r\r.\r\r", DataError::BareCarriageReturn),
    (b"\n\r.\r\n", DataError::BareLineFeed),
    (b"\r\n\n.\r\n", DataError::BareLineFeed),
];

const FIRST: &[u8] = b"From: attacker@sender.test\r\nTo: victim@example.test\r\nSubject: hello\r\n\r\nnothing to see";

const SMUGGLED: &[u8] =
    b"mail FROM:<ceo@example.test>\r\nrcpt TO:<victim@example.test>\r\ndata\r\n\
From: ceo@example.test\r\nTo: victim@example.test\r\nSubject: urgent\r\n\r\npay now\r\n";

const NEXT_COMMAND: &[u8] = b"QUIT\r\n";

/// The scanner's shape: the payload sits between two real line ends.
fn between_lines(payload: &[u8]) -> Vec<u8> {
    [FIRST, b"\r\n", payload, b"\r\n", SMUGGLED, b".\r\n"].concat()
}

/// The raw shape: the payload directly follows text and directly precedes the smuggled commands.
fn inline(payload: &[u8]) -> Vec<u8> {
    [FIRST, payload, SMUGGLED, b".\r\n"].concat()
}

/// Asserts the one-message, refused-at-the-real-end outcome for one attempt, however it is chunked.
fn assert_one_refused_message(attempt: &[u8], error: DataError) {
    let wire = [attempt, NEXT_COMMAND].concat();
    let shown = String::from_utf8_lossy(attempt).into_owned();
    let whole = read_whole(UNLIMITED, &wire);
    assert_eq!(whole.end, Some((attempt.len(), Some(error))), "{shown:?}");
    assert_eq!(whole, oracle::expect(UNLIMITED, &wire), "{shown:?}");
    assert_eq!(read_bytewise(UNLIMITED, &wire), whole, "{shown:?}");
    for split in 0..=wire.len() {
        let (a, b) = wire.split_at(split);
        assert_eq!(
            read_chunks(UNLIMITED, [a, b]),
            whole,
            "{shown:?} split at {split}"
        );
    }
}

#[test]
fn published_fake_terminators_between_lines_never_end_the_data() {
    for &(payload, error) in PAYLOADS {
        assert_one_refused_message(&between_lines(payload), error);
    }
}

#[test]
fn published_fake_terminators_inline_never_end_the_data() {
    for &(payload, error) in PAYLOADS {
        assert_one_refused_message(&inline(payload), error);
    }
}

#[test]
fn two_fake_terminators_in_one_message_still_give_one_message() {
    let attempt = [FIRST, b"\n.\n", SMUGGLED, b"\r.\r", SMUGGLED, b".\r\n"].concat();
    assert_one_refused_message(&attempt, DataError::BareLineFeed);
}

#[test]
fn the_smuggled_commands_are_never_left_for_the_command_parser() {
    for &(payload, _) in PAYLOADS {
        let wire = [between_lines(payload), NEXT_COMMAND.to_vec()].concat();
        let mut reader = DataReader::new(UNLIMITED);
        let mut out = Vec::new();
        let consumed = reader.feed(&wire, &mut out).consumed();
        let rest = consumed.and_then(|c| wire.get(c..));
        assert_eq!(rest, Some(NEXT_COMMAND));
    }
}

#[test]
fn fake_terminator_at_the_very_start_is_not_an_end() {
    for &(payload, error) in PAYLOADS {
        // The start of data counts as a line start, so this is where a lax reader is easiest to fool.
        let attempt = [payload, SMUGGLED, b".\r\n"].concat();
        let expected = oracle::expect(UNLIMITED, &attempt);
        assert_eq!(read_whole(UNLIMITED, &attempt), expected);
        assert_eq!(expected.end, Some((attempt.len(), Some(error))));
    }
}

#[test]
fn lf_dot_crlf_inside_a_message_is_text_not_an_end_or_a_stuffed_line() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    assert_eq!(reader.feed(b"a\n.\r\n", &mut out), Progress::NeedMore);
    assert_eq!(out, b"a", "nothing after the bare LF is stored");
}

#[test]
fn crlf_dot_cr_followed_by_text_is_not_an_end() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    assert_eq!(
        reader.feed(b"a\r\n.\rMAIL FROM:<x@y>\r\n", &mut out),
        Progress::NeedMore
    );
    let end = reader.feed(b".\r\n", &mut out);
    assert_eq!(
        end,
        Progress::Rejected {
            consumed: 3,
            error: DataError::BareCarriageReturn
        }
    );
}

#[test]
fn real_terminator_right_after_a_bare_cr_line_still_ends_the_data() {
    // "<CR>.<CRLF>" is no end, but the <CRLF> in it is a real line end, so a following ".<CRLF>" is.
    let outcome: Outcome = read_whole(UNLIMITED, b"a\r.\r\n.\r\nQUIT\r\n");
    assert_eq!(outcome.end, Some((8, Some(DataError::BareCarriageReturn))));
}
