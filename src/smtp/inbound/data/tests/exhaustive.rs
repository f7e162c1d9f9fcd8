//! Every short stream over the bytes that shape lines, against the oracle.
//!
//! Streams of up to seven bytes over `<CR>`, `<LF>`, `.`, NUL and a letter cover every arrangement of the
//! smuggling ingredients, including all the published ones, at the start of data and after any prefix. Each is
//! followed by a real terminator and a pipelined command, read whole and byte by byte, with and without tight
//! limits.

use super::{Limits, UNLIMITED, oracle, read_bytewise, read_whole};

const ALPHABET: [u8; 5] = [b'\r', b'\n', b'.', 0, b'a'];
const MAX_LEN: u32 = 7;

/// Calls `check` with every string over [`ALPHABET`] of length 0 to [`MAX_LEN`].
fn for_every_stream(mut check: impl FnMut(&[u8])) {
    let mut stream = Vec::new();
    for len in 0..=MAX_LEN {
        for mut index in 0..ALPHABET.len().pow(len) {
            stream.clear();
            for _ in 0..len {
                stream.push(ALPHABET[index % ALPHABET.len()]);
                index /= ALPHABET.len();
            }
            check(&stream);
        }
    }
}

fn framed(stream: &[u8]) -> Vec<u8> {
    [stream, b"\r\n.\r\nQUIT\r\n"].concat()
}

#[test]
fn every_short_stream_ends_exactly_where_the_oracle_says() {
    for_every_stream(|stream| {
        let wire = framed(stream);
        let expected = oracle::expect(UNLIMITED, &wire);
        assert_eq!(read_whole(UNLIMITED, &wire), expected, "{stream:?}");
        assert!(expected.end.is_some());
    });
}

#[test]
fn every_short_stream_read_bytewise_matches_the_oracle() {
    for_every_stream(|stream| {
        let wire = framed(stream);
        assert_eq!(
            read_bytewise(UNLIMITED, &wire),
            oracle::expect(UNLIMITED, &wire),
            "{stream:?}"
        );
    });
}

#[test]
fn every_short_stream_under_tight_limits_matches_the_oracle() {
    let tight = [
        Limits {
            max_size: 3,
            max_line: 0,
        },
        Limits {
            max_size: 0,
            max_line: 3,
        },
        Limits {
            max_size: 6,
            max_line: 4,
        },
    ];
    for_every_stream(|stream| {
        let wire = framed(stream);
        for limits in tight {
            let expected = oracle::expect(limits, &wire);
            assert_eq!(read_whole(limits, &wire), expected, "{stream:?} {limits:?}");
            assert_eq!(
                read_bytewise(limits, &wire),
                expected,
                "{stream:?} {limits:?}"
            );
        }
    });
}

#[test]
fn no_short_stream_without_a_real_terminator_ever_ends() {
    for_every_stream(|stream| {
        let framed_stream = [b"\r\n", stream].concat();
        if framed_stream.windows(5).any(|w| w == b"\r\n.\r\n") {
            return;
        }
        assert_eq!(read_whole(UNLIMITED, stream).end, None, "{stream:?}");
        assert_eq!(read_bytewise(UNLIMITED, stream).end, None, "{stream:?}");
    });
}
