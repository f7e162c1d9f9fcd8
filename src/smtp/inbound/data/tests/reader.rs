//! The DATA rules, one behaviour per test.

use super::{
    DataError, DataReader, Limits, Outcome, Progress, UNLIMITED, read_bytewise, read_whole,
};

fn limits(max_size: u64, max_line: usize) -> Limits {
    Limits { max_size, max_line }
}

/// Asserts the stream is accepted as `message`, in one piece and byte by byte, ending at its last byte.
fn assert_accepts(limits: Limits, wire: &[u8], message: &[u8]) {
    for outcome in [read_whole(limits, wire), read_bytewise(limits, wire)] {
        assert_eq!(
            outcome.end,
            Some((wire.len(), None)),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
        assert_eq!(outcome.out, message);
        assert_eq!(outcome.size, message.len() as u64);
    }
}

/// Asserts the stream is refused with `error` at its last byte, in one piece and byte by byte.
fn assert_rejects(limits: Limits, wire: &[u8], error: DataError) -> Outcome {
    let whole = read_whole(limits, wire);
    assert_eq!(
        whole.end,
        Some((wire.len(), Some(error))),
        "{:?}",
        String::from_utf8_lossy(wire)
    );
    assert_eq!(read_bytewise(limits, wire), whole);
    whole
}

#[test]
fn plain_message_is_returned_with_crlf_line_ends_and_without_terminator() {
    assert_accepts(
        UNLIMITED,
        b"Subject: hi\r\n\r\nbody\r\n.\r\n",
        b"Subject: hi\r\n\r\nbody\r\n",
    );
}

#[test]
fn dot_as_first_line_is_an_empty_message() {
    assert_accepts(UNLIMITED, b".\r\n", b"");
}

#[test]
fn empty_first_line_then_terminator_is_a_message_of_one_empty_line() {
    assert_accepts(UNLIMITED, b"\r\n.\r\n", b"\r\n");
}

#[test]
fn leading_dot_is_removed_from_stuffed_lines() {
    assert_accepts(
        UNLIMITED,
        b"..\r\n..foo\r\n...\r\n.\r\n",
        b".\r\n.foo\r\n..\r\n",
    );
}

#[test]
fn leading_dot_before_other_text_is_removed_even_if_not_doubled() {
    // RFC 5321 §4.5.2: the first character is deleted whenever the line is more than a single period.
    assert_accepts(UNLIMITED, b".foo\r\n. \r\n.\r\n", b"foo\r\n \r\n");
}

#[test]
fn dots_inside_a_line_are_kept() {
    assert_accepts(
        UNLIMITED,
        b"a.\r\na..b\r\n .\r\n.\r\n",
        b"a.\r\na..b\r\n .\r\n",
    );
}

#[test]
fn terminator_split_at_every_byte_is_still_found() {
    assert_accepts(UNLIMITED, b"a\r\n.\r\n", b"a\r\n");
}

#[test]
fn bytes_after_the_terminator_are_left_for_the_next_command() {
    let wire = b"hello\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n";
    let mut out = Vec::new();
    let progress = DataReader::new(UNLIMITED).feed(wire, &mut out);
    assert_eq!(progress, Progress::Done { consumed: 10 });
    assert_eq!(
        &wire[10..],
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n"
    );
    assert_eq!(out, b"hello\r\n");
}

#[test]
fn consumed_counts_only_the_bytes_of_the_final_chunk() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    assert_eq!(reader.feed(b"hello\r", &mut out), Progress::NeedMore);
    assert_eq!(reader.feed(b"\n.", &mut out), Progress::NeedMore);
    assert_eq!(
        reader.feed(b"\r\nQUIT\r\n", &mut out),
        Progress::Done { consumed: 2 }
    );
}

#[test]
fn empty_chunk_needs_more() {
    let mut reader = DataReader::new(UNLIMITED);
    assert_eq!(reader.feed(b"", &mut Vec::new()), Progress::NeedMore);
}

#[test]
fn feeding_after_the_end_consumes_nothing_and_repeats_the_outcome() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    assert_eq!(
        reader.feed(b".\r\n", &mut out),
        Progress::Done { consumed: 3 }
    );
    assert_eq!(
        reader.feed(b"more\r\n.\r\n", &mut out),
        Progress::Done { consumed: 0 }
    );
    assert!(out.is_empty());

    let mut reader = DataReader::new(UNLIMITED);
    let first = reader.feed(b"a\nb\r\n.\r\n", &mut out);
    assert_eq!(
        first,
        Progress::Rejected {
            consumed: 8,
            error: DataError::BareLineFeed
        }
    );
    let again = reader.feed(b"x\r\n.\r\n", &mut out);
    assert_eq!(
        again,
        Progress::Rejected {
            consumed: 0,
            error: DataError::BareLineFeed
        }
    );
}

#[test]
fn existing_output_bytes_are_kept_and_not_counted() {
    let mut out = b"Received: from x\r\n".to_vec();
    let mut reader = DataReader::new(limits(3, 0));
    assert_eq!(
        reader.feed(b"ab\r\n.\r\n", &mut out),
        Progress::Rejected {
            consumed: 7,
            error: DataError::TooLarge
        }
    );
    let mut out = b"Received: from x\r\n".to_vec();
    let mut reader = DataReader::new(limits(4, 0));
    assert_eq!(
        reader.feed(b"ab\r\n.\r\n", &mut out),
        Progress::Done { consumed: 7 }
    );
    assert_eq!(out, b"Received: from x\r\nab\r\n");
}

#[test]
fn size_counts_unstuffed_bytes_including_line_ends() {
    let outcome = read_whole(UNLIMITED, b"..a\r\nbc\r\n.\r\n");
    assert_eq!(outcome.size, 8, ".a CRLF bc CRLF");
}

#[test]
fn bare_lf_is_refused_only_at_the_real_end() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    assert_eq!(reader.feed(b"a\nb\r\n", &mut out), Progress::NeedMore);
    assert_eq!(
        reader.feed(b"c\r\n.\r\nQUIT\r\n", &mut out),
        Progress::Rejected {
            consumed: 6,
            error: DataError::BareLineFeed
        }
    );
}

#[test]
fn bare_cr_is_refused_at_the_real_end() {
    assert_rejects(UNLIMITED, b"a\rb\r\n.\r\n", DataError::BareCarriageReturn);
}

#[test]
fn cr_at_end_of_a_chunk_waits_for_the_next_byte() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    assert_eq!(reader.feed(b"a\r", &mut out), Progress::NeedMore);
    assert_eq!(out, b"a", "the undecided <CR> must not be stored yet");
    assert_eq!(
        reader.feed(b"\n.\r\n", &mut out),
        Progress::Done { consumed: 4 }
    );
    assert_eq!(out, b"a\r\n");
}

#[test]
fn cr_cr_lf_is_one_bare_cr_then_a_line_end() {
    assert_rejects(UNLIMITED, b"a\r\r\n.\r\n", DataError::BareCarriageReturn);
}

#[test]
fn nul_byte_is_refused_at_the_real_end() {
    assert_rejects(UNLIMITED, b"a\0b\r\n.\r\n", DataError::NulByte);
    assert_rejects(UNLIMITED, b"\0\r\n.\r\n", DataError::NulByte);
}

#[test]
fn bytes_above_127_are_accepted_for_8bitmime() {
    assert_accepts(
        UNLIMITED,
        "Grüße\r\n\u{1F600}\r\n.\r\n".as_bytes(),
        "Grüße\r\n\u{1F600}\r\n".as_bytes(),
    );
}

#[test]
fn first_violation_is_the_one_reported() {
    assert_rejects(
        UNLIMITED,
        b"a\rb\nc\0\r\n.\r\n",
        DataError::BareCarriageReturn,
    );
    assert_rejects(UNLIMITED, b"a\nb\rc\0\r\n.\r\n", DataError::BareLineFeed);
    assert_rejects(
        limits(4, 0),
        b"abcdef\r\nx\ny\r\n.\r\n",
        DataError::TooLarge,
    );
}

#[test]
fn line_of_exactly_the_limit_is_accepted() {
    let mut wire = vec![b'a'; 998];
    wire.extend_from_slice(b"\r\n.\r\n");
    let message = wire[..1000].to_vec();
    assert_accepts(Limits::default(), &wire, &message);
}

#[test]
fn line_one_byte_over_the_limit_is_refused() {
    let mut wire = vec![b'a'; 999];
    wire.extend_from_slice(b"\r\nnext\r\n.\r\n");
    let outcome = assert_rejects(Limits::default(), &wire, DataError::LineTooLong);
    assert!(outcome.out.len() <= 1000);
}

#[test]
fn stuffing_dot_does_not_count_towards_line_length() {
    let mut wire = b"..".to_vec();
    wire.extend_from_slice(&[b'a'; 997]);
    wire.extend_from_slice(b"\r\n.\r\n");
    let message = wire[1..wire.len() - 3].to_vec();
    assert_eq!(message.len(), 1000);
    assert_accepts(Limits::default(), &wire, &message);
}

#[test]
fn line_limit_applies_to_every_line_not_the_total() {
    let line = [b'b'; 8];
    let wire = [&line[..], b"\r\n", &line, b"\r\n", &line, b"\r\n.\r\n"].concat();
    assert_accepts(limits(0, 10), &wire, &wire[..wire.len() - 3]);
    assert_rejects(limits(0, 9), &wire, DataError::LineTooLong);
}

#[test]
fn zero_limits_mean_unlimited() {
    let mut wire = vec![b'x'; 200_000];
    wire.extend_from_slice(b"\r\n.\r\n");
    assert_accepts(UNLIMITED, &wire, &wire[..wire.len() - 3]);
}

#[test]
fn message_of_exactly_max_size_is_accepted() {
    assert_accepts(limits(5, 0), b"abc\r\n.\r\n", b"abc\r\n");
}

#[test]
fn message_one_byte_over_max_size_is_refused_after_reading_to_the_end() {
    let outcome = assert_rejects(limits(4, 0), b"abc\r\n.\r\n", DataError::TooLarge);
    assert_eq!(outcome.size, 5);
}

#[test]
fn oversized_message_is_consumed_but_never_stored_beyond_the_limit() {
    let mut reader = DataReader::new(limits(1000, 0));
    let mut out = Vec::new();
    let line = [b"x".repeat(78), b"\r\n".to_vec()].concat();
    for _ in 0..10_000 {
        assert_eq!(reader.feed(&line, &mut out), Progress::NeedMore);
        assert!(out.len() <= 1000);
    }
    assert_eq!(reader.size(), 800_000);
    let end = reader.feed(b".\r\nQUIT\r\n", &mut out);
    assert_eq!(
        end,
        Progress::Rejected {
            consumed: 3,
            error: DataError::TooLarge
        }
    );
    assert_eq!(out.len(), 1000);
}

#[test]
fn nothing_is_stored_after_a_bare_lf_however_much_follows() {
    let mut reader = DataReader::new(UNLIMITED);
    let mut out = Vec::new();
    reader.feed(b"ok\r\nbad\n", &mut out);
    let stored = out.len();
    for _ in 0..1000 {
        reader.feed(&[b'z'; 1000], &mut out);
    }
    assert_eq!(out.len(), stored);
    assert_eq!(reader.size(), 8 + 1_000_000);
}

#[test]
fn very_long_line_without_limit_in_one_chunk_is_taken_whole() {
    let mut wire = vec![b'q'; 1 << 20];
    wire.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(read_whole(UNLIMITED, &wire).end, Some((wire.len(), None)));
}

#[test]
fn progress_reports_consumed_only_at_the_end() {
    assert_eq!(Progress::NeedMore.consumed(), None);
    assert_eq!(Progress::Done { consumed: 4 }.consumed(), Some(4));
    let rejected = Progress::Rejected {
        consumed: 9,
        error: DataError::NulByte,
    };
    assert_eq!(rejected.consumed(), Some(9));
}

#[test]
fn each_error_has_the_documented_reply() {
    assert_eq!(DataError::TooLarge.reply().code(), 552);
    assert_eq!(DataError::TooLarge.reply().enhanced(), Some((5, 3, 4)));
    for error in [DataError::BareLineFeed, DataError::BareCarriageReturn] {
        assert_eq!(error.reply().code(), 554);
        assert_eq!(error.reply().enhanced(), Some((5, 5, 2)));
    }
    for error in [DataError::NulByte, DataError::LineTooLong] {
        assert_eq!(error.reply().code(), 554);
        assert_eq!(error.reply().enhanced(), Some((5, 6, 0)));
    }
    let all = [
        DataError::BareLineFeed,
        DataError::BareCarriageReturn,
        DataError::NulByte,
        DataError::LineTooLong,
        DataError::TooLarge,
    ];
    for error in all {
        let text = error.reply().text();
        assert!(
            text.bytes().all(|b| (b' '..=b'~').contains(&b)),
            "reply text must be printable ASCII"
        );
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn default_limits_are_the_rfc_line_and_postfix_size() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_size: 10_240_000,
            max_line: 1000
        }
    );
}
