//! SMTP replies as the probe reads them (RFC 5321 4.2), parsed without sockets so the rules are unit-tested.
//!
//! A server under audit is input: a reply line longer than [`MAX_LINE`] bytes, a reply of more than
//! [`MAX_LINES`] lines, a line that does not start with a three-digit code, or continuation lines whose code
//! changes are all errors, never panics and never unbounded buffers.

use std::fmt;

/// Longest reply line accepted, in bytes, line ending included (RFC 5321 allows 512; be lenient).
pub const MAX_LINE: usize = 1000;
/// Most lines accepted in one multi-line reply (a large EHLO has about 15).
pub const MAX_LINES: usize = 100;

/// One complete reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code, 200 to 599.
    pub code: u16,
    /// Text after `NNN-` / `NNN ` on each line, lossily decoded, line endings removed.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx: the command was accepted.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx: refused for now, try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: refused for good.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The enhanced status code (RFC 3463) at the start of the first line, e.g. `(5, 1, 1)` for `550 5.1.1 ...`.
    pub fn enhanced_code(&self) -> Option<(u8, u16, u16)> {
        let word = self.lines.first()?.split_whitespace().next()?;
        let mut parts = word.split('.');
        let class = parts.next()?.parse::<u8>().ok()?;
        let subject = parts.next()?.parse::<u16>().ok()?;
        let detail = parts.next()?.parse::<u16>().ok()?;
        (parts.next().is_none() && (2..=5).contains(&class)).then_some((class, subject, detail))
    }

    /// The host name a greeting announces: the first word of its first line (`220 mx.example.org ESMTP`).
    pub fn greeting_host(&self) -> Option<&str> {
        self.lines
            .first()?
            .split_whitespace()
            .next()
            .filter(|w| !w.is_empty())
    }

    /// The EHLO keywords (upper-case), i.e. the first word of every line after the greeting line.
    pub fn ehlo_keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_ascii_uppercase)
            .collect()
    }

    /// Whether an EHLO reply offers `keyword` (e.g. `STARTTLS`).
    pub fn offers(&self, keyword: &str) -> bool {
        self.ehlo_keywords()
            .iter()
            .any(|k| k.eq_ignore_ascii_case(keyword))
    }
}

impl fmt::Display for Reply {
    /// `CODE text` of the first line (escaped and shortened): enough to quote a reply in a finding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.lines.first().map(String::as_str).unwrap_or("");
        let escaped = crate::model::printable(text);
        let mut shown: String = escaped.chars().take(200).collect();
        if escaped.chars().count() > 200 {
            shown.push('…');
        }
        if shown.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {shown}", self.code)
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with a three-digit code followed by space, `-` or the line end.
    Malformed(String),
    /// A continuation line carries another code than the first line.
    CodeChanged(u16, u16),
    /// A line exceeds [`MAX_LINE`].
    LineTooLong,
    /// A reply exceeds [`MAX_LINES`].
    TooManyLines,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Malformed(line) => write!(f, "malformed reply line \"{line}\""),
            ReplyError::CodeChanged(a, b) => {
                write!(f, "multi-line reply changes its code from {a} to {b}")
            }
            ReplyError::LineTooLong => write!(f, "reply line longer than {MAX_LINE} bytes"),
            ReplyError::TooManyLines => write!(f, "reply longer than {MAX_LINES} lines"),
        }
    }
}

/// One parsed reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its code.
    pub code: u16,
    /// Whether it ends the reply (`NNN ` or bare `NNN`, as opposed to `NNN-`).
    pub last: bool,
    /// The text after the separator.
    pub text: String,
}

/// Parses one raw line (with or without its CRLF / bare LF).
pub fn parse_line(raw: &[u8]) -> Result<Line, ReplyError> {
    if raw.len() > MAX_LINE {
        return Err(ReplyError::LineTooLong);
    }
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let malformed = || {
        let shown: String = String::from_utf8_lossy(raw).chars().take(80).collect();
        ReplyError::Malformed(crate::model::printable(&shown))
    };
    let digits = raw.get(..3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(malformed());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match raw.get(3) {
        None => (true, &raw[3..]),
        Some(b' ') => (true, &raw[4..]),
        Some(b'-') => (false, &raw[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok(Line {
        code,
        last,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// Collects the lines of one multi-line reply.
#[derive(Debug, Default)]
pub struct ReplyBuilder {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyBuilder {
    /// Adds one raw line; returns the reply once its last line arrived.
    pub fn push(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line = parse_line(raw)?;
        match self.code {
            Some(code) if code != line.code => {
                return Err(ReplyError::CodeChanged(code, line.code));
            }
            _ => self.code = Some(line.code),
        }
        if self.lines.len() >= MAX_LINES {
            return Err(ReplyError::TooManyLines);
        }
        self.lines.push(line.text);
        Ok(line.last.then(|| Reply {
            code: line.code,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// Parses a complete reply from text (for tests and diagnostics): every line but the last must continue.
pub fn parse_reply(text: &str) -> Result<Reply, ReplyError> {
    let mut builder = ReplyBuilder::default();
    for line in text.split_inclusive('\n') {
        if let Some(reply) = builder.push(line.as_bytes())? {
            return Ok(reply);
        }
    }
    Err(ReplyError::Malformed(
        "reply ends before its last line".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_greeting_names_its_host() {
        let r = parse_reply("220 mx.example.org ESMTP ready\r\n").unwrap();
        assert_eq!(r.code, 220);
        assert!(r.is_positive());
        assert_eq!(r.greeting_host(), Some("mx.example.org"));
        assert_eq!(r.to_string(), "220 mx.example.org ESMTP ready");
    }

    #[test]
    fn multi_line_ehlo_lists_keywords() {
        let r = parse_reply(
            "250-mx.example.org Hello\r\n250-PIPELINING\r\n250-starttls\r\n250 SIZE 1000\r\n",
        )
        .unwrap();
        assert_eq!(r.lines.len(), 4);
        assert_eq!(r.ehlo_keywords(), ["PIPELINING", "STARTTLS", "SIZE"]);
        assert!(r.offers("STARTTLS"));
        assert!(!r.offers("AUTH"));
    }

    #[test]
    fn bare_code_and_bare_lf_are_accepted() {
        let r = parse_reply("250\n").unwrap();
        assert_eq!((r.code, r.lines.clone()), (250, vec![String::new()]));
        assert_eq!(r.greeting_host(), None);
        assert_eq!(r.to_string(), "250");
    }

    #[test]
    fn enhanced_status_codes_are_read() {
        let r = parse_reply("550 5.1.8 <x@y>: Sender address rejected\r\n").unwrap();
        assert_eq!(r.enhanced_code(), Some((5, 1, 8)));
        assert_eq!(parse_reply("250 Ok\r\n").unwrap().enhanced_code(), None);
        assert_eq!(
            parse_reply("250 1.2.3.4\r\n").unwrap().enhanced_code(),
            None
        );
    }

    #[test]
    fn reply_classes() {
        let code = |c| Reply {
            code: c,
            lines: vec![],
        };
        assert!(code(450).is_transient() && !code(450).is_permanent());
        assert!(code(550).is_permanent() && !code(550).is_positive());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "2",
            "22",
            "hello\r\n",
            "2a0 x\r\n",
            "220x\r\n",
            "999 x\r\n",
            "120 x\r\n",
        ] {
            assert!(
                matches!(parse_line(bad.as_bytes()), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(parse_line(&[0xff, 0xfe, 0x00]).is_err());
        assert!(parse_line("220 \u{fffd}\0\x1b[31m\r\n".as_bytes()).is_ok());
    }

    #[test]
    fn changing_code_inside_a_reply_is_refused() {
        assert_eq!(
            parse_reply("250-a\r\n251 b\r\n"),
            Err(ReplyError::CodeChanged(250, 251))
        );
    }

    #[test]
    fn long_lines_and_endless_replies_are_capped() {
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE));
        assert_eq!(parse_line(long.as_bytes()), Err(ReplyError::LineTooLong));
        let endless = "250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_reply(&endless), Err(ReplyError::TooManyLines));
        assert!(parse_reply("250-x\r\n").is_err());
    }

    #[test]
    fn control_characters_are_escaped_when_quoted() {
        let r = parse_reply("554 go\x1b[2Jaway\r\n").unwrap();
        assert_eq!(r.to_string(), "554 go\\u{1b}[2Jaway");
    }
}
