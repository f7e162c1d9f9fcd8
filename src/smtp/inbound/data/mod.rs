//! The DATA phase: turning the bytes a client sends after `354` into one message, safely.
//!
//! This module is socket-free. The session hands every chunk it reads to [`DataReader::feed`], which appends the
//! message (dot-unstuffed, CRLF line ends kept) to a buffer and says whether the end of data has been reached and
//! how many of the chunk's bytes belonged to the DATA phase. Whatever follows the terminator in the same chunk is
//! the client's next pipelined command and stays with the session. [`stuff()`] is the inverse, for the outbound
//! side: it turns a message into the bytes to send after `354`.
//!
//! # Why it is this strict (SMTP smuggling, CVE-2023-51764 class)
//!
//! A message ends only at `<CRLF>.<CRLF>` where the `<CRLF>` is the end of the previous line, or at `.<CRLF>`
//! as the very first line (an empty message), as RFC 5321 §4.1.1.4 says. Servers that also accepted `<LF>.<LF>`,
//! `<LF>.<CRLF>`, `<CR>.<CR>` and similar as the end could be made to see a second, "smuggled" message that
//! an upstream server forwarded as part of one, with the upstream's SPF/DKIM blessing. Here:
//!
//! * a line starts only after a real `<CRLF>`, so a dot after a bare `<LF>` or bare `<CR>` is plain text and can
//!   never end the data or be unstuffed;
//! * a bare `<LF>` (not preceded by `<CR>`) or a bare `<CR>` (not followed by `<LF>`) anywhere rejects the
//!   message ([`DataError::BareLineFeed`], [`DataError::BareCarriageReturn`]), so such bytes are never stored,
//!   delivered or relayed to a less careful server;
//! * a NUL byte rejects the message ([`DataError::NulByte`]): RFC 5322 admits NUL only as obsolete syntax
//!   (§4.1) and RFC 2045 §2.7-2.8 forbids it in both 7bit and 8bit (8BITMIME) content; only BINARYMIME, which
//!   is not offered, allows it. Downstream tools (filters written in C, IMAP servers) treat NUL inconsistently,
//!   which is one more way for two programs to disagree about what a message says.
//!
//! # Errors are reported at the real end (resynchronisation)
//!
//! The reader does not stop at the first violation: the client is still sending the rest of its message, and if
//! the session replied at once and went back to reading commands, it would read that rest as commands, which is
//! exactly how smuggled commands get executed. (Postfix's `smtpd_forbid_bare_newline = reject` avoids this by
//! disconnecting; reading to the real end lets a merely sloppy client get a clear 5xx for its message and keep
//! its session.) So after the first error the reader stops
//! storing bytes, keeps consuming up to the real `<CRLF>.<CRLF>`, and only then returns
//! [`Progress::Rejected`] with that first error and `consumed`. The session replies with [`DataError::reply`]
//! and carries on with the next command (or closes the connection if its policy says so). A client that never
//! sends a real terminator is the DATA timeout's business; [`DataReader::size`] keeps counting so the session
//! can also cut off a client that streams far beyond the limit.
//!
//! # Resource limits
//!
//! [`Limits::max_size`] bounds the message (unstuffed bytes, line ends included): past it nothing more is stored,
//! so the buffer never grows beyond it; the rest is consumed and the message rejected with `552 5.3.4`.
//! [`Limits::max_line`] bounds each line (including its `<CRLF>`, not counting a stuffing dot, RFC 5321
//! §4.5.3.1.6). The reader itself keeps a constant amount of state; chunks may be split anywhere (even between
//! `<CR>` and `<LF>` or after the dot) and the outcome is the same as if the stream had come in one piece.

mod error;
mod reader;
mod stuff;

#[cfg(test)]
mod tests;

pub use error::DataError;
pub use reader::DataReader;
pub use stuff::stuff;

/// The bounds one DATA phase is read under; built from the server config for each transaction.
///
/// Zero in either field means "unlimited". That is meant for tests and trusted local injection; a server
/// facing the internet should keep both bounded, because the reader stores everything up to `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message accepted, in unstuffed bytes including line ends (the figure announced as the
    /// EHLO `SIZE` parameter, RFC 1870). Larger messages are consumed but not stored, then rejected
    /// with [`DataError::TooLarge`].
    pub max_size: u64,
    /// The longest line accepted, in bytes including its `<CRLF>` and excluding a stuffing dot. RFC 5321
    /// §4.5.3.1.6 and RFC 5322 §2.1.1 set 1000 ([`Limits::RFC_MAX_LINE`]); a site that must accept mail from
    /// senders breaking that rule can raise it.
    pub max_line: usize,
}

impl Limits {
    /// The line length RFC 5321 §4.5.3.1.6 allows: 998 octets of text plus `<CRLF>`.
    pub const RFC_MAX_LINE: usize = 1000;

    /// Postfix's default `message_size_limit` (10 240 000 bytes), so that a site moving from Postfix keeps
    /// accepting what it accepted before unless it configures otherwise.
    pub const DEFAULT_MAX_SIZE: u64 = 10_240_000;
}

impl Default for Limits {
    /// The RFC line limit and Postfix's default size limit.
    fn default() -> Self {
        Limits {
            max_size: Self::DEFAULT_MAX_SIZE,
            max_line: Self::RFC_MAX_LINE,
        }
    }
}

/// What one call to [`DataReader::feed`] achieved.
///
/// Both final variants carry `consumed`: the number of bytes of the chunk just fed that belonged to the DATA
/// phase, terminator included. The bytes after them are the client's next (pipelined) command and must be
/// kept for the command parser, never dropped and never treated as message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The whole chunk was consumed and the terminator has not been seen yet: read more and feed again.
    NeedMore,
    /// The real end of data was reached and the message is acceptable: the bytes appended to the output buffer
    /// during this DATA phase are the complete message.
    Done {
        /// Bytes of the last chunk that belonged to the DATA phase.
        consumed: usize,
    },
    /// The real end of data was reached but the message must be refused; the bytes appended to the output
    /// buffer are an incomplete prefix and must be discarded. Reply with [`DataError::reply`].
    Rejected {
        /// Bytes of the last chunk that belonged to the DATA phase.
        consumed: usize,
        /// The first violation found in the message.
        error: DataError,
    },
}

impl Progress {
    /// How many bytes of the chunk belonged to the DATA phase, once it has ended; `None` while it goes on.
    /// A convenience for the session, which advances its read buffer by this whatever the outcome.
    pub fn consumed(&self) -> Option<usize> {
        match *self {
            Progress::NeedMore => None,
            Progress::Done { consumed } | Progress::Rejected { consumed, .. } => Some(consumed),
        }
    }
}
