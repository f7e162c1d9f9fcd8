//! Randomized tests with fixed seeds: long hostile streams in random chunkings against the oracle, and
//! `stuff` followed by reading as a round trip.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::super::stuff;
use super::{Limits, UNLIMITED, oracle, read_chunks, read_whole};

/// Splits `wire` into chunks of random sizes, biased towards tiny ones so that line ends, dots and limits
/// land on chunk boundaries often.
fn random_chunks<'a>(rng: &mut StdRng, wire: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let max = if rng.gen_bool(0.7) { 4 } else { 300 };
        let (chunk, tail) = rest.split_at(rng.gen_range(1..=max).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// A random byte, mostly from the ones that shape lines.
fn hostile_byte(rng: &mut StdRng) -> u8 {
    match rng.gen_range(0..10) {
        0..=1 => b'\r',
        2..=3 => b'\n',
        4..=5 => b'.',
        6 => 0,
        _ => rng.r#gen(),
    }
}

/// A random CRLF-normalized message (no bare CR/LF, no NUL) that is empty or ends in CRLF, rich in lines
/// that start with dots and in lines that look like terminators once stuffing is forgotten.
fn random_message(rng: &mut StdRng) -> Vec<u8> {
    let mut message = Vec::new();
    for _ in 0..rng.gen_range(0..40) {
        match rng.gen_range(0..6) {
            0 => {}
            1 => message.push(b'.'),
            2 => message.extend_from_slice(b".."),
            3 => message.extend_from_slice(b". "),
            _ => {
                for _ in 0..rng.gen_range(0..120) {
                    let byte = match rng.gen_range(0..4) {
                        0 => b'.',
                        _ => rng.gen_range(1..=255),
                    };
                    if byte != b'\r' && byte != b'\n' {
                        message.push(byte);
                    }
                }
            }
        }
        message.extend_from_slice(b"\r\n");
    }
    message
}

#[test]
fn stuffed_messages_read_back_unchanged_in_any_chunking() {
    let mut rng = StdRng::seed_from_u64(0x5375_6666);
    for _ in 0..2000 {
        let message = random_message(&mut rng);
        let wire = [
            stuff(&message),
            b"MAIL FROM:<next@example.test>\r\n".to_vec(),
        ]
        .concat();
        let stuffed_len = wire.len() - 31;
        for chunks in [vec![wire.as_slice()], random_chunks(&mut rng, &wire)] {
            let outcome = read_chunks(UNLIMITED, chunks);
            assert_eq!(outcome.end, Some((stuffed_len, None)), "{message:?}");
            assert_eq!(outcome.out, message);
            assert_eq!(outcome.size, message.len() as u64);
        }
    }
}

#[test]
fn stuffed_messages_respect_limits_exactly() {
    let mut rng = StdRng::seed_from_u64(0x4c69_6d69);
    for _ in 0..1000 {
        let message = random_message(&mut rng);
        let longest = message
            .split(|&b| b == b'\n')
            .map(|l| l.len() + 1)
            .max()
            .unwrap_or(0);
        let size = message.len() as u64;
        let wire = stuff(&message);
        let fits = Limits {
            max_size: size.max(1),
            max_line: longest.max(1),
        };
        assert_eq!(
            read_chunks(fits, random_chunks(&mut rng, &wire)).accepted(),
            Some(&message[..])
        );
        if size > 0 {
            let small = Limits {
                max_size: size - 1,
                max_line: 0,
            };
            assert!(
                read_chunks(small, random_chunks(&mut rng, &wire))
                    .accepted()
                    .is_none()
            );
        }
    }
}

#[test]
fn hostile_streams_in_random_chunks_match_the_oracle() {
    let mut rng = StdRng::seed_from_u64(0x4861_7374);
    for round in 0..3000 {
        let len = rng.gen_range(0..400);
        let mut wire: Vec<u8> = (0..len).map(|_| hostile_byte(&mut rng)).collect();
        if round % 2 == 0 {
            wire.extend_from_slice(b"\r\n.\r\nRSET\r\n");
        }
        let limits = match round % 4 {
            0 => UNLIMITED,
            1 => Limits {
                max_size: rng.gen_range(0..50),
                max_line: 0,
            },
            2 => Limits {
                max_size: 0,
                max_line: rng.gen_range(0..20),
            },
            _ => Limits {
                max_size: rng.gen_range(0..300),
                max_line: rng.gen_range(0..40),
            },
        };
        let expected = oracle::expect(limits, &wire);
        assert_eq!(read_whole(limits, &wire), expected, "{wire:?} {limits:?}");
        let chunks = random_chunks(&mut rng, &wire);
        assert_eq!(read_chunks(limits, chunks), expected, "{wire:?} {limits:?}");
    }
}

#[test]
fn stuff_turns_bare_line_ends_into_crlf_so_the_output_is_always_readable() {
    let mut rng = StdRng::seed_from_u64(0x4261_7265);
    for _ in 0..2000 {
        let len = rng.gen_range(0..200);
        let message: Vec<u8> = (0..len)
            .map(|_| hostile_byte(&mut rng))
            .filter(|&b| b != 0)
            .collect();
        let wire = stuff(&message);
        let outcome = read_chunks(UNLIMITED, random_chunks(&mut rng, &wire));
        assert_eq!(outcome.end, Some((wire.len(), None)), "{message:?}");
    }
}

#[test]
fn stuff_examples() {
    assert_eq!(stuff(b""), b".\r\n");
    assert_eq!(stuff(b"a"), b"a\r\n.\r\n");
    assert_eq!(stuff(b"a\r\n"), b"a\r\n.\r\n");
    assert_eq!(stuff(b".\r\n..x\r\n"), b"..\r\n...x\r\n.\r\n");
    assert_eq!(stuff(b"a\n.\n"), b"a\r\n..\r\n.\r\n");
    assert_eq!(stuff(b"a\r.\r"), b"a\r\n..\r\n.\r\n");
    assert_eq!(stuff(b"a\r\r\nb"), b"a\r\n\r\nb\r\n.\r\n");
    assert_eq!(stuff(b"x.y\r\n"), b"x.y\r\n.\r\n");
}
