//! Timestamps as the postfixadmin schema stores them: `YYYY-MM-DD HH:MM:SS` in UTC.
//!
//! Storage and JSON are UTC (JSON in RFC 3339); only human tables show local time.

use chrono::{DateTime, Local, NaiveDateTime, Utc};

const DB_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The current time in the database's column format.
pub fn now_db() -> String {
    to_db(Utc::now())
}

/// `time` in the database's column format.
pub fn to_db(time: DateTime<Utc>) -> String {
    time.format(DB_FORMAT).to_string()
}

/// A stored timestamp as a UTC time, if it parses.
pub fn parse_db(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), DB_FORMAT)
        .ok()
        .map(|n| n.and_utc())
}

/// A stored timestamp as RFC 3339 UTC for JSON; unparseable values pass through unchanged.
pub fn db_to_rfc3339(s: &str) -> String {
    parse_db(s).map_or_else(
        || s.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// A stored timestamp in local time for human tables.
pub fn db_to_local(s: &str) -> String {
    parse_db(s).map_or_else(
        || s.to_string(),
        |t| t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// The UTC date of `t`, `YYYY-MM-DD` (certificate validity in messages).
pub fn date(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "an unreadable date".into())
}

/// RFC 3339 (UTC, whole seconds) of Unix seconds.
pub fn rfc3339_secs(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_become_rfc3339() {
        assert_eq!(db_to_rfc3339("2026-11-28 16:22:00"), "2026-11-28T16:22:00Z");
        assert_eq!(db_to_rfc3339("garbage"), "garbage");
        assert_eq!(now_db().len(), 19);
    }
}
