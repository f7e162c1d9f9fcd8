//! The `Authentication-Results:` header field (RFC 8601) and the result values the checks report in it.
//!
//! Most of what goes into the header comes from the sender: the MAIL FROM address, the HELO name, the From
//! domain, a DKIM signature's `d=` and `s=`. A CR or LF in any of them would let the sender append header fields
//! of its own (a forged `Authentication-Results`, say), and a `;` or `(` would let it add result entries that the
//! mail client then trusts. Every property value therefore passes through [`value`], which lets through only what
//! cannot change the field's structure and quotes (or replaces) everything else.

use std::fmt;

/// Longest property value kept (in characters); the rest is cut so a hostile selector cannot bloat the header.
const MAX_VALUE_CHARS: usize = 255;

/// One result as RFC 8601 names them (section 2.7), shared by every method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed (for DMARC: the message is not aligned with an authenticated domain).
    Fail,
    /// SPF `~all`: probably not authorized, but the domain does not ask for rejection.
    SoftFail,
    /// The domain makes no assertion (SPF `?all`), or a DKIM signature could not be processed.
    Neutral,
    /// Nothing to evaluate (no SPF/DMARC record, no signature, no PTR data for the method).
    None,
    /// A transient DNS problem: the same check may succeed later; never a reason to refuse mail.
    TempError,
    /// A permanent error in the published data (broken record, missing key, no PTR).
    PermError,
}

impl Outcome {
    /// The RFC 8601 keyword, as written in the header and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }
}

impl fmt::Display for Outcome {
    /// The RFC 8601 keyword.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `Authentication-Results:` field under construction: one entry per method result, in the order added.
#[derive(Debug, Clone)]
pub struct Header {
    authserv_id: String,
    entries: Vec<String>,
}

impl Header {
    /// An empty field for the server named `authserv_id` (our host name).
    pub fn new(authserv_id: &str) -> Header {
        Header {
            authserv_id: value(authserv_id),
            entries: Vec::new(),
        }
    }

    /// Adds `method=result` with its `ptype.property=value` pairs; each value is sanitized with [`value`].
    /// `method`, `result` and the property names are chosen by the program, never by the sender.
    pub fn add(&mut self, method: &str, result: &str, props: &[(&str, &str)]) {
        let mut entry = format!("{method}={result}");
        for (name, raw) in props {
            entry.push(' ');
            entry.push_str(name);
            entry.push('=');
            entry.push_str(&value(raw));
        }
        self.entries.push(entry);
    }

    /// Whether no method result was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The complete field, folded one result per line, ending in CRLF; `none` when nothing was added.
    pub fn render(&self) -> String {
        if self.entries.is_empty() {
            return format!("Authentication-Results: {}; none\r\n", self.authserv_id);
        }
        format!(
            "Authentication-Results: {};\r\n\t{}\r\n",
            self.authserv_id,
            self.entries.join(";\r\n\t")
        )
    }
}

/// Whether `c` may stand unquoted in a property value: the characters of an RFC 5322 dot-atom plus `@` (so
/// `local@domain` and domain names stay readable), and non-ASCII letters and digits (RFC 6532). None of these
/// can end an entry (`;`), open a comment (`(`), start a quoted string or break the line.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~.@".contains(c)
        || (!c.is_ascii() && c.is_alphanumeric())
}

/// A property value safe to write into the header: unchanged when every character is [`plain`], otherwise an
/// RFC 5322 quoted string in which control characters, line breaks and non-ASCII non-letters become `?` and
/// `"` and `\` are escaped. Empty input gives `""`. Values are cut to 255 characters.
pub fn value(raw: &str) -> String {
    let cut: String = raw.chars().take(MAX_VALUE_CHARS).collect();
    if !cut.is_empty() && cut.chars().all(plain) {
        return cut;
    }
    let mut out = String::with_capacity(cut.len() + 2);
    out.push('"');
    for c in cut.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' => out.push(' '),
            c if c.is_ascii_graphic() || plain(c) => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_results_render_as_none() {
        assert_eq!(
            Header::new("mx.example.test").render(),
            "Authentication-Results: mx.example.test; none\r\n"
        );
    }

    #[test]
    fn results_are_folded_one_per_line() {
        let mut h = Header::new("mx.example.test");
        h.add("iprev", "pass", &[("policy.iprev", "192.0.2.1")]);
        h.add("spf", "pass", &[("smtp.mailfrom", "a+b=c@example.org")]);
        h.add(
            "dkim",
            "pass",
            &[("header.d", "example.org"), ("header.s", "sel")],
        );
        h.add("dmarc", "pass", &[("header.from", "example.org")]);
        assert_eq!(
            h.render(),
            "Authentication-Results: mx.example.test;\r\n\tiprev=pass policy.iprev=192.0.2.1;\r\n\t\
             spf=pass smtp.mailfrom=a+b=c@example.org;\r\n\tdkim=pass header.d=example.org header.s=sel;\r\n\t\
             dmarc=pass header.from=example.org\r\n"
        );
    }

    #[test]
    fn hostile_values_are_quoted_and_cannot_break_the_field() {
        assert_eq!(value("example.org"), "example.org");
        assert_eq!(value("2001:db8::1"), "\"2001:db8::1\"");
        assert_eq!(value(""), "\"\"");
        assert_eq!(
            value("x;\r\n\tdkim=pass"),
            "\"x;???dkim=pass\"",
            "CR, LF and TAB become ? inside quotes"
        );
        assert_eq!(value("a\"b\\c (d)"), "\"a\\\"b\\\\c (d)\"");
        assert_eq!(value("bücher.example"), "bücher.example");
        assert_eq!(value("a\u{2028}b\u{85}c"), "\"a?b?c\"");
        assert_eq!(value(&"x".repeat(1000)).len(), MAX_VALUE_CHARS);
    }

    #[test]
    fn the_authserv_id_is_sanitized_too() {
        let h = Header::new("mx\r\nX-Evil: 1");
        assert_eq!(
            h.render(),
            "Authentication-Results: \"mx??X-Evil: 1\"; none\r\n"
        );
    }
}
