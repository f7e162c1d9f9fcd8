//! Helpers shared by the TXT-record families (DKIM, DMARC, MTA-STS, TLS-RPT): zone-syntax fixes and the two
//! record parsers that are more than a few lines: DMARC records
//! ([`parse_dmarc`], RFC 9989) and DKIM key records ([`parse_key`], RFC 6376 3.6.1).
//!
//! No findings are made here; the families decide what a parse result means.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rsa::pkcs1::der::Decode;

use crate::audit::{Context, Finding};
use crate::dkim::{self, KeyAlgorithm};
use crate::dns::txt::tag_list;
use crate::model::{DomainName, printable};
use crate::records::{self, Inputs};

/// A TXT record in zone syntax: `name. 3600 IN TXT "value"`.
pub(crate) fn zone_line(name: &str, value: &str) -> String {
    let name = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    format!(
        "{name} {} IN TXT {}",
        records::TTL,
        crate::dkim::zone_txt_rdata(value)
    )
}

/// `finding` with `fix` when there is one.
pub(crate) fn with_fix(finding: Finding, fix: Option<String>) -> Finding {
    match fix {
        Some(fix) => finding.fix(fix),
        None => finding,
    }
}

/// The TXT record `mailctl dns records` would publish at `PREFIX.DOMAIN.` (e.g. `_dmarc.`), in zone syntax.
pub(crate) fn suggested(ctx: &Context<'_>, domain: &DomainName, prefix: &str) -> Option<String> {
    let mx_host = ctx
        .known
        .hostname
        .as_deref()
        .or(ctx.mx.hosts.first().map(|h| h.name.as_str()))
        .and_then(|h| h.parse::<DomainName>().ok())
        .or_else(|| format!("mail.{domain}").parse().ok())?;
    let set = records::build(&Inputs {
        domain: domain.clone(),
        mx_host,
        ips: ctx.options.ips.clone(),
        dkim: Vec::new(),
        dmarc_policy: "quarantine".into(),
        report_address: format!("postmaster@{domain}"),
        mta_sts_mode: "testing".into(),
        relay: ctx.known.relay.clone(),
        clients: records::Clients::default(),
    });
    let name = format!("{prefix}{domain}.");
    set.records
        .iter()
        .find(|r| r.name == name && r.rtype == "TXT")
        .map(|r| zone_line(&r.name, &r.value))
}

/// A DMARC record as a receiver reads it: the tags as published, and the ones it ignores (RFC 9989: invalid
/// or repeated tags are ignored, the rest of the record applies).
pub struct Dmarc {
    tags: Vec<(String, String)>,
    /// Indices into `tags` of the tags receivers ignore.
    ignored: Vec<usize>,
    /// One line per ignored tag or report URI, naming it; empty for a clean record.
    pub problems: Vec<String>,
}

impl Dmarc {
    /// The value of the first `tag` receivers use (None when absent or ignored).
    pub fn get(&self, tag: &str) -> Option<&str> {
        self.tags
            .iter()
            .enumerate()
            .find(|(i, (k, _))| k == tag && !self.ignored.contains(i))
            .map(|(_, (_, v))| v.as_str())
    }

    /// The valid report URIs of `rua`/`ruf` (receivers skip the others).
    pub fn uris(&self, tag: &str) -> Vec<String> {
        self.get(tag)
            .map(|v| v.split(',').map(str::trim).filter(|u| valid_uri(u)))
            .into_iter()
            .flatten()
            .map(String::from)
            .collect()
    }

    /// The tags a repaired record keeps: ignored ones dropped, a bare address in `rua`/`ruf` given `mailto:`,
    /// other invalid URIs dropped.
    fn clean(&self) -> Vec<(String, String)> {
        let repair = |u: &str| {
            let mailto = format!("mailto:{u}");
            match () {
                _ if valid_uri(u) => Some(u.to_string()),
                _ if !u.contains(':') && valid_uri(&mailto) => Some(mailto),
                _ => None,
            }
        };
        let kept = self.tags.iter().enumerate();
        kept.filter(|(i, _)| !self.ignored.contains(i))
            .filter_map(|(_, (k, v))| {
                if !["rua", "ruf"].contains(&k.as_str())
                    || v.split(',').all(|u| valid_uri(u.trim()))
                {
                    return Some((k.clone(), v.clone()));
                }
                let uris: Vec<String> = v.split(',').filter_map(|u| repair(u.trim())).collect();
                (!uris.is_empty()).then(|| (k.clone(), uris.join(",")))
            })
            .collect()
    }

    /// Whether the repaired record (see [`Dmarc::with`]) still has an aggregate report address.
    pub fn repaired_has_rua(&self) -> bool {
        self.clean().iter().any(|(k, _)| k == "rua")
    }

    /// The historic tags the record holds, as `tag=value` (see [`HISTORIC_DMARC_TAGS`]).
    pub fn historic(&self) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(k, _)| HISTORIC_DMARC_TAGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={}", printable(v)))
            .collect()
    }

    /// The repaired record without any of `drop` (see [`Dmarc::with`]).
    pub fn without(&self, drop: &[&str]) -> String {
        let tags = self.clean();
        let kept = tags.iter().filter(|(k, _)| !drop.contains(&k.as_str()));
        kept.map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The repaired record with `tag` set to `value` (appended when absent, removed when `value` is None).
    pub fn with(&self, tag: &str, value: Option<&str>) -> String {
        let mut tags = self.clean();
        match (tags.iter().position(|(k, _)| k == tag), value) {
            (Some(i), Some(v)) => tags[i].1 = v.to_string(),
            (Some(i), None) => {
                tags.remove(i);
            }
            (None, Some(v)) => tags.push((tag.to_string(), v.to_string())),
            (None, None) => {}
        }
        tags.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The domain of a `mailto:` report URI (`mailto:a@b.example!10m`), lower-cased.
pub fn mailto_domain(uri: &str) -> Option<String> {
    let rest = uri
        .get(..7)?
        .eq_ignore_ascii_case("mailto:")
        .then(|| &uri[7..])?;
    let address = rest.split('!').next()?;
    let address = percent_encoding::percent_decode_str(address).decode_utf8_lossy();
    let (local, domain) = address.rsplit_once('@')?;
    (!local.is_empty() && !domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Whether a report URI is usable: a `mailto:` with an address, or any other `scheme:...`.
fn valid_uri(uri: &str) -> bool {
    let mailto = uri
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("mailto:"));
    if mailto {
        mailto_domain(uri).is_some()
    } else {
        uri.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
        })
    }
}

/// The tags RFC 9989 made historic: receivers following it ignore them.
pub const HISTORIC_DMARC_TAGS: &[&str] = &["pct", "rf", "ri"];

/// Parses a DMARC record (one that starts with `v=DMARC1`). Err when receivers discard the whole record (as
/// mail-auth, and so `mailctl serve`, does): `p=`, `sp=` or `np=` invalid or repeated, `adkim=`, `aspf=` or `fo=`
/// invalid. Other problems (a report URI that is not one, `psd=` or `t=` not y/n, a repeated tag, a part that is
/// not `tag=value`) end up in [`Dmarc::problems`]; receivers skip those and apply the rest. A missing `p=` is no
/// error here: whether the record then applies depends on `rua=` (see [`crate::dns::dmarc::applying_policy`]).
/// The historic tags ([`HISTORIC_DMARC_TAGS`]) are not judged: receivers ignore them whatever they hold.
pub fn parse_dmarc(record: &str) -> Result<Dmarc, String> {
    let tags = tag_list(record);
    let one_of = |v: &str, set: &[&str]| set.contains(&v.to_ascii_lowercase().as_str());
    let (mut ignored, mut problems) = (Vec::new(), Vec::new());
    for (i, (k, v)) in tags.iter().enumerate() {
        let (tag, value) = (printable(k), printable(v));
        let problem = if k.is_empty() {
            Some(format!("'{value}' is not a tag=value pair"))
        } else if tags[..i].iter().any(|(j, _)| j == k) {
            if ["p", "sp", "np"].contains(&k.as_str()) {
                return Err(format!("the tag {tag}= appears twice"));
            }
            Some(format!(
                "{tag}= appears twice: receivers differ on which one counts"
            ))
        } else {
            match k.as_str() {
                "p" | "sp" | "np" if !one_of(v, &["none", "quarantine", "reject"]) => {
                    return Err(format!("{tag}={value} is not none, quarantine or reject"));
                }
                "adkim" | "aspf" if !one_of(v, &["r", "s"]) => {
                    return Err(format!("{tag}={value} is not r or s"));
                }
                "fo" if !v
                    .split(':')
                    .all(|o| one_of(o.trim(), &["0", "1", "d", "s"])) =>
                {
                    return Err(format!("fo={value} is not a list of 0, 1, d and s"));
                }
                "psd" if !one_of(v, &["y", "n", "u"]) => {
                    Some(format!("psd={value} is not y, n or u (receivers read u)"))
                }
                "t" if !one_of(v, &["y", "n"]) => {
                    Some(format!("t={value} is not y or n (receivers read n)"))
                }
                "rua" | "ruf" => {
                    let bad = v.split(',').map(str::trim).filter(|u| !valid_uri(u));
                    problems.extend(bad.map(|u| {
                        format!(
                            "{tag}= holds '{}', which is not a mailto: or other URI",
                            printable(u)
                        )
                    }));
                    None
                }
                _ => None,
            }
        };
        if let Some(problem) = problem {
            ignored.push(i);
            problems.push(problem);
        }
    }
    Ok(Dmarc {
        tags,
        ignored,
        problems,
    })
}

/// A DKIM key record that parsed.
#[derive(Debug)]
pub struct Key {
    /// The key type (`k=`, `rsa` when absent).
    pub algorithm: KeyAlgorithm,
    /// RSA modulus size (None for Ed25519).
    pub bits: Option<usize>,
    /// `t=y`: the domain is testing DKIM.
    pub testing: bool,
}

/// Why the DKIM key records at a selector give no usable key.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// `p=` is empty: the key was withdrawn on purpose (RFC 6376 3.6.1).
    Revoked,
    /// Anything else, as a sentence.
    Invalid(String),
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Revoked => {
                f.write_str("the key is revoked (empty p=): signatures with this selector fail")
            }
            KeyProblem::Invalid(why) => f.write_str(why),
        }
    }
}

/// The RSA modulus size of a public key in SubjectPublicKeyInfo or PKCS#1 DER.
pub fn rsa_bits(der: &[u8]) -> Option<usize> {
    let pkcs1 = match rsa::pkcs8::SubjectPublicKeyInfoRef::from_der(der) {
        Ok(spki) if spki.algorithm.oid == rsa::pkcs1::ALGORITHM_OID => {
            spki.subject_public_key.as_bytes()?
        }
        Ok(_) => return None,
        Err(_) => der,
    };
    let n = rsa::pkcs1::RsaPublicKey::from_der(pkcs1).ok()?.modulus;
    let n = n.as_bytes();
    let first = *n.first()?;
    Some(n.len() * 8 - first.leading_zeros() as usize)
}

/// Whether a TXT record is meant as a DKIM key (has `p=` or `v=DKIM1`).
pub fn is_key_record(record: &str) -> bool {
    dkim::parse_tags(record)
        .iter()
        .any(|(k, v)| k == "p" || (k == "v" && v == "DKIM1"))
}

/// Parses the TXT records at a DKIM selector's name (RFC 6376 3.6.1).
pub fn parse_key(records: &[String]) -> Result<Key, KeyProblem> {
    let invalid = |why: String| Err(KeyProblem::Invalid(why));
    let keys: Vec<&String> = records.iter().filter(|r| is_key_record(r)).collect();
    let record = match keys.as_slice() {
        [one] => one.as_str(),
        [] => return invalid("no DKIM key record among the TXT records here".into()),
        many => {
            return invalid(format!(
                "{} DKIM key records at one name: receivers pick one at random",
                many.len()
            ));
        }
    };
    let tags = dkim::parse_tags(record);
    let get = |t: &str| tags.iter().find(|(k, _)| k == t).map(|(_, v)| v.as_str());
    if tags.iter().skip(1).any(|(k, _)| k == "v") || get("v").is_some_and(|v| v != "DKIM1") {
        return invalid("v= must be DKIM1 and come first".into());
    }
    let algorithm = match get("k").unwrap_or("rsa").to_ascii_lowercase().as_str() {
        "rsa" => KeyAlgorithm::Rsa,
        "ed25519" => KeyAlgorithm::Ed25519,
        other => return invalid(format!("k={other} is neither rsa nor ed25519")),
    };
    if let Some(h) = get("h").filter(|h| !h.split(':').any(|a| a.eq_ignore_ascii_case("sha256"))) {
        return invalid(format!(
            "h={h} excludes sha256, so no valid signature can use the key"
        ));
    }
    let no_email = |s: &&str| {
        !s.split(':')
            .any(|t| t == "*" || t.eq_ignore_ascii_case("email"))
    };
    if let Some(s) = get("s").filter(no_email) {
        return invalid(format!("s={s} does not include email"));
    }
    let p = match get("p") {
        None => return invalid("the required p= tag is missing".into()),
        Some("") => return Err(KeyProblem::Revoked),
        Some(p) => match B64.decode(p) {
            Ok(p) => p,
            Err(_) => return invalid("p= is not valid base64".into()),
        },
    };
    let bits = match algorithm {
        KeyAlgorithm::Rsa => match rsa_bits(&p) {
            Some(bits) => Some(bits),
            None => return invalid("p= does not hold an RSA public key".into()),
        },
        KeyAlgorithm::Ed25519 if p.len() == 32 => None,
        KeyAlgorithm::Ed25519 => {
            return invalid(format!("p= holds {} bytes; an Ed25519 key is 32", p.len()));
        }
    };
    let testing = get("t").is_some_and(|t| t.split(':').any(|f| f.eq_ignore_ascii_case("y")));
    Ok(Key {
        algorithm,
        bits,
        testing,
    })
}
