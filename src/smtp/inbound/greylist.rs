//! Greylisting (`[server.greylisting]`, off by default): on the MX listener, a message whose client network
//! (the /24 of an IPv4 address, the /64 of an IPv6 one), envelope sender and recipient were never seen together
//! is deferred with `451 4.7.1` at the end of DATA; a real MTA retries, and a retry after `delay` (within
//! `retry_window`) is taken. A network that retried once is exempt for `whitelist_days`: its servers are real
//! MTAs. Logged-in users are never greylisted, and neither is mail that passed DMARC aligned (which is why the
//! decision waits for the end of DATA, when DMARC is known). The triplets live in the database, so every node
//! agrees; a database that does not answer lets the mail through (greylisting is a filter, not a guarantee).

use std::net::IpAddr;

use crate::error::Result;
use crate::smtp::settings::GreylistSettings;
use crate::store::Store;

/// What greylisting says about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Take it.
    Pass,
    /// Defer it; a retry in this many seconds is taken.
    Defer(u64),
}

/// The client network greylisting keys on: `192.0.2.0/24`, `2001:db8:1:2::/64`.
pub fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The decision for a message from `ip` with envelope `sender` to `recipients` at `now` (seconds since the
/// epoch), recording what it saw: every recipient's triplet must have waited out the delay.
pub async fn check(
    store: &Store,
    settings: &GreylistSettings,
    ip: IpAddr,
    sender: &str,
    recipients: &[String],
    now: i64,
) -> Result<Decision> {
    let net = network(ip);
    // The columns hold 255 characters; a longer address is keyed by its first 255 (it still waits).
    let key = |text: &str| {
        text.to_ascii_lowercase()
            .chars()
            .take(255)
            .collect::<String>()
    };
    let sender = key(sender);
    let delay = settings.delay.as_secs() as i64;
    let window = settings.retry_window.as_secs() as i64;
    // Most mail comes from networks that retried before, or retries too early: reads settle those, and a
    // write transaction is opened only for what changes.
    let mut tx = store.begin().await?;
    if tx.greylist_network_until(&net).await? >= now {
        tx.rollback().await?;
        return Ok(Decision::Pass);
    }
    let mut wait = 0i64;
    // The triplets to write: (recipient, first seen, passed).
    let mut writes = Vec::new();
    for recipient in recipients {
        let recipient = key(recipient);
        // A triplet whose retry window ended starts over, as a new one.
        let entry = tx
            .greylist_entry(&net, &sender, &recipient)
            .await?
            .filter(|&(first, passed)| passed > 0 || now - first <= window);
        match entry {
            Some((_, passed)) if passed > 0 => {}
            Some((first, _)) if now - first < delay => wait = wait.max(delay - (now - first)),
            Some((first, _)) => writes.push((recipient, first, now)),
            None => {
                writes.push((recipient, now, 0));
                wait = wait.max(delay);
            }
        }
    }
    tx.rollback().await?;
    let decision = match wait {
        0 => Decision::Pass,
        w => Decision::Defer(u64::try_from(w).unwrap_or(0)),
    };
    if writes.is_empty() {
        return Ok(decision);
    }
    let retried = writes.iter().any(|&(_, _, passed)| passed > 0);
    let mut tx = store.begin_write().await?;
    for (recipient, first, passed) in &writes {
        tx.set_greylist_entry(&net, &sender, recipient, *first, *passed)
            .await?;
    }
    if wait == 0 && retried {
        let until = now.saturating_add(settings.whitelist.as_secs() as i64);
        tx.exempt_greylist_network(&net, until).await?;
        tx.prune_greylist(now - window, now).await?;
    }
    tx.commit().await?;
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_the_slash_24_and_the_slash_64() {
        assert_eq!(network("192.0.2.77".parse().unwrap()), "192.0.2.0/24");
        assert_eq!(
            network("::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.0/24"
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
