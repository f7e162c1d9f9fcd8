//! The envelope commands the client writes itself, and the one-line texts of what happened.
//!
//! lettre's own `Mail`/`Rcpt` commands take its `Address` type, whose parser refuses some addresses a queue
//! can hold and cannot express the null sender; these commands write the queued address as it is, once
//! [`envelope_safe`] has ruled out anything that could break the command line.
//!
//! Texts (see [`super::client`] for the format) carry the remote reply with control characters removed, on one
//! line, at most [`MAX_TEXT`] characters, so a hostile server cannot inject headers into a DSN or lines into a
//! log.

use std::fmt;

use lettre::transport::smtp::response::{Response, Severity};

/// Longest outcome text kept, in characters.
pub const MAX_TEXT: usize = 600;

/// `MAIL FROM:<sender> PARAMS` (an empty sender is the null sender `<>`).
pub struct MailFrom<'a> {
    /// The envelope sender, checked by [`envelope_safe`] (or empty).
    pub sender: &'a str,
    /// ESMTP parameters such as `SMTPUTF8` and `BODY=8BITMIME`.
    pub params: &'a [&'static str],
}

impl fmt::Display for MailFrom<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MAIL FROM:<{}>", self.sender)?;
        for p in self.params {
            write!(f, " {p}")?;
        }
        f.write_str("\r\n")
    }
}

/// `RCPT TO:<recipient>`.
pub struct RcptTo<'a>(pub &'a str);

impl fmt::Display for RcptTo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RCPT TO:<{}>\r\n", self.0)
    }
}

/// Whether `address` can go between `<` and `>` on a command line: not empty, at most 512 bytes (RFC 5321
/// 4.5.3.1.3 path limit with room for UTF-8), an `@`, no blanks, controls or angle brackets.
pub fn envelope_safe(address: &str) -> bool {
    !address.is_empty()
        && address.len() <= 512
        && address.contains('@')
        && !address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
}

/// `text` on one line (controls and runs of white space become one blank), at most [`MAX_TEXT`] characters:
/// the same cleaning the DSN fields get, since these texts end up in DSNs.
pub fn one_line(text: &str) -> String {
    crate::smtp::outbound::dsn::one_line(text, MAX_TEXT, false)
}

/// `who: CODE text` for a reply the server sent.
pub fn positive(who: &str, response: &Response) -> String {
    let text: Vec<&str> = response.message().collect();
    one_line(&format!("{who}: {} {}", response.code(), text.join(" ")))
}

/// Whether a reply is a 2xx completion (a 3xx where a 2xx belongs is a protocol error).
pub fn is_completion(response: &Response) -> bool {
    response.code().severity == Severity::PositiveCompletion
}

/// How a lettre error reads in an outcome, and whether it was a reply.
pub enum Failure {
    /// A 4xx reply: `who: CODE text`.
    Transient(String),
    /// A 5xx reply: `who: CODE text`.
    Permanent(String),
    /// No usable reply (network error, closed connection, garbled reply): `who: 4.4.2 ... during STAGE: why`.
    Broken(String),
}

impl Failure {
    /// Classifies `error` from the stage `stage` (e.g. `RCPT TO`) of a session with `who`.
    pub fn of(who: &str, stage: &str, error: &lettre::transport::smtp::Error) -> Failure {
        use std::error::Error as _;
        let reply = || {
            let code = error.status().map(|c| c.to_string()).unwrap_or_default();
            let text = error.source().map(|s| s.to_string()).unwrap_or_default();
            one_line(&format!("{who}: {code} {text}"))
        };
        if error.is_permanent() {
            Failure::Permanent(reply())
        } else if error.is_transient() {
            Failure::Transient(reply())
        } else {
            Failure::Broken(broken(who, stage, &error.to_string()))
        }
    }

    /// The text, whatever the kind.
    pub fn text(self) -> String {
        match self {
            Failure::Transient(t) | Failure::Permanent(t) | Failure::Broken(t) => t,
        }
    }
}

/// `who: 4.4.2 connection broken during STAGE: why`.
pub fn broken(who: &str, stage: &str, why: &str) -> String {
    one_line(&format!(
        "{who}: 4.4.2 connection broken during {stage}: {why}"
    ))
}

/// `who: 4.4.2 no reply to STAGE within N s`.
pub fn timed_out(who: &str, stage: &str, secs: u64) -> String {
    one_line(&format!("{who}: 4.4.2 no reply to {stage} within {secs} s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_render_with_crlf() {
        let mail = MailFrom {
            sender: "",
            params: &["SMTPUTF8", "BODY=8BITMIME"],
        };
        assert_eq!(mail.to_string(), "MAIL FROM:<> SMTPUTF8 BODY=8BITMIME\r\n");
        assert_eq!(RcptTo("a@b.test").to_string(), "RCPT TO:<a@b.test>\r\n");
    }

    #[test]
    fn unsafe_addresses_are_refused() {
        assert!(envelope_safe("user@example.org"));
        assert!(envelope_safe("jörg@bücher.example"));
        for bad in [
            "",
            "no-at",
            "a b@c.test",
            "a@b.test>\r\nRSET",
            "<a@b.test",
            "a@b\0.test",
        ] {
            assert!(!envelope_safe(bad), "{bad:?}");
        }
        assert!(!envelope_safe(&format!("{}@b.test", "a".repeat(600))));
    }

    #[test]
    fn texts_are_one_short_line() {
        assert_eq!(
            one_line("  550 5.1.1\r\nX-Injected: yes\t end "),
            "550 5.1.1 X-Injected: yes end"
        );
        let long = one_line(&"x".repeat(5000));
        assert_eq!(long.chars().count(), MAX_TEXT + 3);
    }
}
