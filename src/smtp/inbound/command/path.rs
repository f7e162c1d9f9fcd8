//! Envelope addresses: the `<...>` of MAIL FROM and RCPT TO, per RFC 5321 4.1.2 with RFC 6531 UTF-8.
//!
//! The parser is strict about structure (angle brackets, one `@`, dot rules, label syntax) and canonicalizes what
//! has one canonical form (domains lower-case A-labels, address literals as IP addresses), while keeping the local
//! part exactly as the client meant it: local parts are case-sensitive by RFC and only the recipient lookup may
//! decide how to fold them.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part accepted, in octets. RFC 5321 only promises 64; long VERP and SRS senders exceed that in
/// the wild, so twice as much is allowed before the address is called garbage.
const MAX_LOCAL: usize = 128;
/// Longest domain as sent (RFC 5321 4.5.3.1.2).
const MAX_DOMAIN: usize = 255;
/// Characters of RFC 5321 `atext` besides letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// The domain side of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathDomain {
    /// A domain name, lower-case ASCII, internationalized labels already converted to A-labels (`xn--`).
    Name(String),
    /// An IPv4 address literal, written `[192.0.2.1]`.
    Ipv4(Ipv4Addr),
    /// An IPv6 address literal, written `[IPv6:2001:db8::1]`.
    Ipv6(Ipv6Addr),
}

impl PathDomain {
    /// Parses a domain or an address literal as it appears after the `@` (or as the EHLO argument).
    ///
    /// Refused: a trailing dot, empty labels, characters outside letters/digits/hyphen, labels starting or ending
    /// with a hyphen, labels over 63 octets, an all-numeric last label (an IP address must be a literal), invalid
    /// `xn--` labels, and literals that are neither IPv4 nor `IPv6:`.
    pub fn parse(text: &str) -> Result<PathDomain, &'static str> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or("unterminated address literal")?;
            return parse_literal(inner);
        }
        parse_domain_name(text).map(PathDomain::Name)
    }
}

impl fmt::Display for PathDomain {
    /// The domain as it is written in an address: the name, or the bracketed literal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathDomain::Name(name) => f.write_str(name),
            PathDomain::Ipv4(ip) => write!(f, "[{ip}]"),
            PathDomain::Ipv6(ip) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

/// A mailbox from an envelope path, with any source route already thrown away.
///
/// `%` and `!` in the local part are ordinary characters here, as RFC 5321 says: `user%other@hosted` is the local
/// part `user%other` at `hosted`, never a request to forward to `other`. The recipient check finds no such mailbox
/// and refuses it, so the old `%` hack and UUCP `!` paths cannot be used to relay.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The local part as the client meant it: case kept, and for a quoted local part the content between the
    /// quotes with `\x` escapes resolved (`"a\"b"` gives `a"b`). `"alice"@d` and `alice@d` are the same mailbox.
    pub local: String,
    /// The client wrote the local part as a quoted string; relay checks may want to treat that with suspicion.
    pub quoted: bool,
    /// The domain, canonical.
    pub domain: PathDomain,
    /// The address as sent contained non-ASCII (a UTF-8 local part or U-labels). RFC 6531 allows that only in a
    /// transaction whose MAIL FROM declared SMTPUTF8; the session checks that, the parser accepts both.
    pub utf8: bool,
    /// The client sent an RFC 5321 source route (`<@a,@b:user@d>`). The route is discarded as Appendix C allows,
    /// but a relay check can refuse clients that try it.
    pub had_route: bool,
}

impl Path {
    /// The domain name, when the domain is a name and not an address literal.
    pub fn domain_name(&self) -> Option<&str> {
        match &self.domain {
            PathDomain::Name(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for Path {
    /// The address in SMTP form without angle brackets, quoting the local part when it is not a dot-string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            f.write_str(&self.local)?;
        } else {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        write!(f, "@{}", self.domain)
    }
}

/// The MAIL FROM argument: the null path `<>` (bounces and other notifications) or a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: no address to send notifications back to.
    Null,
    /// A sender mailbox.
    Path(Path),
}

/// The RCPT TO argument: a mailbox, or the bare `<Postmaster>` every server must accept (RFC 5321 4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (any case): the postmaster of this server.
    Postmaster,
    /// A recipient mailbox.
    Path(Path),
}

/// Splits `<...>rest` into the bytes between the brackets and what follows the closing bracket. A `>` inside a
/// quoted local part does not close the path.
pub(super) fn split_bracketed(input: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let body = input
        .strip_prefix(b"<")
        .ok_or("the address must be enclosed in <>")?;
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in body.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                let (inner, rest) = body.split_at(i);
                return Ok((inner, rest.get(1..).unwrap_or_default()));
            }
            b'<' if !quoted => return Err("unexpected '<' in address"),
            _ => {}
        }
    }
    Err("missing closing '>'")
}

/// Parses the text between the angle brackets of a non-null path: an optional source route, then a mailbox.
pub(super) fn parse_path(inner: &[u8]) -> Result<Path, &'static str> {
    let text = std::str::from_utf8(inner).map_err(|_| "address is not valid UTF-8")?;
    let (had_route, mailbox) = strip_route(text)?;
    let (local, quoted, domain_text) = split_local(mailbox)?;
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.len() > MAX_LOCAL {
        return Err("local part too long");
    }
    let domain = PathDomain::parse(domain_text)?;
    Ok(Path {
        local,
        quoted,
        domain,
        utf8: !mailbox.is_ascii(),
        had_route,
    })
}

/// Removes and checks an `@a,@b:` source route, returning whether there was one and the mailbox after it.
fn strip_route(text: &str) -> Result<(bool, &str), &'static str> {
    if !text.starts_with('@') {
        return Ok((false, text));
    }
    let mut in_literal = false;
    let colon = text
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '[' => in_literal = true,
                ']' => in_literal = false,
                _ => {}
            }
            c == ':' && !in_literal
        })
        .map(|(i, _)| i)
        .ok_or("source route without ':'")?;
    let (route, mailbox) = text.split_at(colon);
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or("malformed source route")?;
        PathDomain::parse(domain).map_err(|_| "bad domain in source route")?;
    }
    Ok((true, mailbox.get(1..).unwrap_or_default()))
}

/// Splits a mailbox into (local part, was quoted, domain text), decoding a quoted local part.
fn split_local(mailbox: &str) -> Result<(String, bool, &str), &'static str> {
    if let Some(body) = mailbox.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    let rest = body.get(i + 1..).unwrap_or_default();
                    let domain = rest.strip_prefix('@').ok_or("missing @domain")?;
                    return Ok((local, true, domain));
                }
                '\\' => match chars.next() {
                    Some((_, e)) if e == ' ' || e.is_ascii_graphic() || !e.is_ascii() => {
                        check_utf8_char(e)?;
                        local.push(e);
                    }
                    _ => return Err("bad escape in quoted local part"),
                },
                _ if c == ' ' || c.is_ascii_graphic() || !c.is_ascii() => {
                    check_utf8_char(c)?;
                    local.push(c);
                }
                _ => return Err("bad character in quoted local part"),
            }
        }
        return Err("unterminated quoted local part");
    }
    let (local, domain) = mailbox.split_once('@').ok_or("missing @domain")?;
    if local.is_empty() {
        return Err("empty local part");
    }
    if !is_dot_string(local) {
        return Err("bad character or dot in local part");
    }
    Ok((local.to_owned(), false, domain))
}

/// Non-ASCII is allowed in local parts (RFC 6531) except invisible line-breaking or control characters.
fn check_utf8_char(c: char) -> Result<(), &'static str> {
    if c.is_control() || (!c.is_ascii() && c.is_whitespace()) {
        Err("control or space character in address")
    } else {
        Ok(())
    }
}

/// An RFC 5321 Dot-string (extended with UTF-8 by RFC 6531): atoms separated by single dots.
fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || ATEXT_SPECIALS.contains(c)
                        || (!c.is_ascii() && check_utf8_char(c).is_ok())
                })
        })
}

/// Parses the inside of `[...]`.
fn parse_literal(inner: &str) -> Result<PathDomain, &'static str> {
    let tag = inner.get(..5);
    if tag.is_some_and(|t| t.eq_ignore_ascii_case("IPv6:")) {
        let ip = inner.get(5..).unwrap_or_default();
        return ip
            .parse()
            .map(PathDomain::Ipv6)
            .map_err(|_| "bad IPv6 address literal");
    }
    inner
        .parse()
        .map(PathDomain::Ipv4)
        .map_err(|_| "unsupported address literal")
}

/// Canonicalizes and checks a domain name.
fn parse_domain_name(text: &str) -> Result<String, &'static str> {
    if text.is_empty() {
        return Err("missing domain");
    }
    if text.len() > MAX_DOMAIN {
        return Err("domain too long");
    }
    if text.ends_with('.') {
        return Err("trailing dot in domain");
    }
    let ascii = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii_strict(text).map_err(|_| "invalid internationalized domain")?
    };
    if ascii.is_empty() || ascii.len() > 253 {
        return Err("bad domain length");
    }
    for label in ascii.split('.') {
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ldh {
            return Err("bad domain syntax");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with '-'");
        }
    }
    if ascii.contains("xn--") && idna::domain_to_ascii_strict(&ascii).is_err() {
        return Err("invalid xn-- label in domain");
    }
    let last = ascii.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("numeric domain (write an IP address as [192.0.2.1])");
    }
    Ok(ascii)
}
