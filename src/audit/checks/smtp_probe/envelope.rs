//! The envelope half of the dialogue, after EHLO (inside TLS when there is TLS): an unknown recipient must be
//! refused at RCPT, and with `--relay-test` an outside sender must not reach an outside recipient. It never sends
//! DATA, and ends with RSET and QUIT.
//!
//! A refusal counts only when it is about the address tested. Servers also refuse the auditing client itself
//! (its IP on a blocklist: "Client host rejected", "blocked using"; its EHLO name: "Helo command rejected";
//! policy `5.7.x`; a command they dislike: `5.5.x`) and the probe's sender (`5.1.7`/`5.1.8`, "Sender address
//! rejected", which Postfix delays to RCPT): such refusals are UNKNOWN ("could not test"), never PASS.
//!
//! Both tests use the sender `postmaster@HELO-NAME`: the auditing host's own name, which resolves (or the
//! unknown-recipient test already reports the sender refused), so `reject_unknown_sender_domain` and similar
//! sender checks accept it; it is outside the audited domain, as a relay attempt's sender must be; and
//! `postmaster` exists at every mail domain (RFC 5321 4.5.1). A made-up sender such as `audit@example.com` is
//! refused by any server checking sender domains (example.com publishes a null MX), which would read as
//! "relaying refused" without relaying ever being tried.

use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::{Conn, ConnError};
use super::reply::Reply;
use super::session::{Outcome, Target};
use crate::audit::{Finding, Status};

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

/// The reply's text, lower-case, every line.
fn text(r: &Reply) -> String {
    r.lines.join(" ").to_ascii_lowercase()
}

/// Whether a RCPT refusal is about the sender, not the recipient: Postfix delays sender checks to RCPT
/// (`smtpd_delay_reject`), so an unresolvable probe sender would otherwise read as "unknown recipient refused".
fn refuses_sender(r: &Reply) -> bool {
    matches!(r.enhanced_code(), Some((_, 1, 7 | 8))) || text(r).contains("sender address rejected")
}

/// Whether a refusal is aimed at the auditing client (its IP, its EHLO name, a command it sent), not at an
/// address: Postfix's `reject_rbl_client`, `reject_unknown_client_hostname`, `reject_*_helo_hostname`.
fn refuses_client(r: &Reply) -> bool {
    let text = text(r);
    [
        "client host rejected",
        "helo command rejected",
        "blocked using",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Whether a permanent RCPT refusal says the recipient address is unknown or invalid: an enhanced status
/// `5.1.x` (RFC 3463 "addressing status": 5.1.1 bad mailbox, 5.1.10 null MX, ...), or without an enhanced
/// status the codes RFC 5321 gives for a bad mailbox (550, 551, 553).
fn refuses_recipient(r: &Reply) -> bool {
    match r.enhanced_code() {
        Some((_, subject, _)) => subject == 1,
        None => matches!(r.code, 550 | 551 | 553),
    }
}

/// Whether a RCPT refusal is a refusal to relay: `x.7.1` (delivery not authorized), 554 (Postfix's "Relay
/// access denied"), or a reply mentioning relaying (Exchange's `5.7.54 Unable to relay`).
fn refuses_relay(r: &Reply) -> bool {
    !r.is_positive()
        && (matches!(r.enhanced_code(), Some((_, 7, 1)))
            || r.code == 554
            || text(r).contains("relay"))
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
    } else if r.is_permanent() && !refuses_client(&r) && refuses_recipient(&r) {
        t.finding(
            ID,
            Status::Pass,
            format!("unknown recipient rejected at RCPT: {rcpt} answered {r}"),
        )
    } else if r.is_permanent() || refuses_client(&r) {
        t.finding(
            ID,
            Status::Unknown,
            format!(
                "could not test: {rcpt} answered {r}: the server refused the auditing client, not the \
                 recipient (no x.1.x \"bad address\" status); run the audit from a host the server accepts mail \
                 from"
            ),
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

/// `Err` carries an UNKNOWN finding when the connection broke. PASS only when MAIL was accepted and the RCPT to
/// the outside recipient itself was refused as relaying.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Target<'_>,
    conn: &mut Conn<S>,
) -> Result<Finding, Finding> {
    const ID: &str = "smtp.relay";
    let broken = |cmd: &str, e: ConnError| {
        t.finding(ID, Status::Unknown, format!("could not test: {cmd}: {e}"))
    };
    let unknown =
        |detail: String| t.finding(ID, Status::Unknown, format!("could not test: {detail}"));
    conn.command("RSET").await.map_err(|e| broken("RSET", e))?;
    let from = format!("MAIL FROM:<postmaster@{}>", t.helo);
    let r = conn.command(&from).await.map_err(|e| broken(&from, e))?;
    if !r.is_positive() {
        let whom = if refuses_sender(&r) {
            "the sender"
        } else {
            "the auditing client"
        };
        return Ok(unknown(format!(
            "{from} answered {r}: the server refused {whom}, so relaying was never tried"
        )));
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
    } else if refuses_sender(&r) {
        unknown(format!(
            "{rcpt} answered {r}, which refuses the probe's sender rather than the relay attempt"
        ))
    } else if refuses_client(&r) || !refuses_relay(&r) {
        unknown(format!(
            "{rcpt} answered {r}: refused, but not as relaying (the server refused the auditing client, or \
             gave no relay status such as 5.7.1)"
        ))
    } else {
        t.finding(
            ID,
            Status::Pass,
            format!("relaying refused: {rcpt} answered {r}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checks::smtp_probe::reply::parse_reply;

    fn reply(s: &str) -> Reply {
        parse_reply(&format!("{s}\r\n")).unwrap()
    }

    #[test]
    fn only_address_refusals_judge_the_recipient() {
        let judged = |s: &str| {
            let r = reply(s);
            !refuses_sender(&r) && !refuses_client(&r) && refuses_recipient(&r)
        };
        assert!(judged(
            "550 5.1.1 <x@y>: Recipient address rejected: User unknown"
        ));
        assert!(judged("550 5.1.10 RESOLVER.ADR.RecipientNotFound"));
        assert!(judged("550 No such user here"));
        assert!(judged("553 mailbox name not allowed"));
        assert!(!judged(
            "554 5.7.1 <a.b>: Client host rejected: Access denied"
        ));
        assert!(!judged(
            "550 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen"
        ));
        assert!(!judged(
            "504 5.5.2 <x>: Helo command rejected: need fully-qualified hostname"
        ));
        assert!(!judged(
            "550 Client host rejected: cannot find your hostname"
        ));
        assert!(!judged(
            "553 5.1.8 <p@h>: Sender address rejected: Domain not found"
        ));
        assert!(!judged("554 Transaction failed"));
    }

    #[test]
    fn relay_refusals_are_told_apart() {
        assert!(refuses_relay(&reply(
            "554 5.7.1 <r@example.net>: Relay access denied"
        )));
        assert!(refuses_relay(&reply(
            "454 4.7.1 <r@example.net>: Relay access denied"
        )));
        assert!(refuses_relay(&reply(
            "550 5.7.54 SMTP; Unable to relay recipient"
        )));
        assert!(refuses_relay(&reply("554 Relay access denied")));
        assert!(!refuses_relay(&reply("550 5.1.1 User unknown")));
        assert!(!refuses_relay(&reply("250 2.1.5 Ok")));
        assert!(refuses_client(&reply(
            "554 5.7.1 Client host rejected: Access denied"
        )));
    }
}
