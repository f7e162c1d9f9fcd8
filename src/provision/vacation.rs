//! Vacation auto-replies as postfixadmin keeps them (`vacation`, `vacation_notification`): what `mailctl
//! vacation` may set, checked before anything is written.

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::model::Address;
use crate::store::{Tx, VacationRow};

use super::{free_text, require_mailbox};

/// What `vacation set` asks for.
#[derive(Debug, Clone)]
pub struct VacationSettings {
    /// The reply's subject.
    pub subject: String,
    /// The reply's text.
    pub body: String,
    /// First day of replies (UTC), default now.
    pub from: Option<NaiveDate>,
    /// Last day of replies (UTC, through its end), default postfixadmin's 2038-01-18.
    pub until: Option<NaiveDate>,
    /// Days before the same sender hears it again; 0 (default): once per vacation.
    pub interval_days: i64,
}

/// The longest reply text: an auto-reply, not a newsletter.
const MAX_BODY: usize = 64 * 1024;

/// Sets `addr`'s vacation (replacing an earlier one; whom that one answered is forgotten).
pub async fn set_vacation(
    tx: &mut Tx,
    addr: &Address,
    s: &VacationSettings,
) -> Result<VacationRow> {
    let subject = free_text("--subject", &s.subject)?;
    if subject.trim().is_empty() {
        return Err(Error::usage("--subject must not be empty"));
    }
    if s.body.trim().is_empty() {
        return Err(Error::usage("the reply text (--body-file) is empty"));
    }
    if s.body.len() > MAX_BODY {
        return Err(Error::usage(format!(
            "the reply text is {} bytes; at most {MAX_BODY}",
            s.body.len()
        )));
    }
    if s.body.lines().any(|l| l.len() > 998) {
        return Err(Error::usage(
            "the reply text has a line longer than 998 bytes, which mail cannot carry",
        ));
    }
    if s.body.contains('\0') {
        return Err(Error::usage("the reply text contains NUL bytes"));
    }
    if !(0..=365).contains(&s.interval_days) {
        return Err(Error::usage(format!(
            "--interval must be 0 to 365 days, got {}",
            s.interval_days
        )));
    }
    // postfixadmin's MySQL columns are TIMESTAMPs, which end in January 2038.
    let last = NaiveDate::from_ymd_opt(2038, 1, 18).unwrap_or_default();
    if s.until.is_some_and(|u| u > last) || s.from.is_some_and(|f| f > last) {
        return Err(Error::usage(format!(
            "dates must be on or before {last} (postfixadmin's vacation table cannot hold later ones)"
        )));
    }
    if let (Some(from), Some(until)) = (s.from, s.until)
        && until < from
    {
        return Err(Error::usage(format!(
            "--until {until} is before --from {from}"
        )));
    }
    let mailbox = require_mailbox(tx, addr).await?;
    let activefrom = s
        .from
        .map_or_else(crate::time::now_db, |d| format!("{d} 00:00:00"));
    let activeuntil = s.until.map_or_else(
        || "2038-01-18 00:00:00".to_string(),
        |d| format!("{d} 23:59:59"),
    );
    let row = VacationRow {
        email: addr.to_string(),
        subject,
        body: s.body.replace("\r\n", "\n"),
        activefrom,
        activeuntil,
        interval_time: s.interval_days * 86_400,
        active: true,
    };
    tx.set_vacation(&row, &mailbox.domain).await?;
    Ok(row)
}

/// `addr`'s vacation, on or off.
pub async fn vacation(tx: &mut Tx, addr: &Address) -> Result<VacationRow> {
    require_mailbox(tx, addr).await?;
    tx.vacation(&addr.to_string())
        .await?
        .ok_or_else(|| Error::refused(format!("{addr} has no vacation set (mailctl vacation set)")))
}

/// Switches `addr`'s vacation off.
pub async fn vacation_off(tx: &mut Tx, addr: &Address) -> Result<()> {
    require_mailbox(tx, addr).await?;
    if tx.vacation_off(&addr.to_string()).await? {
        Ok(())
    } else {
        Err(Error::refused(format!(
            "{addr} has no vacation set (mailctl vacation set)"
        )))
    }
}
