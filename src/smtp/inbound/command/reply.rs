//! SMTP replies as they go on the wire.
//!
//! A [`Reply`] is the one value every stage returns instead of writing to the socket, so the protocol can be tested
//! without sockets and pipelined replies can be batched. Its text is sanitized when the reply is built: reply text
//! often quotes what the client sent (a parameter name, a mechanism), and a CR or LF smuggled through it would let a
//! client forge extra reply lines.

use std::fmt;

/// The longest text kept on one reply line. RFC 5321 4.5.3.1.5 caps a reply line at 512 octets including the code,
/// the enhanced code and CRLF; 480 leaves room for all of them.
const MAX_LINE_TEXT: usize = 480;

/// One SMTP reply: a three-digit code, an optional RFC 3463 enhanced status code, and one or more lines of text.
///
/// Built once by the stage that decides the outcome and turned into bytes by [`Reply::to_bytes`]; the fields are
/// private so that every reply in existence has passed through the sanitizing constructors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<(u8, u16, u16)>,
    lines: Vec<String>,
}

impl Reply {
    /// A single-line reply, e.g. `Reply::new(250, Some((2, 1, 0)), "Ok")` for `250 2.1.0 Ok`.
    ///
    /// `code` is expected to be a valid reply code (200..=599) chosen by the program, never by the client. Control
    /// characters and non-ASCII in `text` become `?`, and over-long text is cut, so the reply is always one line.
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl AsRef<str>) -> Self {
        Reply {
            code,
            enhanced,
            lines: vec![sanitize(text.as_ref())],
        }
    }

    /// A multi-line reply (such as the EHLO capability list): every line but the last is sent as `CODE-text`, the
    /// last as `CODE text`. An empty list gives one empty line. Each line is sanitized as in [`Reply::new`].
    pub fn multiline<S: AsRef<str>>(
        code: u16,
        enhanced: Option<(u8, u16, u16)>,
        lines: impl IntoIterator<Item = S>,
    ) -> Self {
        let mut lines: Vec<String> = lines.into_iter().map(|l| sanitize(l.as_ref())).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The three-digit reply code, which decides what the client does next.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code (class, subject, detail), if this reply carries one.
    pub fn enhanced(&self) -> Option<(u8, u16, u16)> {
        self.enhanced
    }

    /// The text lines, already sanitized, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The text of all lines joined with `\n`, for logs and tests.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// True for 2xx and 3xx replies: the command was accepted (or the server waits for more).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The bytes to write: `250 2.1.0 Ok\r\n`, or `250-first\r\n250 last\r\n` for several lines. The enhanced code,
    /// when present, starts every line, as RFC 2034 asks.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.len() + 16).sum());
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let mut head = format!("{:03}{sep}", self.code);
            if let Some((class, subject, detail)) = self.enhanced {
                head.push_str(&format!("{class}.{subject}.{detail}"));
                if !line.is_empty() {
                    head.push(' ');
                }
            }
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

impl fmt::Display for Reply {
    /// The reply as it is sent, with CRLFs shown as line breaks; meant for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        f.write_str(String::from_utf8_lossy(&bytes).trim_end())
    }
}

/// Replaces anything that could break the line structure or the ASCII-only reply with `?`, and caps the length.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_LINE_TEXT)
        .collect()
}
