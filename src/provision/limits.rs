//! Sending limits of logged-in users: what a mailbox may send (messages per hour, recipients per day, recipients
//! it never wrote to before per day), set for `default`, a domain or an address; each kind of limit comes from
//! the most specific scope that sets it (address, then domain, then default). Usage is counted per sender in the
//! database per UTC hour and day, so every node on the database enforces the same counters.
//!
//! The breaker: a sender whose attempts in one hour (messages sent plus attempts refused over the limit) reach
//! [`BREAKER_FACTOR`] times its hourly limit, or whose recipients other servers refused as unknown reach its
//! daily limit of those, is taken for a stolen password; `serve` turns SMTP off for the mailbox
//! (`smtp_active = 0`), holds its queued mail and tells the postmaster.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Address, DomainName};
use crate::store::{SendLimitRow, SendUsageRow, Tx};

/// Attempts per hour, as a multiple of the hourly limit, that trip the breaker.
pub const BREAKER_FACTOR: i64 = 10;

/// Who a limit row is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every sender without a more specific limit.
    Default,
    /// The senders of a domain.
    Domain(DomainName),
    /// One sender.
    Address(Address),
}

impl Scope {
    /// `default`, a domain or an address; Err (a usage error) names what is wrong.
    pub fn parse(text: &str) -> Result<Scope> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("default") {
            return Ok(Scope::Default);
        }
        if text.contains('@') {
            return text
                .parse::<Address>()
                .map(Scope::Address)
                .map_err(|e| Error::usage(format!("'{text}': {e}")));
        }
        text.parse::<DomainName>().map(Scope::Domain).map_err(|e| {
            Error::usage(format!(
                "'{text}' is not default, a domain or an address: {e}"
            ))
        })
    }

    /// As stored.
    pub fn key(&self) -> String {
        match self {
            Scope::Default => "default".to_string(),
            Scope::Domain(d) => d.to_string(),
            Scope::Address(a) => a.to_string().to_ascii_lowercase(),
        }
    }

    /// Refuses a domain that is not hosted or an address that is no mailbox.
    pub async fn require(&self, tx: &mut Tx) -> Result<()> {
        match self {
            Scope::Default => Ok(()),
            Scope::Domain(d) => super::require_domain(tx, d).await.map(|_| ()),
            Scope::Address(a) => super::require_mailbox(tx, a).await.map(|_| ()),
        }
    }
}

/// One limit in force and the scope it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// The limit.
    pub value: i64,
    /// `default`, the domain or the address.
    pub from: String,
}

/// The limits in force for one sender.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Messages per hour.
    pub messages_per_hour: Option<Limit>,
    /// Recipients per day.
    pub recipients_per_day: Option<Limit>,
    /// Recipients never written to before, per day.
    pub new_recipients_per_day: Option<Limit>,
    /// Recipients other servers refuse as unknown, per day, before the breaker trips.
    pub unknown_recipients_per_day: Option<Limit>,
}

impl Limits {
    /// Whether no limit applies (then nothing is counted either).
    pub fn is_empty(&self) -> bool {
        self.messages_per_hour.is_none()
            && self.recipients_per_day.is_none()
            && self.new_recipients_per_day.is_none()
            && self.unknown_recipients_per_day.is_none()
    }
}

/// The limits in force for `address`: each kind from the most specific scope that sets it.
pub async fn effective(tx: &mut Tx, address: &Address) -> Result<Limits> {
    let own = address.to_string().to_ascii_lowercase();
    let domain = address.domain.to_string();
    let rows = tx.send_limits_of(&[&own, &domain, "default"]).await?;
    let ordered: Vec<&SendLimitRow> = [own.as_str(), domain.as_str(), "default"]
        .iter()
        .filter_map(|scope| rows.iter().find(|r| r.scope == *scope))
        .collect();
    let pick = |get: fn(&SendLimitRow) -> Option<i64>| {
        ordered.iter().find_map(|r| {
            get(r).map(|value| Limit {
                value,
                from: r.scope.clone(),
            })
        })
    };
    Ok(Limits {
        messages_per_hour: pick(|r| r.messages_per_hour),
        recipients_per_day: pick(|r| r.recipients_per_day),
        new_recipients_per_day: pick(|r| r.new_recipients_per_day),
        unknown_recipients_per_day: pick(|r| r.unknown_recipients_per_day),
    })
}

/// The hour `now` is in, as a usage period: `H2026120723`.
pub fn hour(now: DateTime<Utc>) -> String {
    now.format("H%Y%m%d%H").to_string()
}

/// The day `now` is in, as a usage period: `D20261207`.
pub fn day(now: DateTime<Utc>) -> String {
    now.format("D%Y%m%d").to_string()
}

/// What a sender sent this hour and today.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// This hour: messages and refused attempts count.
    pub hour: SendUsageRow,
    /// Today: recipients and new recipients count.
    pub day: SendUsageRow,
}

/// What `address` sent in the hour and the day of `now`.
pub async fn usage(tx: &mut Tx, address: &str, now: DateTime<Utc>) -> Result<Usage> {
    let (h, d) = (hour(now), day(now));
    let rows = tx.send_usage(address, &[&h, &d]).await?;
    let find = |period: &str| {
        rows.iter()
            .find(|r| r.period == period)
            .cloned()
            .unwrap_or_else(|| SendUsageRow {
                address: address.to_string(),
                period: period.to_string(),
                ..SendUsageRow::default()
            })
    };
    Ok(Usage {
        hour: find(&h),
        day: find(&d),
    })
}

/// Counts `n` recipients of `address` refused as unknown by other servers at `now`; returns today's total.
pub async fn count_unknown(tx: &mut Tx, address: &str, n: i64, now: DateTime<Utc>) -> Result<i64> {
    tx.add_send_usage(&SendUsageRow {
        address: address.to_string(),
        period: day(now),
        unknown: n,
        ..SendUsageRow::default()
    })
    .await?;
    Ok(usage(tx, address, now).await?.day.unknown)
}

/// Whether `attempts` in one hour against the hourly `limit` trip the breaker.
pub fn trips(attempts: i64, limit: i64) -> bool {
    attempts >= BREAKER_FACTOR.saturating_mul(limit.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_name_what_is_wrong() {
        assert_eq!(Scope::parse("default").unwrap(), Scope::Default);
        assert_eq!(Scope::parse("Example.ORG").unwrap().key(), "example.org");
        assert_eq!(
            Scope::parse("Alice@Example.org").unwrap().key(),
            "alice@example.org"
        );
        assert!(Scope::parse("not a domain").is_err());
        assert!(Scope::parse("@example.org").is_err());
    }

    #[test]
    fn periods_sort_in_time_order() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(hour(t("2026-12-07T23:59:59Z")), "H2026120723");
        assert_eq!(day(t("2026-12-07T23:59:59Z")), "D20261207");
        assert!(hour(t("2026-12-07T09:00:00Z")) < hour(t("2026-12-07T10:00:00Z")));
    }

    #[test]
    fn the_breaker_trips_at_ten_times_the_hourly_limit() {
        assert!(!trips(19, 2));
        assert!(trips(20, 2));
        assert!(trips(10, 0), "a zero limit counts as one");
    }
}
