//! Unique Maildir file names, and reading the size back out of them.
//!
//! A name is `<secs>.M<usecs>P<pid>Q<counter>_<id>.<host>,S=<size>` as the Maildir spec
//! (cr.yp.to/proto/maildir.html) suggests: the time, the process id and a per-process delivery counter make it
//! unique on this host, and the host name makes it unique across hosts sharing the store. `_<id>` is the
//! message's queue id (the one in the `250` reply and the log line), so `ls` finds the file of a logged
//! transaction; the unique part stays opaque to Maildir readers. `,S=<size>` is the Maildir++ size field that
//! Dovecot (and our quota scan) read instead of calling `stat` on every file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Deliveries made by this process so far. Shared by every `MaildirStore`, because uniqueness is per process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Longest escaped host name kept in file names, so a name always fits the 255-byte limit of a component.
const MAX_HOST_LEN: usize = 120;

/// Escapes the host name for use in a file name: `/` and `:` as `\057` and `\072` (the spec's rule), and also
/// `,` (it would let a host name forge an `,S=` field), `\` and control characters, each as `\` plus three octal
/// digits. An empty host becomes `localhost`; a long one is cut so names stay within filesystem limits.
pub(super) fn escape_hostname(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for c in host.chars() {
        let escaped_len = if needs_escape(c) { 4 } else { c.len_utf8() };
        if out.len() + escaped_len > MAX_HOST_LEN {
            break;
        }
        if needs_escape(c) {
            out.push_str(&format!("\\{:03o}", c as u32));
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        "localhost".to_string()
    } else {
        out
    }
}

/// Whether `c` is written as an octal escape. Control characters all sit below U+00A0, so three octal digits
/// always suffice.
fn needs_escape(c: char) -> bool {
    matches!(c, '/' | ':' | ',' | '\\') || c.is_control()
}

/// Longest id kept in a name (a queue id has 24 characters).
const MAX_ID_LEN: usize = 32;

/// A fresh name for message `id` (letters and digits only are kept) of `size` bytes, never returned twice by
/// this process.
pub(super) fn unique_name(escaped_host: &str, size: u64, id: Option<&str>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id: String = id
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(MAX_ID_LEN)
        .collect();
    let id = match id.is_empty() {
        true => String::new(),
        false => format!("_{id}"),
    };
    format!(
        "{}.M{}P{}Q{n}{id}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        escaped_host,
        size
    )
}

/// The `S=<size>` field of a Maildir file name, if it has a well-formed one. Fields sit between commas after
/// the unique part and before the `:2,<flags>` info that messages in `cur/` carry.
pub(super) fn size_from_name(name: &str) -> Option<u64> {
    let base = name.split(':').next().unwrap_or(name);
    base.split(',')
        .skip(1)
        .find_map(|field| field.strip_prefix("S="))
        .and_then(|digits| {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                digits.parse().ok()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_slash_colon_and_comma_are_escaped_in_octal() {
        assert_eq!(escape_hostname("mx/1:25,x"), "mx\\0571\\07225\\054x");
        assert_eq!(escape_hostname("a\\b\n"), "a\\134b\\012");
        assert_eq!(escape_hostname("mail.example.com"), "mail.example.com");
    }

    #[test]
    fn empty_hostname_becomes_localhost_and_long_one_is_cut() {
        assert_eq!(escape_hostname(""), "localhost");
        let long = "a".repeat(1000);
        assert_eq!(escape_hostname(&long).len(), MAX_HOST_LEN);
        let slashes = "/".repeat(1000);
        assert!(escape_hostname(&slashes).len() <= MAX_HOST_LEN);
        let wide = "é".repeat(1000);
        assert!(escape_hostname(&wide).len() <= MAX_HOST_LEN);
    }

    #[test]
    fn unique_name_has_the_spec_shape_and_size() {
        let name = unique_name("mx.example.com", 4096, None);
        let (secs, rest) = name.split_once(".M").unwrap();
        assert!(secs.parse::<u64>().unwrap() > 1_600_000_000);
        let (usecs, rest) = rest.split_once('P').unwrap();
        assert!(usecs.parse::<u32>().unwrap() < 1_000_000);
        let (pid, rest) = rest.split_once('Q').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        let (counter, rest) = rest.split_once('.').unwrap();
        counter.parse::<u64>().unwrap();
        assert_eq!(rest, "mx.example.com,S=4096");
        assert_eq!(size_from_name(&name), Some(4096));
    }

    #[test]
    fn unique_names_do_not_repeat_within_the_process() {
        let names: std::collections::HashSet<String> =
            (0..10_000).map(|_| unique_name("h", 1, None)).collect();
        assert_eq!(names.len(), 10_000);
    }

    #[test]
    fn the_message_id_is_part_of_the_unique_part_and_cannot_escape_it() {
        let name = unique_name("mx.example.com", 10, Some("06651728988000114cde1cb0"));
        let (unique, rest) = name.split_once('.').unwrap().1.split_once('.').unwrap();
        assert!(unique.ends_with("_06651728988000114cde1cb0"), "{name}");
        assert_eq!(rest, "mx.example.com,S=10");
        let hostile = unique_name("h", 1, Some("../x/.y,S=9:2,S"));
        assert!(hostile.contains("_xyS92S.h,S=1"), "{hostile}");
        assert_eq!(size_from_name(&hostile), Some(1));
    }

    #[test]
    fn size_is_read_from_names_with_flags_and_other_fields() {
        assert_eq!(
            size_from_name("1.M2P3Q4.host,S=1234,W=1260:2,S"),
            Some(1234)
        );
        assert_eq!(size_from_name("1.M2P3.host,W=10,S=77:2,"), Some(77));
        assert_eq!(size_from_name("1.M2P3.host,S=0"), Some(0));
    }

    #[test]
    fn malformed_or_missing_size_fields_give_none() {
        for name in [
            "1.M2P3.host",
            "1.M2P3.host,S=",
            "1.M2P3.host,S=-5",
            "1.M2P3.host,S=12x",
            "1.M2P3.host,S=+5",
            "1.M2P3.host:2,S=5",
            "1.M2P3.host,S=99999999999999999999999",
            "S=5",
            "",
        ] {
            assert_eq!(size_from_name(name), None, "{name}");
        }
    }
}
