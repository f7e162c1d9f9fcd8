//! The envelope half of the dialogue, after EHLO (inside TLS when there is TLS): an unknown recipient must be
//! refused at RCPT, and with `--relay-test` an outside sender must not reach an outside recipient. It never sends
//! DATA, and ends with RSET and QUIT.

use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{Conn, ConnError};
use super::reply::Reply;
use super::session::{Outcome, Target};
use crate::audit::{Finding, Status};

/// Outside sender of the relay test.
const RELAY_FROM: &str = "audit@example.com";
/// Outside recipient of the relay test.
const RELAY_TO: &str = "relay-test@example.net";

/// A random local part nobody has: 24 lower-case letters and digits.
fn random_local_part() -> String {
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| {
            let i = rng.gen_range(0..36u8);
            char::from(if i < 10 { b'0' + i } else { b'a' + i - 10 })
        })
        .collect()
}

/// The unknown-recipient test, the relay test when asked, then RSET and QUIT.
pub async fn envelope<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Target<'_>,
    mut conn: Conn<S>,
    out: &mut Outcome,
) {
    let finding = match rcpt_unknown(t, &mut conn).await {
        Ok(f) => f,
        Err(f) => {
            out.findings.push(f);
            return;
        }
    };
    out.findings.push(finding);
    if t.relay_test {
        match relay(t, &mut conn).await {
            Ok(f) => out.findings.push(f),
            Err(f) => {
                out.findings.push(f);
                return;
            }
        }
    }
    conn.finish().await;
}

/// Whether a RCPT refusal is about the sender, not the recipient: Postfix delays sender checks to RCPT
/// (`smtpd_delay_reject`), so an unresolvable probe sender would otherwise read as "unknown recipient refused".
fn refuses_sender(r: &Reply) -> bool {
    let text = r.lines.join(" ").to_ascii_lowercase();
    matches!(r.enhanced_code(), Some((_, 1, 7 | 8))) || text.contains("sender address rejected")
}

/// `Err` carries an UNKNOWN finding when the connection broke (the session cannot go on).
async fn rcpt_unknown<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Target<'_>,
    conn: &mut Conn<S>,
) -> Result<Finding, Finding> {
    const ID: &str = "smtp.rcpt_unknown";
    let broken = |cmd: &str, e: ConnError| {
        t.finding(ID, Status::Unknown, format!("could not test: {cmd}: {e}"))
    };
    let from = format!("MAIL FROM:<postmaster@{}>", t.helo);
    match conn.command(&from).await {
        Ok(r) if r.is_positive() => {}
        Ok(r) => {
            return Ok(t.finding(
                ID,
                Status::Unknown,
                format!("could not test: {from} answered {r}"),
            ));
        }
        Err(e) => return Err(broken(&from, e)),
    }
    let rcpt = format!("RCPT TO:<{}@{}>", random_local_part(), t.domain);
    let r = conn.command(&rcpt).await.map_err(|e| broken(&rcpt, e))?;
    Ok(if refuses_sender(&r) {
        t.finding(
            ID,
            Status::Unknown,
            format!(
                "could not test: {rcpt} answered {r}, which refuses the probe's sender postmaster@{} rather \
                 than the recipient; give this host a resolvable name (server.hostname)",
                t.helo
            ),
        )
    } else if r.is_permanent() {
        t.finding(
            ID,
            Status::Pass,
            format!("unknown recipient rejected at RCPT: {rcpt} answered {r}"),
        )
    } else if r.is_transient() {
        t.finding(
            ID,
            Status::Warn,
            format!("{rcpt} answered {r}: refused for now (greylisting?), so whether unknown recipients are \
                     rejected could not be seen"),
        )
    } else {
        let detail = if r.is_positive() {
            format!("accepts unknown recipients then bounces (backscatter): {rcpt} answered {r}")
        } else {
            format!("unexpected reply to {rcpt}: {r}")
        };
        t.finding(ID, Status::Fail, detail).fix(
            "reject unknown recipients at RCPT (Postfix: smtpd_reject_unlisted_recipient = yes with \
             virtual_mailbox_maps / virtual_alias_maps listing the real addresses)",
        )
    })
}

/// `Err` carries an UNKNOWN finding when the connection broke.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Target<'_>,
    conn: &mut Conn<S>,
) -> Result<Finding, Finding> {
    const ID: &str = "smtp.relay";
    let broken = |cmd: &str, e: ConnError| {
        t.finding(ID, Status::Unknown, format!("could not test: {cmd}: {e}"))
    };
    conn.command("RSET").await.map_err(|e| broken("RSET", e))?;
    let from = format!("MAIL FROM:<{RELAY_FROM}>");
    let r = conn.command(&from).await.map_err(|e| broken(&from, e))?;
    if !r.is_positive() {
        return Ok(t.finding(
            ID,
            Status::Pass,
            format!("relaying refused: {from} answered {r}"),
        ));
    }
    let rcpt = format!("RCPT TO:<{RELAY_TO}>");
    let r = conn.command(&rcpt).await.map_err(|e| broken(&rcpt, e))?;
    Ok(if r.is_positive() {
        t.finding(
            ID,
            Status::Fail,
            format!("open relay: after {from}, {rcpt} answered {r} (no DATA was sent)"),
        )
        .fix(
            "relay only for your own users (Postfix: smtpd_relay_restrictions = permit_mynetworks, \
              permit_sasl_authenticated, reject_unauth_destination)",
        )
    } else {
        t.finding(
            ID,
            Status::Pass,
            format!("relaying refused: {rcpt} answered {r}"),
        )
    })
}
