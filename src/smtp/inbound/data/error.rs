//! Why a message was refused at the end of DATA, and the reply that says so.

use crate::smtp::inbound::command::Reply;

/// The first violation found while reading a DATA phase. Reported only once the real end of data has been
/// read (see the module documentation), so the session can reply and stay in step with the client.
///
/// The reply codes are chosen from those RFC 5321 §4.3.2 allows after the end of data (250, 450, 451, 452,
/// 550, 552, 554): a syntax error like `500` would be out of place there, since the data phase, not a command,
/// is being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A `<LF>` not preceded by `<CR>`: the raw material of SMTP smuggling (`<LF>.<LF>`, `<LF>.<CRLF>`).
    #[error("bare <LF> in message data")]
    BareLineFeed,
    /// A `<CR>` not followed by `<LF>`: the other half of SMTP smuggling (`<CR>.<CR>`, `<CRLF>.<CR>`).
    #[error("bare <CR> in message data")]
    BareCarriageReturn,
    /// A NUL byte, which no content transfer encoding this server offers allows (RFC 2045 §2.7-2.8).
    #[error("NUL byte in message data")]
    NulByte,
    /// A line longer than [`super::Limits::max_line`].
    #[error("message line too long")]
    LineTooLong,
    /// A message larger than [`super::Limits::max_size`].
    #[error("message too large")]
    TooLarge,
}

impl DataError {
    /// The SMTP reply for this refusal.
    ///
    /// * [`TooLarge`](Self::TooLarge): `552 5.3.4`, as RFC 1870 prescribes for SIZE overruns.
    /// * [`BareLineFeed`](Self::BareLineFeed), [`BareCarriageReturn`](Self::BareCarriageReturn): `554 5.5.2`:
    ///   a violation of SMTP's line syntax (RFC 5321 §2.3.8), hence the "syntax error" enhanced code, sent as a
    ///   permanent transaction failure (554) because it answers the data, not a command. The text names the
    ///   offending byte the way Postfix does, so operators recognise it.
    /// * [`NulByte`](Self::NulByte), [`LineTooLong`](Self::LineTooLong): `554 5.6.0`, a problem with the
    ///   content itself (RFC 3463 "other or undefined media error").
    pub fn reply(&self) -> Reply {
        let (code, enhanced, text) = match self {
            DataError::BareLineFeed => (
                554,
                (5, 5, 2),
                "Bare <LF> received; lines must end with <CR><LF>",
            ),
            DataError::BareCarriageReturn => (
                554,
                (5, 5, 2),
                "Bare <CR> received; lines must end with <CR><LF>",
            ),
            DataError::NulByte => (554, (5, 6, 0), "NUL byte in message not allowed"),
            DataError::LineTooLong => (554, (5, 6, 0), "Message line too long"),
            DataError::TooLarge => (
                552,
                (5, 3, 4),
                "Message size exceeds fixed maximum message size",
            ),
        };
        Reply::new(code, Some(enhanced), text)
    }
}
