//! Queue ids: short, time-ordered, safe to use as file names, and checked whenever one comes from outside.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::QueueError;

/// Hex digits of the time part (microseconds since 1970; enough until the year 4253).
const TIME_DIGITS: usize = 14;
/// Hex digits of the random part (40 bits: collisions within one microsecond are negligible, and the spool
/// refuses to overwrite an existing entry anyway).
const RANDOM_DIGITS: usize = 10;

/// The id of one queued message: 24 lowercase hex digits, the queue time in microseconds followed by random
/// bits, so ids sort oldest first and name files without escaping. Parsing rejects anything else, which is
/// what keeps `mailctl queue show ../../etc/passwd` from ever reaching the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

impl QueueId {
    /// A fresh id for a message queued at `now`.
    pub fn generate(now: DateTime<Utc>) -> QueueId {
        let micros = u64::try_from(now.timestamp_micros()).unwrap_or(0) & ((1 << 56) - 1);
        let random = rand::random::<u64>() & ((1 << 40) - 1);
        QueueId(format!("{micros:014x}{random:010x}"))
    }

    /// Checks and wraps an id given by a user, a file name or a record.
    pub fn parse(text: &str) -> Result<QueueId, QueueError> {
        let ok = text.len() == TIME_DIGITS + RANDOM_DIGITS
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(QueueId(text.to_string()))
        } else {
            Err(QueueError::BadId(text.chars().take(64).collect()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    /// Writes the 24 hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for QueueId {
    type Err = QueueError;

    /// Same as [`QueueId::parse`], for clap and `str::parse`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueId::parse(s)
    }
}

impl TryFrom<String> for QueueId {
    type Error = QueueError;

    /// Validates ids read back from JSON records.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        QueueId::parse(&value)
    }
}

impl From<QueueId> for String {
    /// The id as an owned string, for JSON.
    fn from(id: QueueId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_sortable_and_validated() {
        let early = QueueId::generate(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        let late = QueueId::generate(DateTime::from_timestamp(1_800_000_001, 0).unwrap());
        assert!(early < late);
        assert_eq!(QueueId::parse(early.as_str()).unwrap(), early);
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789abcdef0123456G",
            "0123456789ABCDEF01234567",
        ] {
            assert!(
                matches!(QueueId::parse(bad), Err(QueueError::BadId(_))),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<QueueId>("\"../x\"").is_err());
    }
}
