//! How many bytes a mailbox holds, read the way Dovecot's Maildir++ quota does, and kept up to date on delivery.
//!
//! A `maildirsize` file at the Maildir root (Maildir++ quota) has the quota definition on its first line
//! (`<bytes>S,<count>C`) and then one `<bytes> <count>` line per change, negative for removals: usage is the sum
//! of the bytes column. Without the file (or with one we cannot trust: unparsable, huge, a symlink) usage is
//! the sum of the `S=<size>` fields of the names in `cur/` and `new/` of the root and of every `.Folder`, with
//! the file's length for a name without one. That scan reads every name in the mailbox, so the file is much
//! cheaper for large mailboxes; after each delivery we append our own line to it, as Maildir++ asks of every
//! delivery agent, so it stays right.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use super::error::DeliverError;
use super::name::size_from_name;
use super::path;

/// The Maildir++ quota file at the Maildir root.
const MAILDIRSIZE: &str = "maildirsize";
/// A `maildirsize` larger than this is not read (Dovecot rewrites it once it passes 5120 bytes).
const MAX_MAILDIRSIZE_LEN: u64 = 1 << 20;

/// The bytes stored in the mailbox at `rel` under `base`; 0 for a Maildir that does not exist yet.
pub(super) fn usage(base: &Path, rel: &str) -> Result<u64, DeliverError> {
    let Some((base, root)) = path::find_root(base, rel)? else {
        return Ok(0);
    };
    if let Some(bytes) = read_maildirsize(&root.join(MAILDIRSIZE))? {
        return Ok(bytes);
    }
    scan(&base, &root)
}

/// Appends `<size> 1` to an existing `maildirsize` so Dovecot's count includes this delivery. Best effort: the
/// message is already delivered, and a stale file only delays Dovecot's next recount.
pub(super) fn record_delivery(root: &Path, size: u64) {
    let path = root.join(MAILDIRSIZE);
    let is_plain_file = fs::symlink_metadata(&path)
        .map(|m| m.is_file())
        .unwrap_or(false);
    if !is_plain_file {
        return;
    }
    if let Ok(mut file) = OpenOptions::new().append(true).open(&path) {
        // One write call, so concurrent appenders never interleave within a line.
        let _ = file.write_all(format!("{size} 1\n").as_bytes());
    }
}

/// The usage recorded in `maildirsize`, or `None` when there is no file or it cannot be trusted.
fn read_maildirsize(path: &Path) -> Result<Option<u64>, DeliverError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DeliverError::io("inspect", path)(e)),
    };
    if !meta.is_file() || meta.len() > MAX_MAILDIRSIZE_LEN {
        return Ok(None);
    }
    match fs::read(path) {
        Ok(text) => Ok(parse_maildirsize(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DeliverError::io("read", path)(e)),
    }
}

/// Sums the bytes column of a `maildirsize` text; `None` when it is malformed. A last line without its newline
/// is still being appended and is left out.
fn parse_maildirsize(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let complete = text.get(..text.rfind('\n')?)?;
    let mut lines = complete.lines();
    lines.next()?; // the quota definition, e.g. "1073741824S,10000C"
    let mut total: i64 = 0;
    for line in lines.filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_ascii_whitespace();
        let bytes: i64 = fields.next()?.parse().ok()?;
        let _count: i64 = fields.next()?.parse().ok()?;
        if fields.next().is_some() {
            return None;
        }
        total = total.saturating_add(bytes);
    }
    Some(u64::try_from(total).unwrap_or(0))
}

/// Sums message sizes over the root and every Maildir++ folder. Symlinked folders are skipped: they may lead
/// anywhere, and Dovecot does not treat them as folders of this mailbox either.
fn scan(base: &Path, root: &Path) -> Result<u64, DeliverError> {
    let mut total = sum_messages(base, root)?;
    for entry in fs::read_dir(root).map_err(DeliverError::io("list", root))? {
        let entry = entry.map_err(DeliverError::io("list", root))?;
        let is_folder = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.len() > 1);
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_folder && is_dir {
            total = total.saturating_add(sum_messages(base, &entry.path())?);
        }
    }
    Ok(total)
}

/// Sums message sizes in `cur/` and `new/` of one Maildir.
fn sum_messages(base: &Path, maildir: &Path) -> Result<u64, DeliverError> {
    let mut total: u64 = 0;
    for sub in ["cur", "new"] {
        let Some(dir) = path::enter(base, maildir, sub)? else {
            continue;
        };
        for entry in fs::read_dir(&dir).map_err(DeliverError::io("list", &dir))? {
            let entry = entry.map_err(DeliverError::io("list", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let size = match size_from_name(&name) {
                Some(size) => size,
                // lstat, not stat: a symlink counts as nothing. A file moved away meanwhile counts as nothing too.
                None => match entry.metadata() {
                    Ok(meta) if meta.is_file() => meta.len(),
                    Ok(_) => 0,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(DeliverError::io("inspect", &entry.path())(e)),
                },
            };
            total = total.saturating_add(size);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildirsize_sums_deltas_after_the_definition_line() {
        let text = b"10240S,100C\n100 1\n-50 -1\n2000 3\n";
        assert_eq!(parse_maildirsize(text), Some(2050));
        assert_eq!(parse_maildirsize(b"0S\n"), Some(0));
        assert_eq!(parse_maildirsize(b"0S\r\n  7   1 \r\n\n"), Some(7));
    }

    #[test]
    fn maildirsize_with_a_half_written_last_line_leaves_it_out() {
        assert_eq!(parse_maildirsize(b"0S\n100 1\n20"), Some(100));
    }

    #[test]
    fn negative_totals_count_as_zero_and_huge_ones_saturate() {
        assert_eq!(parse_maildirsize(b"0S\n-500 -1\n"), Some(0));
        let big = format!("0S\n{} 1\n{} 1\n", i64::MAX, i64::MAX);
        assert_eq!(parse_maildirsize(big.as_bytes()), Some(i64::MAX as u64));
    }

    #[test]
    fn malformed_maildirsize_is_not_trusted() {
        for text in [
            &b""[..],
            b"no newline",
            b"0S\nabc 1\n",
            b"0S\n100\n",
            b"0S\n100 1 2\n",
            b"0S\n1.5 1\n",
            b"0S\n99999999999999999999 1\n",
            b"0S\n\xff\xfe 1\n",
        ] {
            assert_eq!(
                parse_maildirsize(text),
                None,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
