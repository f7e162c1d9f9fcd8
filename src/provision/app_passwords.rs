//! App passwords and the TOTP rule, as postfixadmin 3.3+/4 keeps them: several passwords per mailbox for
//! mail clients (`mailbox_app_password`), and a TOTP secret that restricts mail logins to app passwords
//! except from the listed addresses (`totp_exception_address`).

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::model::{Address, DomainName};
use crate::store::{AppPasswordRow, TotpExceptionRow, Tx};

use super::{free_text, require_domain, require_mailbox};

/// Stores an app password (already hashed) for `addr`; one with the same description is replaced. Returns
/// the row and whether it replaced one.
pub async fn add_app_password(
    tx: &mut Tx,
    addr: &Address,
    description: &str,
    hash: &str,
) -> Result<(AppPasswordRow, bool)> {
    let description = free_text("--description", description)?;
    if description.trim().is_empty() {
        return Err(Error::usage(
            "--description must say what the password is for (e.g. \"phone\")",
        ));
    }
    require_mailbox(tx, addr).await?;
    let username = addr.to_string();
    let (id, replaced) = tx.add_app_password(&username, &description, hash).await?;
    Ok((
        AppPasswordRow {
            id,
            username,
            description,
        },
        replaced,
    ))
}

/// Revokes app password `id`.
pub async fn revoke_app_password(tx: &mut Tx, id: i64) -> Result<AppPasswordRow> {
    tx.delete_app_password(id)
        .await?
        .ok_or_else(|| Error::not_found("app password", id))
}

/// Gives `addr` a new random TOTP secret (base32, 160 bits, as authenticator apps take it); returns it.
pub async fn enable_totp(tx: &mut Tx, addr: &Address) -> Result<String> {
    require_mailbox(tx, addr).await?;
    let secret = random_base32(20);
    tx.set_totp_secret(&addr.to_string(), Some(&secret)).await?;
    Ok(secret)
}

/// Removes `addr`'s TOTP secret: its main password works for mail logins again.
pub async fn disable_totp(tx: &mut Tx, addr: &Address) -> Result<()> {
    require_mailbox(tx, addr).await?;
    tx.set_totp_secret(&addr.to_string(), None).await?;
    Ok(())
}

/// Whom a TOTP exception is for: a mailbox, a domain, or (None) everyone.
pub async fn add_totp_exception(
    tx: &mut Tx,
    ip: &str,
    whom: Option<&str>,
    description: &str,
) -> Result<TotpExceptionRow> {
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| Error::usage(format!("'{ip}' is not an IP address")))?;
    let description = free_text("--description", description)?;
    let username = match whom {
        None => None,
        Some(w) if w.contains('@') => {
            let addr: Address = w.parse().map_err(Error::Usage)?;
            require_mailbox(tx, &addr).await?;
            Some(addr.to_string())
        }
        Some(w) => {
            let domain: DomainName = w.parse().map_err(Error::Usage)?;
            require_domain(tx, &domain).await?;
            Some(domain.to_string())
        }
    };
    // As serve compares it: an IPv4-mapped IPv6 address is the IPv4 address.
    let ip = ip.to_canonical().to_string();
    let id = tx
        .add_totp_exception(&ip, username.as_deref(), &description)
        .await?
        .ok_or_else(|| {
            Error::exists(
                "TOTP exception",
                format!("{ip} for {}", username.as_deref().unwrap_or("everyone")),
            )
        })?;
    Ok(TotpExceptionRow {
        id,
        ip,
        username,
        description,
    })
}

/// Deletes TOTP exception `id`.
pub async fn delete_totp_exception(tx: &mut Tx, id: i64) -> Result<()> {
    if tx.delete_totp_exception(id).await? {
        Ok(())
    } else {
        Err(Error::not_found("TOTP exception", id))
    }
}

/// The password hashes that log `username` in: none unless the mailbox and its domain are active (and
/// `smtp_active` too, for `smtp`); the main password when `main_from` names the client and postfixadmin's TOTP
/// rule lets it in from there (no secret, or an exception address); then every app password. Submission AUTH
/// asks with the client; Dovecot's checkpassword passdb (`mailctl checkpassword`) without, its SQL passdb having
/// tried the main password already.
pub async fn login_hashes(
    tx: &mut Tx,
    username: &str,
    smtp: bool,
    main_from: Option<&str>,
) -> Result<Vec<String>> {
    let Some(mailbox) = tx.mailbox(username).await? else {
        return Ok(Vec::new());
    };
    let domain_active = tx.domain(&mailbox.domain).await?.is_some_and(|d| d.active);
    if !mailbox.active || !domain_active || (smtp && !mailbox.smtp_active) {
        return Ok(Vec::new());
    }
    let mut hashes = Vec::new();
    if let Some(ip) = main_from
        && (tx.totp_secret(username).await?.is_none() || tx.totp_exempt(username, ip).await?)
    {
        hashes.push(mailbox.password);
    }
    hashes.extend(tx.app_password_hashes(username).await?);
    Ok(hashes)
}

/// `bytes` random bytes in RFC 4648 base32, without padding.
fn random_base32(bytes: usize) -> String {
    use rand::RngCore;
    let mut raw = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base32(&raw)
}

/// RFC 4648 base32 without padding.
fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_is_rfc_4648() {
        // RFC 4648 section 10 test vectors (without padding).
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected);
        }
        assert_eq!(random_base32(20).len(), 32);
    }
}
