//! How DKIM keys are shown: the record to publish, tables, JSON. The private key never appears here.

use serde::Serialize;

use crate::dkim::{self, KeyAlgorithm, Published};
use crate::error::{Error, Result};
use crate::output::{Render, table};
use crate::store::DkimKeyRow;
use crate::time::{db_to_local, db_to_rfc3339};

/// A key as printed; the private key never appears here.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub(super) domain: String,
    pub(super) selector: String,
    pub(super) algorithm: String,
    pub(super) bits: i64,
    pub(super) state: String,
    pub(super) created: String,
    pub(super) record_name: String,
    pub(super) record_value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) dns: Option<Published>,
}

impl KeyView {
    /// The view of a stored key.
    pub fn new(row: &DkimKeyRow) -> Result<Self> {
        let algorithm = KeyAlgorithm::from_signing_name(&row.algorithm).ok_or_else(|| {
            Error::refused(format!(
                "DKIM key {} of {} has unknown algorithm {}",
                row.selector, row.domain, row.algorithm
            ))
        })?;
        Ok(KeyView {
            record_name: format!("{}._domainkey.{}.", row.selector, row.domain),
            record_value: dkim::txt_value(algorithm, &row.public_key),
            domain: row.domain.clone(),
            selector: row.selector.clone(),
            algorithm: row.algorithm.clone(),
            bits: row.bits,
            state: row.state.clone(),
            created: db_to_rfc3339(&row.created),
            dns: None,
        })
    }

    /// The record in zone-file syntax.
    pub fn zone_line(&self) -> String {
        format!(
            "{}\t3600\tIN\tTXT\t{}",
            self.record_name,
            dkim::zone_txt_rdata(&self.record_value)
        )
    }
}

impl Render for KeyView {
    fn render(&self) -> String {
        self.zone_line()
    }
}

/// Keys for `dkim list`; the flag says whether a DNS column is shown.
pub struct KeyList(pub Vec<KeyView>, pub bool);

impl Serialize for KeyList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for KeyList {
    fn render(&self) -> String {
        if self.0.is_empty() {
            return "no DKIM keys".into();
        }
        let mut headers = vec![
            "DOMAIN",
            "SELECTOR",
            "ALGORITHM",
            "BITS",
            "STATE",
            "CREATED",
        ];
        if self.1 {
            headers.push("DNS");
        }
        table(
            &headers,
            self.0.iter().map(|k| {
                let mut row = vec![
                    k.domain.clone(),
                    k.selector.clone(),
                    k.algorithm.clone(),
                    k.bits.to_string(),
                    k.state.clone(),
                    db_to_local(&k.created.replace('T', " ").replace('Z', "")),
                ];
                if let Some(dns) = &k.dns {
                    row.push(match dns {
                        Published::Matches => "published".into(),
                        Published::Missing => "missing".into(),
                        Published::Mismatch(why) => format!("mismatch: {why}"),
                    });
                }
                row
            }),
        )
    }
}
