//! The messages `bench smtp` sends: valid RFC 5322 of a chosen size, and the dot-stuffing that puts them on the
//! wire.
//!
//! Every message has From, To, Subject, Date and a unique Message-ID (so a crash test can match what the bench
//! logged as accepted with what landed in the Maildir) and a body of 76-character lines. Some body lines start
//! with a dot, so every run also exercises the server's dot-unstuffing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Characters of a full body line (without the CRLF).
pub const LINE_LEN: usize = 76;

/// Every this many body lines, one starts with a dot (and is dot-stuffed on the wire).
const DOT_EVERY: usize = 8;

/// A prefix unique to one bench run, so Message-IDs never repeat across runs (a crash test runs several).
pub fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}.{:x}", nanos, std::process::id())
}

/// The Message-ID (with angle brackets) of message `seq` of the run tagged `tag`, in `domain`.
pub fn message_id(tag: &str, seq: u64, domain: &str) -> String {
    format!("<bench.{tag}.{seq}@{domain}>")
}

/// What goes into one message.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Envelope and header sender.
    pub from: &'a str,
    /// Envelope and header recipient.
    pub to: &'a str,
    /// Message-ID header value, with angle brackets.
    pub message_id: &'a str,
    /// Sequence number, shown in the Subject.
    pub seq: u64,
    /// Wanted size in bytes (headers, blank line and body, CRLF line endings, before dot-stuffing).
    pub size: usize,
}

/// One message as RFC 5322 text with CRLF line endings, `spec.size` bytes long (a message that cannot be that
/// small, because the headers alone are bigger, gets the headers and a one-line body; and a size that would leave
/// a final line of one or two bytes comes out up to two bytes longer, as a line needs its CRLF).
pub fn build(spec: &Spec<'_>) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    let headers = format!(
        "From: mailctl bench <{}>\r\nTo: <{}>\r\nSubject: mailctl bench message {}\r\nDate: {date}\r\n\
         Message-ID: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        spec.from, spec.to, spec.seq, spec.message_id
    );
    let mut out = Vec::with_capacity(spec.size.max(headers.len()) + LINE_LEN + 2);
    out.extend_from_slice(headers.as_bytes());
    let mut left = spec.size.saturating_sub(headers.len()).max(3);
    let mut line_no = 0usize;
    while left > 0 {
        let len = if left >= LINE_LEN + 2 {
            LINE_LEN
        } else {
            left.saturating_sub(2).max(1)
        };
        body_line(&mut out, line_no, len);
        left = left.saturating_sub(len + 2);
        line_no += 1;
    }
    out
}

/// Appends body line `line_no` of `len` characters and its CRLF: printable ASCII, a leading dot every
/// [`DOT_EVERY`] lines.
fn body_line(out: &mut Vec<u8>, line_no: usize, len: usize) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    for i in 0..len {
        let c = if i == 0 && line_no % DOT_EVERY == DOT_EVERY - 1 {
            b'.'
        } else if i == 0 {
            b'L'
        } else {
            ALPHABET[(line_no * 7 + i) % ALPHABET.len()]
        };
        out.push(c);
    }
    out.extend_from_slice(b"\r\n");
}

/// `message` (CRLF lines) as the DATA payload: every line starting with a dot gets one more (RFC 5321 4.5.2),
/// a missing final CRLF is added, and the `.` CRLF terminator follows.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: usize, seq: u64) -> (String, usize, u64) {
        (message_id("t", seq, "bench.test"), size, seq)
    }

    fn make(size: usize, seq: u64) -> Vec<u8> {
        let (id, size, seq) = spec(size, seq);
        build(&Spec {
            from: "bench@bench.test",
            to: "alice@example.test",
            message_id: &id,
            seq,
            size,
        })
    }

    fn lines(m: &[u8]) -> Vec<&[u8]> {
        let mut v: Vec<&[u8]> = m.split(|&b| b == b'\n').collect();
        assert_eq!(
            v.pop(),
            Some(&b""[..]),
            "message must end with a line ending"
        );
        v
    }

    #[test]
    fn size_is_exact_for_any_size_above_the_headers() {
        for size in (400..5000).step_by(7) {
            let m = make(size, 3);
            assert!(
                m.len() == size || m.len() <= size + 2,
                "size {size}: got {}",
                m.len()
            );
            assert!(m.len() >= size);
        }
        assert_eq!(make(4096, 1).len(), 4096);
        assert_eq!(make(1 << 20, 1).len(), 1 << 20);
    }

    #[test]
    fn tiny_sizes_still_make_a_valid_message() {
        let m = make(10, 1);
        let text = String::from_utf8(m).unwrap();
        assert!(text.contains("\r\n\r\n"));
        assert!(text.ends_with("\r\n"));
        assert!(!text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn every_line_ends_in_crlf_and_body_lines_are_76_characters() {
        let m = make(20_000, 9);
        let all = lines(&m);
        assert!(all.iter().all(|l| l.ends_with(b"\r")), "bare LF found");
        assert!(!m.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
        let blank = all.iter().position(|l| *l == b"\r").unwrap();
        let body = &all[blank + 1..];
        assert!(body.len() > 200);
        for l in &body[..body.len() - 1] {
            assert_eq!(l.len(), LINE_LEN + 1);
        }
        assert!(body.iter().any(|l| l.starts_with(b".")));
        assert!(
            m.iter()
                .all(|&b| b == b'\r' || b == b'\n' || (32..127).contains(&b))
        );
    }

    #[test]
    fn headers_name_the_message() {
        let text = String::from_utf8(make(4096, 42)).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        for h in [
            "From: mailctl bench <bench@bench.test>",
            "To: <alice@example.test>",
            "Subject: mailctl bench message 42",
            "Date: ",
            "Message-ID: <bench.t.42@bench.test>",
        ] {
            assert!(head.contains(h), "missing {h}: {head}");
        }
    }

    #[test]
    fn message_ids_are_unique_per_sequence_and_run() {
        let tag = run_tag();
        assert_ne!(message_id(&tag, 1, "d"), message_id(&tag, 2, "d"));
        assert!(message_id(&tag, 1, "d").starts_with("<bench."));
        assert!(message_id(&tag, 1, "d").ends_with("@d>"));
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b"mid.dot\r\n"), b"mid.dot\r\n.\r\n");
    }

    #[test]
    fn stuffed_message_unstuffs_to_the_original() {
        let m = make(8192, 5);
        let wire = dot_stuff(&m);
        let mut back = Vec::new();
        for line in lines(&wire) {
            if line == b".\r" {
                break;
            }
            let line = line.strip_prefix(b".").unwrap_or(line);
            back.extend_from_slice(line);
            back.push(b'\n');
        }
        assert_eq!(back, m);
    }
}
