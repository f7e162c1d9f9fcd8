//! A naive reference model of the DATA rules, for comparison with the state machine.

use super::{DataError, Limits, Outcome};

/// What reading `wire` under `limits` must produce, computed the slow and obvious way: the end is the first
/// `<CRLF>.<CRLF>` in the stream with a `<CRLF>` imagined before its start; the message is everything before
/// that dot; a dot starting a `<CRLF>`-delimited line is dropped; each remaining byte is checked in order (bare
/// `<CR>`/`<LF>`/NUL first, then size, then line length), the first failure wins and stops storage.
pub(super) fn expect(limits: Limits, wire: &[u8]) -> Outcome {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(wire);
    let Some(dot) = framed.windows(5).position(|w| w == b"\r\n.\r\n") else {
        let (out, size, _) = unstuff_and_check(limits, &framed[2..]);
        return Outcome {
            end: None,
            out,
            size,
        };
    };
    // framed[dot..dot + 2] is the CRLF ending the last line: part of the message.
    let body = &framed[2..dot + 2];
    let (out, size, error) = unstuff_and_check(limits, body);
    Outcome {
        end: Some((dot + 3, error)),
        out,
        size,
    }
}

/// Dot-unstuffs `body` and applies the rules byte by byte.
fn unstuff_and_check(limits: Limits, body: &[u8]) -> (Vec<u8>, u64, Option<DataError>) {
    let mut out = Vec::new();
    let mut size = 0u64;
    let mut line_len = 0usize;
    let mut error = None;
    let mut line_start = true;
    for (i, &byte) in body.iter().enumerate() {
        if line_start && byte == b'.' {
            line_start = false;
            continue;
        }
        line_start = false;
        let prev = i.checked_sub(1).and_then(|p| body.get(p)).copied();
        let next = body.get(i + 1).copied();
        let fault = match byte {
            b'\n' if prev != Some(b'\r') => Some(DataError::BareLineFeed),
            b'\r' if next != Some(b'\n') => Some(DataError::BareCarriageReturn),
            0 => Some(DataError::NulByte),
            _ => None,
        };
        // A trailing <CR> of an unterminated stream is still undecided; the reader has not counted it yet.
        if byte == b'\r' && next.is_none() {
            break;
        }
        if let Some(fault) = fault {
            error.get_or_insert(fault);
        }
        size += 1;
        if limits.max_size != 0 && size > limits.max_size {
            error.get_or_insert(DataError::TooLarge);
        }
        line_len += 1;
        if limits.max_line != 0 && line_len > limits.max_line {
            error.get_or_insert(DataError::LineTooLong);
        }
        if error.is_none() {
            out.push(byte);
        }
        if byte == b'\n' && prev == Some(b'\r') {
            line_len = 0;
            line_start = true;
        }
    }
    (out, size, error)
}
