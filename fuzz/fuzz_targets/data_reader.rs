//! The DATA-phase reader, fed in fuzzer-chosen chunks under fuzzer-chosen limits.
//!
//! Input layout: byte 0 picks the limits and the mode, bytes 1-2 seed the chunk sizes, the rest is the stream.
//! Raw mode feeds the stream as a client would send it; stuff mode feeds `stuff(rest)` followed by a pipelined
//! command. Asserted against a straightforward model of the rules in `src/smtp/inbound/data/mod.rs`:
//!
//! - the data ends exactly at the first `<CRLF>.<CRLF>` (or at `.<CRLF>` as the very first line), and
//!   `consumed` says so, never more than the chunk; without a terminator the reader always asks for more;
//! - the outcome does not depend on the chunking (compared with the stream fed in one piece);
//! - a `Done` message is the dot-unstuffed text with `<CRLF>` line ends and no bare CR, bare LF or NUL, within
//!   both limits; a message with none of those faults is `Done`, one with any of them `Rejected` with an error
//!   that names a fault actually present;
//! - `stuff(msg)` read back gives `msg` with its line ends normalized, for every chunking;
//! - bytes already in the output buffer are left alone, and after the end the reader consumes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailctl::smtp::inbound::data::{DataError, DataReader, Limits, Progress, stuff};

const MAX_LINES: [usize; 8] = [0, 1, 2, 3, 5, 10, 80, Limits::RFC_MAX_LINE];
const MAX_SIZES: [u64; 8] = [0, 1, 3, 10, 100, 1000, Limits::DEFAULT_MAX_SIZE, u64::MAX];
/// Already in the output buffer before the message, as the session's `Received:` header is.
const HEADER: &[u8] = b"Received: from fuzz\r\n";
/// A command pipelined after the data, which must stay with the session.
const PIPELINED: &[u8] = b"QUIT\r\n";

fuzz_target!(|data: &[u8]| {
    let [mode, s1, s2, rest @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_line: MAX_LINES[usize::from(mode & 7)],
        max_size: MAX_SIZES[usize::from((mode >> 3) & 7)],
    };
    let chunks = Chunker::new(*s1, *s2);
    if mode & 0x80 == 0 {
        raw(rest, limits, chunks);
    } else {
        stuffed(rest, limits, chunks);
    }
});

/// Chunk sizes from a small xorshift generator: 1 byte at a time, up to a cap, or (cap 0) everything at once.
#[derive(Clone, Copy)]
struct Chunker {
    state: u32,
    cap: usize,
}

impl Chunker {
    fn new(a: u8, b: u8) -> Self {
        let cap = match a % 4 {
            0 => 1,
            1 => 4,
            2 => 64,
            _ => 0,
        };
        Chunker {
            state: u32::from(a) << 8 | u32::from(b) | 0x1_0000,
            cap,
        }
    }

    fn next(&mut self, left: usize) -> usize {
        if self.cap == 0 {
            return left;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        (self.state as usize % self.cap + 1).min(left)
    }
}

/// What one DATA phase came to: where it ended in the stream, the outcome and the message bytes.
#[derive(Debug, PartialEq)]
struct Run {
    end: Option<usize>,
    error: Option<DataError>,
    out: Vec<u8>,
    size: u64,
}

/// Feeds `stream` in chunks and checks the per-call guarantees.
fn feed(stream: &[u8], limits: Limits, mut chunks: Chunker) -> Run {
    let mut reader = DataReader::new(limits);
    let mut out = HEADER.to_vec();
    let mut pos = 0;
    let mut end = None;
    let mut error = None;
    while pos < stream.len() {
        let chunk = &stream[pos..pos + chunks.next(stream.len() - pos)];
        let progress = reader.feed(chunk, &mut out);
        match progress {
            Progress::NeedMore => pos += chunk.len(),
            Progress::Done { consumed } | Progress::Rejected { consumed, .. } => {
                assert!(
                    consumed <= chunk.len(),
                    "consumed {consumed} of a {}-byte chunk",
                    chunk.len()
                );
                assert!(
                    consumed > 0,
                    "the end cannot be reached without consuming a byte"
                );
                end = Some(pos + consumed);
                if let Progress::Rejected { error: e, .. } = progress {
                    error = Some(e);
                }
                // Finished: nothing more is consumed and the outcome repeats.
                let again = reader.feed(PIPELINED, &mut out);
                assert_eq!(again.consumed(), Some(0));
                assert_eq!(
                    again,
                    match progress {
                        Progress::Done { .. } => Progress::Done { consumed: 0 },
                        _ => Progress::Rejected {
                            consumed: 0,
                            error: error.unwrap()
                        },
                    }
                );
                break;
            }
        }
    }
    assert!(
        out.starts_with(HEADER),
        "bytes already in the buffer were changed"
    );
    out.drain(..HEADER.len());
    Run {
        end,
        error,
        out,
        size: reader.size(),
    }
}

/// Where the data phase must end: after `.<CRLF>` as the first line, else after the first `<CRLF>.<CRLF>`.
fn expected_end(stream: &[u8]) -> Option<usize> {
    if stream.starts_with(b".\r\n") {
        return Some(3);
    }
    stream
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|i| i + 5)
}

/// The faults of a message body (the bytes before the terminator's `.<CRLF>`) and, when it has no bare CR or
/// LF, its dot-unstuffed text.
struct Model {
    bare_cr: bool,
    bare_lf: bool,
    nul: bool,
    unstuffed: Vec<u8>,
    /// Longest line, counted as the reader counts: CRLF included, stuffing dot excluded.
    longest_line: usize,
}

fn model(body: &[u8]) -> Model {
    let bare_cr = body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && body.get(i + 1) != Some(&b'\n'));
    let bare_lf = body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'));
    let mut unstuffed = Vec::with_capacity(body.len());
    let mut longest_line = 0;
    if !body.is_empty() {
        // Without bare CR/LF the body is whole lines, each ending with CRLF.
        for line in body.split_inclusive(|&b| b == b'\n') {
            let line = line.strip_prefix(b".").unwrap_or(line);
            longest_line = longest_line.max(line.len());
            unstuffed.extend_from_slice(line);
        }
    }
    Model {
        bare_cr,
        bare_lf,
        nul: body.contains(&0),
        unstuffed,
        longest_line,
    }
}

fn within(limits: Limits, len: usize, longest_line: usize) -> bool {
    (limits.max_size == 0 || len as u64 <= limits.max_size)
        && (limits.max_line == 0 || longest_line <= limits.max_line)
}

fn raw(stream: &[u8], limits: Limits, chunks: Chunker) {
    let run = feed(stream, limits, chunks);
    let whole = feed(stream, limits, Chunker::new(3, 0));
    assert_eq!(run, whole, "the outcome depends on the chunking");
    assert_eq!(
        run.end,
        expected_end(stream),
        "the data ended in the wrong place"
    );
    let Some(end) = run.end else {
        return;
    };
    let body = &stream[..end - 3];
    let m = model(body);
    let clean =
        !m.bare_cr && !m.bare_lf && !m.nul && within(limits, m.unstuffed.len(), m.longest_line);
    match run.error {
        None => {
            assert!(clean, "accepted a faulty message");
            assert_eq!(
                run.out, m.unstuffed,
                "the message is not the unstuffed data"
            );
            assert_eq!(run.size, run.out.len() as u64);
            assert!(run.out.is_empty() || run.out.ends_with(b"\r\n"));
        }
        Some(error) => {
            assert!(!clean, "rejected a clean message with {error:?}");
            let justified = match error {
                DataError::BareCarriageReturn => m.bare_cr,
                DataError::BareLineFeed => m.bare_lf,
                DataError::NulByte => m.nul,
                DataError::TooLarge => limits.max_size != 0,
                DataError::LineTooLong => limits.max_line != 0,
            };
            assert!(justified, "{error:?} for a message without that fault");
            assert!(run.size >= run.out.len() as u64);
        }
    }
}

/// `msg` with every line end (`<CRLF>`, bare CR, bare LF) made `<CRLF>` and a final one added, as `stuff` does.
fn normalized(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    let mut i = 0;
    while i < msg.len() {
        match msg[i] {
            b'\r' if msg.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn stuffed(msg: &[u8], limits: Limits, chunks: Chunker) {
    let encoded = stuff(msg);
    let mut stream = encoded.clone();
    stream.extend_from_slice(PIPELINED);
    let run = feed(&stream, limits, chunks);
    assert_eq!(
        run.end,
        Some(encoded.len()),
        "stuff() output did not end where it should"
    );
    let expected = normalized(msg);
    let longest = expected
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    let acceptable = !expected.contains(&0) && within(limits, expected.len(), longest);
    match run.error {
        None => {
            assert!(acceptable, "accepted a faulty message");
            assert_eq!(run.out, expected, "stuff() did not round-trip");
        }
        Some(error) => {
            assert!(!acceptable, "stuff() output rejected with {error:?}");
            assert!(
                matches!(
                    error,
                    DataError::NulByte | DataError::TooLarge | DataError::LineTooLong
                ),
                "stuff() output has {error:?}"
            );
        }
    }
}
