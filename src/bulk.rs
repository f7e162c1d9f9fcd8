//! Bulk provisioning: the CSV layout of `mailctl import` / `mailctl export`, and applying records in one
//! transaction.
//!
//! One file holds every kind of record, one per row, with a header row naming the columns (any order; only
//! `kind` and `address` are required, missing columns read as empty):
//!
//! | column | domain | alias_domain | mailbox | alias |
//! |---|---|---|---|---|
//! | `kind` | `domain` | `alias_domain` | `mailbox` | `alias` |
//! | `address` | domain name | alias domain | address | address or `@domain` |
//! | `target` | | target domain | | destinations, comma-separated |
//! | `name` | description | | display name | |
//! | `password` | | | plain text (hashed on import) | |
//! | `password_hash` | | | `{SCHEME}hash` as stored | |
//! | `quota_bytes` / `quota_mb` | | | quota | |
//! | `max_mailboxes`, `max_aliases`, `max_quota_mb`, `domain_quota_mb`, `backup_mx` | limits | | | |
//! | `active` | yes | yes | yes | yes |
//! | `smtp_active` | | | SMTP AUTH allowed | |
//!
//! Booleans are `1`/`0`, `true`/`false` or `yes`/`no`; empty means the default. Records apply in the order
//! domains, alias domains, mailboxes, aliases, whatever their order in the file.

use crate::error::{Error, Result};
use crate::model::{Address, AliasAddress, DomainName, printable};
use crate::provision::{DomainSettings, MB, MailboxSettings};

/// Every column the layout knows, in the order `export` writes them.
pub const COLUMNS: &[&str] = &[
    "kind",
    "address",
    "target",
    "name",
    "password",
    "password_hash",
    "quota_bytes",
    "quota_mb",
    "max_mailboxes",
    "max_aliases",
    "max_quota_mb",
    "domain_quota_mb",
    "backup_mx",
    "active",
    "smtp_active",
];

/// How a mailbox row gives its password.
#[derive(Debug, Clone)]
pub enum Password {
    /// Plain text, to be hashed with the configured scheme.
    Plain(String),
    /// Already hashed, stored as is.
    Hash(String),
}

/// One parsed row.
#[derive(Debug, Clone)]
pub enum Record {
    /// A domain and its settings.
    Domain(DomainName, DomainSettings),
    /// An alias-domain mapping.
    AliasDomain {
        /// The alias domain.
        alias: DomainName,
        /// The domain it points at.
        target: DomainName,
        /// Mapping in effect.
        active: bool,
    },
    /// A mailbox.
    Mailbox(Address, Password, MailboxSettings),
    /// An alias or catch-all (or a mailbox's own forwarding list).
    Alias(AliasAddress, Vec<Address>, bool),
}

impl Record {
    /// Application order: what other records depend on comes first.
    pub fn rank(&self) -> u8 {
        match self {
            Record::Domain(..) => 0,
            Record::AliasDomain { .. } => 1,
            Record::Mailbox(..) => 2,
            Record::Alias(..) => 3,
        }
    }
}

/// A record with the line it came from (1-based, the header is line 1).
#[derive(Debug, Clone)]
pub struct Line {
    /// File line number.
    pub line: u64,
    /// The record.
    pub record: Record,
}

struct Row<'a> {
    header: &'a [String],
    fields: &'a csv::StringRecord,
}

impl Row<'_> {
    fn get(&self, column: &str) -> &str {
        self.header
            .iter()
            .position(|h| h == column)
            .and_then(|i| self.fields.get(i))
            .map(str::trim)
            .unwrap_or("")
    }

    fn opt(&self, column: &str) -> Option<&str> {
        Some(self.get(column)).filter(|s| !s.is_empty())
    }

    fn int(&self, column: &str) -> std::result::Result<Option<i64>, String> {
        self.opt(column)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| format!("{column} '{}' is not a whole number", printable(v)))
            })
            .transpose()
    }

    fn flag(&self, column: &str) -> std::result::Result<Option<bool>, String> {
        self.opt(column)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(format!(
                    "{column} '{}' is not 1/0, true/false or yes/no",
                    printable(v)
                )),
            })
            .transpose()
    }

    fn required(&self, column: &str, kind: &str) -> std::result::Result<&str, String> {
        self.opt(column)
            .ok_or_else(|| format!("a {kind} row needs a value in column {column}"))
    }
}

fn parse_row(row: &Row<'_>) -> std::result::Result<Record, String> {
    let kind = row.get("kind").to_ascii_lowercase();
    match kind.as_str() {
        "domain" => Ok(Record::Domain(
            row.required("address", "domain")?.parse()?,
            DomainSettings {
                description: row.opt("name").map(str::to_string),
                max_mailboxes: row.int("max_mailboxes")?,
                max_aliases: row.int("max_aliases")?,
                max_quota_mb: row.int("max_quota_mb")?,
                quota_mb: row.int("domain_quota_mb")?,
                backup_mx: row.flag("backup_mx")?,
                active: row.flag("active")?,
            },
        )),
        "alias_domain" => Ok(Record::AliasDomain {
            alias: row.required("address", "alias_domain")?.parse()?,
            target: row.required("target", "alias_domain")?.parse()?,
            active: row.flag("active")?.unwrap_or(true),
        }),
        "mailbox" => {
            let password = match (row.opt("password"), row.opt("password_hash")) {
                (Some(_), Some(_)) => return Err("give password or password_hash, not both".into()),
                (Some(p), None) => Password::Plain(p.to_string()),
                (None, Some(h)) if crate::password::scheme_of(h) == "unknown" => {
                    return Err("password_hash is not in a scheme mailctl can verify".into());
                }
                (None, Some(h)) => Password::Hash(h.to_string()),
                (None, None) => {
                    return Err("a mailbox row needs a password or a password_hash".into());
                }
            };
            let quota_bytes = match (row.int("quota_bytes")?, row.int("quota_mb")?) {
                (Some(_), Some(_)) => return Err("give quota_bytes or quota_mb, not both".into()),
                (Some(b), None) => Some(b),
                (None, Some(m)) => Some(m.checked_mul(MB).ok_or("quota_mb is too large")?),
                (None, None) => None,
            };
            Ok(Record::Mailbox(
                row.required("address", "mailbox")?.parse()?,
                password,
                MailboxSettings {
                    name: row.opt("name").map(str::to_string),
                    quota_bytes,
                    active: row.flag("active")?,
                    smtp_active: row.flag("smtp_active")?,
                },
            ))
        }
        "alias" => {
            let goto = row
                .required("target", "alias")?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::parse::<Address>)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Record::Alias(
                row.required("address", "alias")?.parse()?,
                goto,
                row.flag("active")?.unwrap_or(true),
            ))
        }
        "" => Err("column kind is empty".into()),
        other => Err(format!(
            "unknown kind '{}' (expected domain, alias_domain, mailbox or alias)",
            crate::model::printable(other)
        )),
    }
}

/// The file line a record starts on. csv reports where it started reading the record, which is before any
/// blank lines it skipped on the way; those lines are counted here too.
fn start_line(input: &[u8], pos: Option<&csv::Position>) -> u64 {
    let Some(pos) = pos else { return 0 };
    let rest = usize::try_from(pos.byte())
        .ok()
        .and_then(|b| input.get(b..))
        .unwrap_or_default();
    let blank = rest
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .filter(|&&c| c == b'\n')
        .count();
    pos.line() + blank as u64
}

/// Parses a whole CSV file. Returns every record, or every row error with its line number.
pub fn parse(input: &[u8]) -> Result<Vec<Line>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::usage(format!("cannot read the CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if let Some(unknown) = header.iter().find(|h| !COLUMNS.contains(&h.as_str())) {
        return Err(Error::usage(format!(
            "line 1: unknown column '{}' (known: {})",
            crate::model::printable(unknown),
            COLUMNS.join(", ")
        )));
    }
    for needed in ["kind", "address"] {
        if !header.iter().any(|h| h == needed) {
            return Err(Error::usage(format!(
                "line 1: the header has no column '{needed}'"
            )));
        }
    }
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for result in reader.records() {
        match result {
            Ok(fields) => {
                let line = start_line(input, fields.position());
                match parse_row(&Row {
                    header: &header,
                    fields: &fields,
                }) {
                    Ok(record) => lines.push(Line { line, record }),
                    Err(e) => errors.push(format!("line {line}: {e}")),
                }
            }
            Err(e) => {
                let line = start_line(input, e.position());
                let why = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("expected {expected_len} fields like the header, found {len}"),
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
                    _ => e.to_string(),
                };
                errors.push(format!("line {line}: {why}"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::Rows {
            summary: format!("{} rows are invalid; nothing was imported", errors.len()),
            rows: errors,
        });
    }
    lines.sort_by_key(|l| l.record.rank());
    Ok(lines)
}

/// Writes rows in the layout, with the full header.
pub fn write_csv(rows: &[Vec<(&'static str, String)>]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::refused(format!("cannot write CSV: {e}"));
    w.write_record(COLUMNS).map_err(fail)?;
    for row in rows {
        let record: Vec<&str> = COLUMNS
            .iter()
            .map(|c| {
                row.iter()
                    .find(|(k, _)| k == c)
                    .map_or("", |(_, v)| v.as_str())
            })
            .collect();
        w.write_record(record).map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::refused(format!("cannot write CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::refused(format!("cannot write CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_sort_by_dependency() {
        let csv = "kind,address,target,password\nalias,a@x.org,b@x.org,\nmailbox,b@x.org,,secret123\ndomain,x.org,,\n";
        let lines = parse(csv.as_bytes()).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            vec![4, 3, 2]
        );
    }

    #[test]
    fn short_rows_and_bad_values_name_their_line() {
        let csv = "kind,address,target\ndomain,x.org\nmailbox,bad address,\n";
        let Err(Error::Rows { rows, .. }) = parse(csv.as_bytes()) else {
            panic!("expected row errors")
        };
        assert!(rows[0].starts_with("line 2: expected 3 fields"), "{rows:?}");
        assert!(rows[1].starts_with("line 3:"), "{rows:?}");
    }

    #[test]
    fn line_numbers_count_blank_lines_and_quoted_line_breaks() {
        let csv = "kind,address,target,name\n\r\n\ndomain,x.org,,\"two\nlines\"\n\nmailbox,bad address,,\n\ndomain,y.org\n";
        let Err(Error::Rows { rows, .. }) = parse(csv.as_bytes()) else {
            panic!("expected row errors")
        };
        assert!(rows[0].starts_with("line 7: "), "{rows:?}");
        assert!(rows[1].starts_with("line 9: expected 4 fields"), "{rows:?}");
        let lines = parse("kind,address\n\n\ndomain,x.org\n".as_bytes()).unwrap();
        assert_eq!(lines[0].line, 4);
    }

    #[test]
    fn bad_values_are_quoted_without_control_characters() {
        // Found by fuzz/fuzz_targets/csv_import.rs: a field's raw bytes (here NUL, ESC, a quoted line break)
        // were copied into the one-line error, which goes to a terminal.
        let csv = "kind,address,password,quota_mb,active\n\
                   mailbox,a@x.org,secret123,\"1\u{0}\u{1b}[2J\n2\",\n\
                   domain,x.org,,,ja\u{7}\n";
        let Err(Error::Rows { rows, .. }) = parse(csv.as_bytes()) else {
            panic!("expected row errors")
        };
        assert_eq!(
            rows,
            [
                "line 2: quota_mb '1\\0\\u{1b}[2J\\n2' is not a whole number",
                "line 4: active 'ja\\u{7}' is not 1/0, true/false or yes/no",
            ]
        );
    }

    #[test]
    fn unknown_columns_are_refused() {
        assert!(parse("kind,address,colour\n".as_bytes()).is_err());
        assert!(parse("address\n".as_bytes()).is_err());
    }
}
