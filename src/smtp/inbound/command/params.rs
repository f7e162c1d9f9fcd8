//! MAIL FROM and RCPT TO parameters (`KEY=VALUE` after the path), RFC 5321 4.1.2 `esmtp-param`.
//!
//! The parameters this server implements are decoded into typed fields and checked here (a bad `SIZE` is a 501
//! whatever the session thinks); every other well-formed parameter is collected in `other` with its raw value, so
//! the session decides, with [`MailParams::check_supported`], whether it is a 555 or an extension it offers.

use super::error::CommandError;

/// More parameters than any real client sends; past it the line is abuse.
const MAX_PARAMS: usize = 16;

/// The `BODY=` parameter (RFC 6152, RFC 3030): how the client says the message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`: plain 7-bit text.
    SevenBit,
    /// `BODY=8BITMIME`: 8-bit octets in lines (RFC 6152).
    EightBitMime,
    /// `BODY=BINARYMIME`: arbitrary octets, only with BDAT (RFC 3030).
    BinaryMime,
}

/// The parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the client's estimate in octets, checked against the limit by the session.
    pub size: Option<u64>,
    /// `BODY=`, when given.
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531) was given: the envelope and headers may contain UTF-8.
    pub smtputf8: bool,
    /// `AUTH=` (RFC 4954 5), xtext-decoded: the original submitter's mailbox, or `<>` when unknown.
    pub auth: Option<String>,
    /// Other parameters: keyword upper-cased, value raw (xtext values such as `ENVID` are decoded by whoever
    /// implements them, with [`decode_xtext`], since only the extension knows its value's encoding).
    pub other: Vec<(String, Option<String>)>,
}

/// The parameters of RCPT TO. None is implemented yet; DSN's `NOTIFY` and `ORCPT` will arrive in `other`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// Every parameter: keyword upper-cased, value raw.
    pub other: Vec<(String, Option<String>)>,
}

impl MailParams {
    /// Refuses (555 5.5.4) the first parameter in `other` whose keyword is not in `offered` (upper-case keywords
    /// of extensions the session advertises beyond those decoded here).
    pub fn check_supported(&self, offered: &[&str]) -> Result<(), CommandError> {
        first_unsupported(&self.other, offered)
    }
}

impl RcptParams {
    /// Refuses (555 5.5.4) the first parameter whose keyword is not in `offered`.
    pub fn check_supported(&self, offered: &[&str]) -> Result<(), CommandError> {
        first_unsupported(&self.other, offered)
    }
}

fn first_unsupported(
    other: &[(String, Option<String>)],
    offered: &[&str],
) -> Result<(), CommandError> {
    match other.iter().find(|(k, _)| !offered.contains(&k.as_str())) {
        Some((k, _)) => Err(CommandError::UnsupportedParameter(k.clone())),
        None => Ok(()),
    }
}

/// Decodes RFC 3461 xtext: printable ASCII with `+XX` hex escapes. Refuses bad escapes, anything decoding to a
/// control character or invalid UTF-8, and raw characters outside `!`..`~` (and raw `=`).
pub fn decode_xtext(text: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hi = bytes.next().and_then(hex_value);
                let lo = bytes.next().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err("bad +XX escape in xtext"),
                }
            }
            b'!'..=b'~' if b != b'=' => out.push(b),
            _ => return Err("bad character in xtext"),
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| "xtext is not valid UTF-8")?;
    if decoded.chars().any(char::is_control) {
        return Err("xtext decodes to a control character");
    }
    Ok(decoded)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Splits the text after the path into upper-cased keywords and raw values, checking the RFC 5321 syntax and
/// refusing duplicates.
fn split_params(rest: &[u8]) -> Result<Vec<(String, Option<String>)>, CommandError> {
    if !rest.is_empty() && !rest.starts_with(b" ") && !rest.starts_with(b"\t") {
        return Err(CommandError::Syntax("a space must follow the closing '>'"));
    }
    let text = std::str::from_utf8(rest)
        .ok()
        .filter(|t| t.is_ascii())
        .ok_or(CommandError::Syntax(
            "8-bit characters are only allowed in addresses",
        ))?;
    let mut params: Vec<(String, Option<String>)> = Vec::new();
    for token in text.split([' ', '\t']).filter(|t| !t.is_empty()) {
        if params.len() == MAX_PARAMS {
            return Err(CommandError::Syntax("too many parameters"));
        }
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (token.to_ascii_uppercase(), None),
        };
        let bad = |why| CommandError::InvalidParameter {
            keyword: key.clone(),
            why,
        };
        let key_ok = key.starts_with(|c: char| c.is_ascii_alphanumeric())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !key_ok {
            return Err(bad("malformed keyword"));
        }
        if let Some(v) = value {
            if v.is_empty() {
                return Err(bad("empty value"));
            }
            if !v.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
                return Err(bad("bad character in value"));
            }
        }
        if params.iter().any(|(k, _)| *k == key) {
            return Err(bad("given more than once"));
        }
        params.push((key, value.map(str::to_owned)));
    }
    Ok(params)
}

/// Parses the parameters of MAIL FROM, decoding those this server implements.
pub(super) fn parse_mail_params(rest: &[u8]) -> Result<MailParams, CommandError> {
    let mut params = MailParams::default();
    for (key, value) in split_params(rest)? {
        let bad = |why| CommandError::InvalidParameter {
            keyword: key.clone(),
            why,
        };
        match (key.as_str(), value.as_deref()) {
            ("SIZE", Some(v)) => {
                let digits =
                    !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit());
                let size = v.parse().ok().filter(|_| digits);
                params.size = Some(size.ok_or_else(|| bad("SIZE must be a number of octets"))?);
            }
            ("BODY", Some(v)) => {
                params.body = Some(match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    "BINARYMIME" => Body::BinaryMime,
                    _ => return Err(bad("BODY must be 7BIT, 8BITMIME or BINARYMIME")),
                });
            }
            ("SMTPUTF8", None) => params.smtputf8 = true,
            ("SMTPUTF8", Some(_)) => return Err(bad("SMTPUTF8 takes no value")),
            ("AUTH", Some(v)) => params.auth = Some(decode_xtext(v).map_err(bad)?),
            ("SIZE" | "BODY" | "AUTH", None) => return Err(bad("a value is required")),
            _ => params.other.push((key, value)),
        }
    }
    Ok(params)
}

/// Parses the parameters of RCPT TO.
pub(super) fn parse_rcpt_params(rest: &[u8]) -> Result<RcptParams, CommandError> {
    Ok(RcptParams {
        other: split_params(rest)?,
    })
}
