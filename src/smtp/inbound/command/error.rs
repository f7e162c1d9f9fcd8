//! Why a command line was refused, and the exact reply that tells the client.
//!
//! Each variant maps to one code pair, chosen as Postfix does so that clients and log readers see familiar
//! replies: a verb the server does not know is a 500, a known verb with bad arguments a 501, a bad address names
//! the sender (5.1.7) or recipient (5.1.3) side, and a well-formed but unsupported MAIL/RCPT parameter is 555
//! (RFC 5321 4.1.1.11).

use super::reply::Reply;

/// A command line that cannot be acted on. [`CommandError::reply`] is the reply to send; the session then stays in
/// the state it was in (RFC 5321: a rejected command changes nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The verb is empty, unknown, or not even ASCII (an HTTP request on port 25 lands here too).
    #[error("command not recognized")]
    Unrecognized,
    /// A NUL byte anywhere in the line; C-based software downstream would see a truncated command.
    #[error("NUL character in command")]
    NulByte,
    /// A control character other than tab (bare CR or LF included): never legitimate in a command line.
    #[error("control character in command")]
    ControlCharacter,
    /// A known verb with malformed arguments; the text says what the right syntax is.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// A MAIL/RCPT parameter whose keyword is known (or malformed) but whose value is not acceptable.
    #[error("invalid parameter {keyword}: {why}")]
    InvalidParameter {
        /// The keyword as the client sent it (upper-cased).
        keyword: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A well-formed MAIL/RCPT parameter that this server does not implement.
    #[error("unsupported parameter {0}")]
    UnsupportedParameter(String),
    /// The MAIL FROM reverse-path is not a valid address.
    #[error("bad sender address syntax: {0}")]
    BadSender(&'static str),
    /// The RCPT TO forward-path is not a valid address.
    #[error("bad recipient address syntax: {0}")]
    BadRecipient(&'static str),
    /// The initial response of AUTH is not base64 (RFC 4954 asks for 501 5.5.2).
    #[error("cannot decode AUTH initial response")]
    BadAuthResponse,
}

/// Keeps client-chosen words in replies short; the reply itself also strips control characters.
fn short(word: &str) -> &str {
    match word.char_indices().nth(32) {
        Some((i, _)) => word.get(..i).unwrap_or(word),
        None => word,
    }
}

impl CommandError {
    /// The reply to send for this error.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unrecognized => {
                Reply::new(500, Some((5, 5, 2)), "Error: command not recognized")
            }
            CommandError::NulByte => {
                Reply::new(500, Some((5, 5, 2)), "Error: NUL character in command")
            }
            CommandError::ControlCharacter => {
                Reply::new(500, Some((5, 5, 2)), "Error: control character in command")
            }
            CommandError::Syntax(why) => Reply::new(501, Some((5, 5, 4)), format!("Syntax: {why}")),
            CommandError::InvalidParameter { keyword, why } => Reply::new(
                501,
                Some((5, 5, 4)),
                format!("Invalid parameter {}: {why}", short(keyword)),
            ),
            CommandError::UnsupportedParameter(keyword) => Reply::new(
                555,
                Some((5, 5, 4)),
                format!("Unsupported parameter: {}", short(keyword)),
            ),
            CommandError::BadSender(why) => Reply::new(
                501,
                Some((5, 1, 7)),
                format!("Bad sender address syntax: {why}"),
            ),
            CommandError::BadRecipient(why) => Reply::new(
                501,
                Some((5, 1, 3)),
                format!("Bad recipient address syntax: {why}"),
            ),
            CommandError::BadAuthResponse => {
                Reply::new(501, Some((5, 5, 2)), "Cannot decode AUTH initial response")
            }
        }
    }
}
