//! The syntax TXT records of mail share: `tag=value; ...` lists (DKIM, DMARC, MTA-STS, TLS-RPT) and the `v=`
//! version tag that decides whether a receiver looks at a record at all. Used by the audit, which judges records,
//! and by the MTA-STS code of outbound delivery, which obeys them.

use crate::model::printable;

/// The tags of a `tag=value; ...` record, names lower-cased, both sides trimmed, empty parts skipped. A part
/// without `=` comes back with an empty name and the part as value (see [`pairs_error`]).
pub fn tag_list(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_string()),
            None => (String::new(), t.to_string()),
        })
        .collect()
}

/// The complaint about the first part of a [`tag_list`] that is not `tag=value`, if any.
pub fn pairs_error(tags: &[(String, String)]) -> Option<String> {
    tags.iter()
        .find(|(k, _)| k.is_empty())
        .map(|(_, v)| format!("'{}' is not a tag=value pair", printable(v)))
}

/// Whether `record` starts with `v=VERSION`, the value matched exactly as DMARC, MTA-STS and TLS-RPT demand
/// (the only records receivers consider at all).
pub fn has_version(record: &str, version: &str) -> bool {
    tag_list(record)
        .first()
        .is_some_and(|(k, v)| k == "v" && v == version)
}
