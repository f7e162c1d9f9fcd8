//! Tests of the DATA reader and of `stuff`.
//!
//! `reader` covers the rules one by one, `smuggling` the published attack payloads, `exhaustive` every short
//! stream over the bytes that matter, and `randomized` long random streams and round trips (fixed seeds). The
//! last two compare against `oracle`, a deliberately naive model that finds the end by searching the whole
//! stream for `<CRLF>.<CRLF>`, which is easy to check by eye and shares no code with the state machine.

mod exhaustive;
mod oracle;
mod randomized;
mod reader;
mod smuggling;

use super::{DataError, DataReader, Limits, Progress};

/// No limits at all, so a test sees only the line-ending rules.
const UNLIMITED: Limits = Limits {
    max_size: 0,
    max_line: 0,
};

/// Everything observable about reading one stream: where it ended (offset in the whole stream just past the
/// terminator, and the error if refused), what was stored, and the size counted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    end: Option<(usize, Option<DataError>)>,
    out: Vec<u8>,
    size: u64,
}

impl Outcome {
    /// The message, when it was accepted.
    fn accepted(&self) -> Option<&[u8]> {
        match self.end {
            Some((_, None)) => Some(&self.out),
            _ => None,
        }
    }
}

/// Feeds `chunks` in order until the reader reports the end, as a session would.
fn read_chunks<'a>(limits: Limits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut reader = DataReader::new(limits);
    let mut out = Vec::new();
    let mut offset = 0;
    let mut end = None;
    for chunk in chunks {
        let progress = reader.feed(chunk, &mut out);
        match progress {
            Progress::NeedMore => offset += chunk.len(),
            Progress::Done { consumed } => end = Some((offset + consumed, None)),
            Progress::Rejected { consumed, error } => end = Some((offset + consumed, Some(error))),
        }
        if let Some(consumed) = progress.consumed() {
            assert!(consumed <= chunk.len(), "consumed more than was fed");
            break;
        }
    }
    Outcome {
        end,
        out,
        size: reader.size(),
    }
}

/// The stream in one piece.
fn read_whole(limits: Limits, wire: &[u8]) -> Outcome {
    read_chunks(limits, [wire])
}

/// The stream one byte at a time: every possible split point at once.
fn read_bytewise(limits: Limits, wire: &[u8]) -> Outcome {
    read_chunks(limits, wire.chunks(1))
}
