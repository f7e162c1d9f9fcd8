//! `mailctl_greylist`, `mailctl_greylist_networks`: greylisting's triplets and exempt client networks
//! ([`crate::smtp::inbound::greylist`]).

use super::{Tx, on_conn};
use crate::error::{Error, Result};

impl Tx {
    /// The triplet's first sighting and when a retry was taken (0: not yet), if it was seen.
    pub async fn greylist_entry(
        &mut self,
        network: &str,
        sender: &str,
        recipient: &str,
    ) -> Result<Option<(i64, i64)>> {
        let sql = "SELECT first_seen, passed FROM mailctl_greylist \
                   WHERE network = ? AND sender = ? AND recipient = ?";
        on_conn!(self, |c| sqlx::query_as::<_, (i64, i64)>(sql)
            .bind(network)
            .bind(sender)
            .bind(recipient)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the greylist", e))
    }

    /// Sets the triplet to first seen `first_seen`, passed at `passed` (0: not yet), replacing what was there.
    pub async fn set_greylist_entry(
        &mut self,
        network: &str,
        sender: &str,
        recipient: &str,
        first_seen: i64,
        passed: i64,
    ) -> Result<()> {
        // REPLACE: one statement on SQLite and MySQL alike, so two sessions adding the same triplet at once
        // cannot collide on the key.
        let sql = "REPLACE INTO mailctl_greylist (network, sender, recipient, first_seen, passed) \
                   VALUES (?, ?, ?, ?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(network)
            .bind(sender)
            .bind(recipient)
            .bind(first_seen)
            .bind(passed)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db("writing the greylist", e))?;
        Ok(())
    }

    /// Until when `network` is exempt (0 when it is not listed).
    pub async fn greylist_network_until(&mut self, network: &str) -> Result<i64> {
        let sql = "SELECT until FROM mailctl_greylist_networks WHERE network = ?";
        let row: Option<(i64,)> = on_conn!(self, |c| sqlx::query_as(sql)
            .bind(network)
            .fetch_optional(&mut *c)
            .await)
        .map_err(|e| Error::db("reading the greylist", e))?;
        Ok(row.map_or(0, |(until,)| until))
    }

    /// Exempts `network` until `until` (seconds since the epoch).
    pub async fn exempt_greylist_network(&mut self, network: &str, until: i64) -> Result<()> {
        let sql = "REPLACE INTO mailctl_greylist_networks (network, until) VALUES (?, ?)";
        on_conn!(self, |c| sqlx::query(sql)
            .bind(network)
            .bind(until)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db("writing the greylist", e))?;
        Ok(())
    }

    /// Drops triplets first seen before `before` that never passed, and exemptions that ended before `now`.
    pub async fn prune_greylist(&mut self, before: i64, now: i64) -> Result<()> {
        let triplets = "DELETE FROM mailctl_greylist WHERE passed = 0 AND first_seen < ?";
        let networks = "DELETE FROM mailctl_greylist_networks WHERE until < ?";
        on_conn!(self, |c| sqlx::query(triplets)
            .bind(before)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db("pruning the greylist", e))?;
        on_conn!(self, |c| sqlx::query(networks)
            .bind(now)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| Error::db("pruning the greylist", e))?;
        Ok(())
    }
}
