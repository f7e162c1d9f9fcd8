//! Decoders for the client's side of SASL PLAIN (RFC 4616) and LOGIN, as carried by SMTP AUTH (RFC 4954).
//!
//! These see attacker-controlled input before any password check, so they bound the input, refuse every
//! ambiguity (extra NULs, empty fields, invalid UTF-8) instead of guessing, and never echo secrets: the
//! [`PlainCredentials`] `Debug` output hides the password.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::reply::Reply;

/// Longest base64 text accepted for one SASL message. Real credentials are a few hundred octets at most.
pub const MAX_AUTH_LINE: usize = 2048;

/// Standard base64; padding optional because some clients omit it and nothing is ambiguous without it.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a SASL client message was refused; [`AuthError::reply`] is what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client sent `*`: it abandons the exchange (RFC 4954: answer 501).
    #[error("authentication cancelled by the client")]
    Cancelled,
    /// The text is not base64.
    #[error("the response is not valid base64")]
    InvalidBase64,
    /// Longer than [`MAX_AUTH_LINE`].
    #[error("the response is too long")]
    TooLong,
    /// Decoded, but not a well-formed message for the mechanism.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
}

impl AuthError {
    /// The reply to send, per RFC 4954 4 (cancel and undecodable responses are 501, an over-long line 500 5.5.6).
    pub fn reply(&self) -> Reply {
        match self {
            AuthError::Cancelled => Reply::new(501, Some((5, 0, 0)), "Authentication cancelled"),
            AuthError::InvalidBase64 => Reply::new(501, Some((5, 5, 2)), "Cannot decode response"),
            AuthError::TooLong => Reply::new(
                500,
                Some((5, 5, 6)),
                "Authentication exchange line is too long",
            ),
            AuthError::Malformed(why) => Reply::new(
                501,
                Some((5, 5, 2)),
                format!("Malformed credentials: {why}"),
            ),
        }
    }
}

/// The three fields of a SASL PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The identity to act as, when the client asked for one different from `authcid` (usually absent).
    pub authzid: Option<String>,
    /// The login name whose password is checked.
    pub authcid: String,
    /// The password, exactly as sent.
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    /// Shows the identities and hides the password, so credentials can be logged by mistake without harm.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Checks length and cancellation, then decodes base64.
fn decode_base64(b64: &str) -> Result<Vec<u8>, AuthError> {
    if b64 == "*" {
        return Err(AuthError::Cancelled);
    }
    if b64.len() > MAX_AUTH_LINE {
        return Err(AuthError::TooLong);
    }
    if b64 == "=" {
        // RFC 4954: "=" stands for an empty response.
        return Ok(Vec::new());
    }
    BASE64.decode(b64).map_err(|_| AuthError::InvalidBase64)
}

/// Identities end up in logs and database queries: no control characters (CR/LF would forge log lines).
fn identity(bytes: &[u8], what: &'static str) -> Result<String, AuthError> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| AuthError::Malformed(what))?;
    if text.chars().any(char::is_control) {
        return Err(AuthError::Malformed(what));
    }
    Ok(text)
}

/// Decodes a PLAIN response (`authzid NUL authcid NUL passwd`, base64) as sent in `AUTH PLAIN <b64>` or after the
/// `334` prompt.
///
/// Refuses `*` (cancelled), over-long or non-base64 input, a message without exactly two NULs, an empty authcid or
/// password, identities that are not UTF-8 or contain control characters, and a password that is not UTF-8. An
/// empty response (`=`) has no NULs and is refused too.
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, AuthError> {
    let bytes = decode_base64(b64)?;
    let mut fields = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(AuthError::Malformed(
            "expected authzid NUL authcid NUL password",
        ));
    };
    if authcid.is_empty() {
        return Err(AuthError::Malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(AuthError::Malformed("empty password"));
    }
    let authzid = match authzid {
        [] => None,
        z => Some(identity(z, "bad authorization identity")?),
    };
    Ok(PlainCredentials {
        authzid,
        authcid: identity(authcid, "bad user name")?,
        password: String::from_utf8(password.to_vec())
            .map_err(|_| AuthError::Malformed("password is not UTF-8"))?,
    })
}

/// Decodes one client step of LOGIN (the user name, then the password, each base64 on its own line).
///
/// Refuses `*` (cancelled), over-long or non-base64 input, an empty value, invalid UTF-8 and NUL bytes; the caller
/// knows whether the value is a user name and may check it further.
pub fn decode_login_step(b64: &str) -> Result<String, AuthError> {
    let bytes = decode_base64(b64)?;
    if bytes.is_empty() {
        return Err(AuthError::Malformed("empty value"));
    }
    if bytes.contains(&0) {
        return Err(AuthError::Malformed("NUL byte in value"));
    }
    String::from_utf8(bytes).map_err(|_| AuthError::Malformed("value is not UTF-8"))
}
