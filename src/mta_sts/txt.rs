//! The `_mta-sts.DOMAIN` TXT record as a sending MTA reads it (RFC 8461 3.1): absent, one valid record with
//! its policy id, invalid, or no answer. The audit reports it; outbound delivery decides from it whether to
//! fetch the policy again.

use crate::dns::Resolver;
use crate::dns::txt::{has_version, pairs_error, tag_list};
use crate::model::{DomainName, printable};

/// What `_mta-sts.DOMAIN` publishes, as a sending MTA reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsTxt {
    /// No record starting with `v=STSv1`: the domain does not use MTA-STS.
    Absent,
    /// Exactly one valid record.
    Valid {
        /// The policy id (`id=`), which changes whenever the policy does.
        id: String,
        /// The record as published.
        record: String,
    },
    /// Several records, or one that does not parse: senders treat the domain as having no policy.
    Invalid(String),
    /// The lookup got no answer (the reason).
    Failed(String),
}

/// Whether a field name is an `sts-field-name` (RFC 8461 3.1) / `tlsrpt-ext-name` (RFC 8460 3): a letter, then letters, digits, `_-.`.
pub fn field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Parses one `v=STSv1` record into its id.
pub fn parse_sts(record: &str) -> Result<String, String> {
    let tags = tag_list(record);
    if let Some(why) = pairs_error(&tags) {
        return Err(why);
    }
    if let Some((k, _)) = tags.iter().find(|(k, _)| !field_name(k)) {
        return Err(format!("'{k}' is not a field name"));
    }
    let ids: Vec<&String> = tags
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .collect();
    match ids.as_slice() {
        [] => Err("the required id= field is missing".into()),
        [id] if (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(id.to_string())
        }
        [id] => Err(format!("id={id} must be 1 to 32 letters and digits")),
        _ => Err("id= appears more than once".into()),
    }
}

/// Looks `_mta-sts.DOMAIN` up and classifies it (RFC 8461 3.1).
pub async fn sts_txt(resolver: &Resolver, domain: &DomainName) -> StsTxt {
    let all = match resolver.txt_or_reason(&format!("_mta-sts.{domain}")).await {
        Ok(all) => all,
        Err(e) => return StsTxt::Failed(e),
    };
    let sts: Vec<&String> = all.iter().filter(|r| has_version(r, "STSv1")).collect();
    match sts.as_slice() {
        [] => StsTxt::Absent,
        [one] => match parse_sts(one) {
            Ok(id) => StsTxt::Valid {
                id,
                record: one.to_string(),
            },
            Err(why) => StsTxt::Invalid(format!("\"{}\": {}", printable(one), printable(&why))),
        },
        many => StsTxt::Invalid(format!(
            "{} records start with v=STSv1; senders then assume no MTA-STS (RFC 8461 3.1)",
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_ids_are_one_to_32_alphanumerics() {
        assert_eq!(
            parse_sts("v=STSv1; id=20240101T000000").as_deref(),
            Ok("20240101T000000")
        );
        assert_eq!(parse_sts("v=STSv1;id=abc; ext=1").as_deref(), Ok("abc"));
        assert!(parse_sts("v=STSv1; id=has-dash").is_err());
        assert!(parse_sts("v=STSv1; id=").is_err());
        assert!(parse_sts(&format!("v=STSv1; id={}", "a".repeat(33))).is_err());
        assert!(parse_sts("v=STSv1").is_err());
        assert!(parse_sts("v=STSv1; junk; id=abc").is_err());
    }
}
