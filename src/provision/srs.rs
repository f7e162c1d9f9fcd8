//! The SRS secrets' rules: there is always one to sign with once `serve` has started ([`ensure_secret`]), a new
//! one signs from its creation on ([`rotate`]) while older ones keep verifying the addresses they signed, and
//! a secret is dropped once every address it signed has expired (its successor is older than
//! [`crate::srs::MAX_AGE_DAYS`] + 1 days).

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::srs::{MAX_AGE_DAYS, Srs};
use crate::store::Tx;
use crate::time::{parse_db, to_db};

/// A fresh random secret: 24 random bytes in base64 (32 characters, one line, as postsrsd's secret file holds).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The scheme over every stored secret, newest first.
pub async fn load(tx: &mut Tx) -> Result<Srs> {
    let rows = tx.srs_secrets().await?;
    Ok(Srs::new(rows.iter().map(|r| r.secret.as_bytes())))
}

/// Creates the first secret if there is none; true when it did.
pub async fn ensure_secret(tx: &mut Tx) -> Result<bool> {
    if !tx.srs_secrets().await?.is_empty() {
        return Ok(false);
    }
    tx.add_srs_secret(&new_secret(), &crate::time::now_db())
        .await?;
    Ok(true)
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    /// The new secret's id.
    pub id: i64,
    /// Older secrets kept because addresses they signed may still come back.
    pub kept: usize,
    /// Older secrets removed: every address they signed has expired.
    pub removed: usize,
}

/// Adds `secret` (or a random one) as the signing secret at `now` and drops the secrets no address can need.
/// A secret must be one line of 8 to 255 printable characters.
pub async fn rotate(tx: &mut Tx, secret: Option<String>, now: DateTime<Utc>) -> Result<Rotation> {
    let secret = match secret {
        Some(s) => {
            let s = s.trim().to_string();
            if s.len() < 8 || s.len() > 255 || s.chars().any(|c| c.is_control()) {
                return Err(Error::usage(
                    "an SRS secret must be one line of 8 to 255 characters",
                ));
            }
            s
        }
        None => new_secret(),
    };
    if tx.srs_secrets().await?.iter().any(|r| r.secret == secret) {
        return Err(Error::usage("that SRS secret is already stored"));
    }
    tx.add_srs_secret(&secret, &to_db(now)).await?;
    let rows = tx.srs_secrets().await?;
    let id = rows.first().map_or(0, |r| r.id);
    let cutoff = now - Duration::days(MAX_AGE_DAYS as i64 + 1);
    let mut removed = 0;
    for pair in rows.windows(2) {
        let (successor, older) = (&pair[0], &pair[1]);
        if parse_db(&successor.created).is_some_and(|t| t < cutoff) {
            tx.delete_srs_secret(older.id).await?;
            removed += 1;
        }
    }
    Ok(Rotation {
        id,
        kept: rows.len() - 1 - removed,
        removed,
    })
}
