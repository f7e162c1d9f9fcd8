//! The SMTP command-line parser: one line in, one [`Command`] or one ready-made refusal out.
//!
//! # Design
//!
//! [`parse`] takes a single command line without its CRLF; the reader that splits lines and enforces the line
//! length limit lives elsewhere. Parsing is pure and allocation-light, so it can be fuzzed directly and the
//! session state machine never sees raw bytes. Every refusal is a [`CommandError`] that knows its reply, so the
//! mapping from "what was wrong" to "which 5xx" is written exactly once.
//!
//! The parser is liberal where real clients are sloppy and harmless, and strict where sloppiness is how servers
//! get tricked:
//!
//! - Verbs are case-insensitive; leading and trailing blanks are ignored; `MAIL FROM:<a@b>` and
//!   `MAIL FROM: <a@b>` are both accepted, as Postfix does. Addresses without angle brackets are refused.
//! - NUL and other control characters anywhere, and 8-bit bytes outside an address, refuse the whole line.
//! - Domains are canonicalized (lower-case, IDN to A-labels) so the hosted-domain check compares like with like;
//!   trailing dots, bare IP addresses as names, and malformed `xn--` labels are refused.
//! - Source routes (`<@relay1,@relay2:user@domain>`) are parsed, validated and discarded as RFC 5321 Appendix C
//!   permits, with [`Path::had_route`] set so relay policy can see the attempt.
//! - `%` and `!` in local parts are ordinary characters, never routing: the recipient check treats
//!   `user%elsewhere@hosted` as a mailbox that does not exist, so neither can make this server relay.
//! - UTF-8 in addresses (RFC 6531) is parsed and flagged ([`Path::utf8`]); whether it is allowed (SMTPUTF8
//!   declared) is the session's decision, as is everything that depends on state (is AUTH offered, is the
//!   mechanism known, is SIZE within the limit, are the extra parameters supported).
//!
//! [`auth`] decodes SASL PLAIN and LOGIN responses; [`Reply`] is the value every stage answers with.

pub mod auth;
mod error;
mod params;
mod path;
mod reply;

#[cfg(test)]
mod tests;

pub use auth::{AuthError, PlainCredentials, decode_login_step, decode_plain};
pub use error::CommandError;
pub use params::{Body, MailParams, RcptParams, decode_xtext};
pub use path::{ForwardPath, Path, PathDomain, ReversePath};
pub use reply::Reply;

/// The longest EHLO/HELO argument accepted: a domain name is at most 255 octets.
const MAX_HELO: usize = 255;
/// SASL mechanism names are at most 20 characters (RFC 4422 3.1).
const MAX_MECHANISM: usize = 20;

/// One parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name`: the client's name or address literal, exactly as sent (printable ASCII, one word). Judging it
    /// (e.g. with [`PathDomain::parse`]) is policy, left to the session.
    Ehlo(String),
    /// `HELO name`: as for [`Command::Ehlo`], for clients that do not speak ESMTP.
    Helo(String),
    /// `MAIL FROM:<reverse-path> [params]`: starts a transaction.
    Mail {
        /// The sender, or the null path of a bounce.
        from: ReversePath,
        /// The parameters, typed where this server implements them.
        params: MailParams,
    },
    /// `RCPT TO:<forward-path> [params]`: adds a recipient.
    Rcpt {
        /// The recipient.
        to: ForwardPath,
        /// The parameters.
        params: RcptParams,
    },
    /// `DATA`: the message follows, ended by `<CRLF>.<CRLF>`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030): exactly `size` octets of message follow the line.
    Bdat {
        /// Octets in this chunk.
        size: u64,
        /// This is the final chunk.
        last: bool,
    },
    /// `RSET`: abandons the transaction.
    Rset,
    /// `NOOP [text]`: does nothing; the text is ignored.
    Noop,
    /// `VRFY text`: the argument as sent (the server answers 252 without revealing anything).
    Vrfy(String),
    /// `EXPN text`: the argument as sent.
    Expn(String),
    /// `HELP [topic]`: the topic is ignored.
    Help,
    /// `QUIT`: ends the session.
    Quit,
    /// `STARTTLS` (RFC 3207): switches to TLS; anything pipelined after it must be discarded by the session.
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism name, upper-cased; whether it is offered is the session's decision.
        mechanism: String,
        /// The initial response: base64 text, or `=` for an empty one. Not decoded here.
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, upper-case, for logs and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// Parses one command line, given without its terminating CRLF.
///
/// Never panics, whatever the bytes. The error's [`CommandError::reply`] is the reply to send.
pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
    if line.contains(&0) {
        return Err(CommandError::NulByte);
    }
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::ControlCharacter);
    }
    let line = line.trim_ascii();
    let verb_end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (verb, args) = line.split_at(verb_end);
    let args = args.trim_ascii_start();
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());

    if is("MAIL") {
        return parse_mail(args);
    }
    if is("RCPT") {
        return parse_rcpt(args);
    }
    if !verb.iter().all(u8::is_ascii_alphabetic) {
        return Err(CommandError::Unrecognized);
    }
    let args = std::str::from_utf8(args)
        .ok()
        .filter(|a| a.is_ascii())
        .ok_or(CommandError::Syntax(
            "8-bit characters are only allowed in addresses",
        ))?;
    let none = |command: Command, syntax: &'static str| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(CommandError::Syntax(syntax))
        }
    };
    match verb.to_ascii_uppercase().as_slice() {
        b"EHLO" => helo_argument(args, "EHLO domain").map(Command::Ehlo),
        b"HELO" => helo_argument(args, "HELO domain").map(Command::Helo),
        b"DATA" => none(Command::Data, "DATA takes no arguments"),
        b"BDAT" => parse_bdat(args),
        b"RSET" => none(Command::Rset, "RSET takes no arguments"),
        b"NOOP" => Ok(Command::Noop),
        b"VRFY" => required(args, "VRFY address").map(Command::Vrfy),
        b"EXPN" => required(args, "EXPN list").map(Command::Expn),
        b"HELP" => Ok(Command::Help),
        b"QUIT" => none(Command::Quit, "QUIT takes no arguments"),
        b"STARTTLS" => none(Command::StartTls, "STARTTLS takes no arguments"),
        b"AUTH" => parse_auth(args),
        _ => Err(CommandError::Unrecognized),
    }
}

/// The single word after EHLO/HELO.
fn helo_argument(args: &str, syntax: &'static str) -> Result<String, CommandError> {
    if args.is_empty() || args.contains([' ', '\t']) || args.len() > MAX_HELO {
        return Err(CommandError::Syntax(syntax));
    }
    Ok(args.to_owned())
}

/// A mandatory free-text argument.
fn required(args: &str, syntax: &'static str) -> Result<String, CommandError> {
    if args.is_empty() {
        Err(CommandError::Syntax(syntax))
    } else {
        Ok(args.to_owned())
    }
}

/// Strips `keyword:` (case-insensitive) and the blanks after it, the only spelling accepted after MAIL and RCPT.
fn after_keyword<'a>(args: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword.as_bytes()) {
        return None;
    }
    Some(args.get(keyword.len()..)?.trim_ascii_start())
}

fn parse_mail(args: &[u8]) -> Result<Command, CommandError> {
    let rest = after_keyword(args, "FROM:").ok_or(CommandError::Syntax("MAIL FROM:<address>"))?;
    let (inner, rest) = path::split_bracketed(rest).map_err(CommandError::BadSender)?;
    let from = if inner.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Path(path::parse_path(inner).map_err(CommandError::BadSender)?)
    };
    let params = params::parse_mail_params(rest)?;
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &[u8]) -> Result<Command, CommandError> {
    let rest = after_keyword(args, "TO:").ok_or(CommandError::Syntax("RCPT TO:<address>"))?;
    let (inner, rest) = path::split_bracketed(rest).map_err(CommandError::BadRecipient)?;
    let to = if inner.is_empty() {
        return Err(CommandError::BadRecipient(
            "the null address is not a recipient",
        ));
    } else if inner.eq_ignore_ascii_case(b"postmaster") {
        ForwardPath::Postmaster
    } else {
        ForwardPath::Path(path::parse_path(inner).map_err(CommandError::BadRecipient)?)
    };
    let params = params::parse_rcpt_params(rest)?;
    Ok(Command::Rcpt { to, params })
}

fn parse_bdat(args: &str) -> Result<Command, CommandError> {
    const SYNTAX: CommandError = CommandError::Syntax("BDAT chunk-size [LAST]");
    let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .ok_or(SYNTAX)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(SYNTAX),
    };
    if words.next().is_some() {
        return Err(SYNTAX);
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: &str) -> Result<Command, CommandError> {
    const SYNTAX: CommandError = CommandError::Syntax("AUTH mechanism [initial-response]");
    let mut words = args.split([' ', '\t']).filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .filter(|m| m.len() <= MAX_MECHANISM)
        .filter(|m| {
            m.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or(SYNTAX)?
        .to_ascii_uppercase();
    let initial = match words.next() {
        None => None,
        Some("=") => Some("=".to_owned()),
        Some(b64) if is_base64_text(b64) => Some(b64.to_owned()),
        Some(_) => return Err(CommandError::BadAuthResponse),
    };
    if words.next().is_some() {
        return Err(SYNTAX);
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Base64 alphabet with padding only at the end; the real decoding happens in [`auth`].
fn is_base64_text(text: &str) -> bool {
    let data = text.trim_end_matches('=');
    !data.is_empty()
        && text.len() - data.len() <= 2
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}
