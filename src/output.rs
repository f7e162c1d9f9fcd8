//! Everything mailctl prints goes through here: human tables, `--json`, notes on stderr, progress bars.
//!
//! Nothing below `cli` prints; commands build a value and hand it to [`Output`]. Data goes to stdout (a table, or
//! exactly one JSON document with `--json`); notes and progress go to stderr so pipes stay clean.

use std::io::{IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// A value that can be shown to a person as text (usually a table).
pub trait Render {
    /// The human rendering, ending without a newline.
    fn render(&self) -> String;
}

/// Output settings for this run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// `--json`: one JSON document on stdout instead of tables and messages.
    pub json: bool,
    /// `-q`: no notes, no confirmation messages.
    pub quiet: bool,
    /// `-v` count: extra notes.
    pub verbose: u8,
}

impl Output {
    /// Prints a data value: JSON with `--json`, else its human rendering.
    pub fn emit<T: Serialize + Render>(&self, value: &T) {
        if self.json {
            print_json(value);
        } else {
            print_line(&value.render());
        }
    }

    /// Prints the result of a change: the affected record as JSON with `--json`, else `message` (unless `-q`).
    pub fn done<T: Serialize>(&self, value: &T, message: impl std::fmt::Display) {
        if self.json {
            print_json(value);
        } else if !self.quiet {
            print_line(&message.to_string());
        }
    }

    /// A note for the person at the terminal (stderr), suppressed by `-q`.
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A detail shown only with `-v`.
    pub fn detail(&self, message: impl std::fmt::Display) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A progress bar on stderr when it is a terminal and output is for a person; hidden otherwise.
    pub fn progress(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }
}

/// Writes one line to stdout. A reader that went away (`mailctl ... | head`) is not an error worth a panic,
/// which `println!` would raise on a broken pipe.
pub fn print_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

fn print_json<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    // Serializing our own plain structs cannot fail; a closed stdout is not worth a panic.
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// A table with a header row. On a terminal it gets borders; in a pipe, plain aligned columns for awk and grep.
pub fn table<I, R>(headers: &[&str], rows: I) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = String>,
{
    let mut t = Table::new();
    if std::io::stdout().is_terminal() {
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.load_preset(presets::NOTHING);
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.into_iter().collect()).collect();
    let rows = match width() {
        Some(width) => fit(headers, rows, width, std::io::stdout().is_terminal()),
        None => rows,
    };
    t.set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r);
    }
    plain(t)
}

/// The width human output fits into (the terminal's, or `COLUMNS`), set once by the CLI; unset or `None`: no
/// limit.
static WIDTH: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// Sets the width human output fits into (once, at start; later calls are ignored).
pub fn set_width(width: Option<usize>) {
    let _ = WIDTH.set(width);
}

/// The width human output fits into: the terminal's or `COLUMNS` (as set at start); `None` in a pipe.
pub fn width() -> Option<usize> {
    WIDTH.get().copied().flatten()
}

/// `text` cut to `max` characters, the last one `…`, when it is longer; as it is otherwise.
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Cuts cells with `…`, widest column first, until a table with `headers` and `rows` fits `width` columns
/// (borders on a terminal take 3 per column and 1, plain columns 2 per column); no column is cut below its
/// header or 8 characters, so a table that cannot fit stays wider.
fn fit(
    headers: &[&str],
    mut rows: Vec<Vec<String>>,
    width: usize,
    borders: bool,
) -> Vec<Vec<String>> {
    let columns = headers.len();
    let overhead = if borders {
        3 * columns + 1
    } else {
        2 * columns + 1
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            let w = cell.lines().map(|l| l.chars().count()).max().unwrap_or(0);
            widths[i] = widths[i].max(w);
        }
    }
    // No column is cut below its header or 8 characters; the widest that can still give goes first.
    let floor: Vec<usize> = headers.iter().map(|h| h.chars().count().max(8)).collect();
    let mut limits = widths.clone();
    while limits.iter().sum::<usize>() + overhead > width {
        let Some(widest) = (0..columns)
            .filter(|i| limits[*i] > floor[*i])
            .max_by_key(|i| limits[*i])
        else {
            break;
        };
        let excess = limits.iter().sum::<usize>() + overhead - width;
        limits[widest] = limits[widest].saturating_sub(excess).max(floor[widest]);
    }
    if limits == widths {
        return rows;
    }
    for row in &mut rows {
        for (i, cell) in row.iter_mut().enumerate().take(columns) {
            *cell = ellipsis(cell, limits[i]);
        }
    }
    rows
}

/// The table as text; in a pipe without the padding at the ends of the lines.
fn plain(t: Table) -> String {
    let text = t.to_string();
    if std::io::stdout().is_terminal() {
        return text;
    }
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1 mailbox`, `2 mailboxes`: a count with its noun in the right number.
pub fn count(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A two-column key/value table for `show` commands.
pub fn key_values(pairs: Vec<(&str, String)>) -> String {
    let mut t = Table::new();
    if std::io::stdout().is_terminal() {
        t.load_preset(presets::UTF8_FULL_CONDENSED);
    } else {
        t.load_preset(presets::NOTHING);
    }
    for (k, v) in pairs {
        t.add_row(vec![k.to_string(), v]);
    }
    plain(t)
}

/// `yes`/`no` for boolean columns in tables.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}
