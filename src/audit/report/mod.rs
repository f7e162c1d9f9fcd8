//! Rendering audit results: a report for people ([`text`], the default), the table of earlier versions, JSON
//! for programs, one Nagios line for monitoring, and the exit code monitoring plugins expect.

use std::io::IsTerminal;

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use serde::Serialize;

use super::{DomainReport, Status};

pub mod text;

/// The whole run.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// Version of this JSON layout; bumped only when a field changes meaning or disappears.
    pub schema: u32,
    /// Worst status of all domains.
    pub status: Status,
    /// One report per domain, in argument order.
    pub domains: Vec<DomainReport>,
}

impl AuditReport {
    /// Builds the run report.
    pub fn new(domains: Vec<DomainReport>) -> Self {
        let status = domains
            .iter()
            .map(|d| d.status)
            .max()
            .unwrap_or(Status::Pass);
        AuditReport {
            schema: 1,
            status,
            domains,
        }
    }
}

/// Monitoring-plugins exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. A failure outranks "could not test"
/// (it is certain), which outranks a warning (an untested check may hide a failure).
pub fn exit_code(status: Status) -> i32 {
    match status {
        Status::Pass | Status::Info => 0,
        Status::Warn => 1,
        Status::Fail => 2,
        Status::Unknown => 3,
    }
}

fn nagios_state(status: Status) -> &'static str {
    match exit_code(status) {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    }
}

fn counts(report: &AuditReport) -> [usize; 5] {
    let mut c = [0; 5];
    for f in report.domains.iter().flat_map(|d| &d.findings) {
        c[f.status as usize] += 1;
    }
    c
}

/// Whether to colour: a terminal, and `NO_COLOR` unset.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn status_cell(status: Status, colour: bool) -> Cell {
    let cell = Cell::new(status.name());
    if !colour {
        return cell;
    }
    cell.fg(match status {
        Status::Pass => Color::Green,
        Status::Info => Color::Blue,
        Status::Warn => Color::Yellow,
        Status::Unknown => Color::Magenta,
        Status::Fail => Color::Red,
    })
}

/// One row per finding, then a summary line (and a per-domain table when several domains were audited).
pub fn table(report: &AuditReport) -> String {
    let colour = colour();
    let tty = std::io::stdout().is_terminal();
    let mut t = Table::new();
    if tty {
        t.load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.load_preset(presets::NOTHING);
    }
    let several = report.domains.len() > 1;
    let mut header = vec!["STATUS", "ID", "SUBJECT", "DETAIL", "FIX"];
    if several {
        header.insert(1, "DOMAIN");
    }
    t.set_header(header);
    for d in &report.domains {
        for f in &d.findings {
            let mut row = vec![status_cell(f.status, colour), Cell::new(f.id)];
            if several {
                row.insert(1, Cell::new(&d.domain));
            }
            // In a pipe every finding stays one line, for grep and awk.
            let text = |s: &str| {
                if tty {
                    s.to_string()
                } else {
                    s.split('\n').map(str::trim).collect::<Vec<_>>().join(" / ")
                }
            };
            row.push(Cell::new(text(&f.subject)));
            row.push(Cell::new(text(&f.detail)));
            row.push(Cell::new(text(f.fix.as_deref().unwrap_or(""))));
            t.add_row(row);
        }
    }
    let mut out = t.to_string();
    if several {
        let mut summary = Table::new();
        summary.load_preset(if std::io::stdout().is_terminal() {
            presets::UTF8_FULL_CONDENSED
        } else {
            presets::NOTHING
        });
        summary.set_header(["DOMAIN", "STATUS", "PASS", "WARN", "FAIL", "UNKNOWN"]);
        for d in &report.domains {
            let n = |s: Status| {
                d.findings
                    .iter()
                    .filter(|f| f.status == s)
                    .count()
                    .to_string()
            };
            summary.add_row(vec![
                Cell::new(&d.domain),
                status_cell(d.status, colour),
                Cell::new(n(Status::Pass)),
                Cell::new(n(Status::Warn)),
                Cell::new(n(Status::Fail)),
                Cell::new(n(Status::Unknown)),
            ]);
        }
        out.push_str("\n\n");
        out.push_str(&summary.to_string());
    }
    let c = counts(report);
    out.push_str(&format!(
        "\n{}: {} passed, {} info, {} warnings, {} failed, {} could not be tested",
        report.status.name(),
        c[Status::Pass as usize],
        c[Status::Info as usize],
        c[Status::Warn as usize],
        c[Status::Fail as usize],
        c[Status::Unknown as usize]
    ));
    out
}

/// `MAILCTL AUDIT <STATE> - <what is wrong> | perfdata`, as monitoring plugins print.
pub fn nagios(report: &AuditReport) -> String {
    let c = counts(report);
    let problems: Vec<String> = report
        .domains
        .iter()
        .flat_map(|d| {
            d.findings
                .iter()
                .filter(|f| matches!(f.status, Status::Warn | Status::Fail | Status::Unknown))
                .map(move |f| format!("{} {} {} ({})", d.domain, f.id, f.status.name(), f.subject))
        })
        .collect();
    let text = if problems.is_empty() {
        format!(
            "{} domains, {} checks passed",
            report.domains.len(),
            c[Status::Pass as usize] + c[Status::Info as usize]
        )
    } else {
        problems.join("; ")
    };
    // `|` starts the perfdata: a subject taken from DNS must not be able to forge it.
    let text = text.replace('|', "/");
    format!(
        "MAILCTL AUDIT {} - {text} | pass={} warn={} fail={} unknown={}",
        nagios_state(report.status),
        c[Status::Pass as usize] + c[Status::Info as usize],
        c[Status::Warn as usize],
        c[Status::Fail as usize],
        c[Status::Unknown as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Finding;

    fn report(statuses: &[Status]) -> AuditReport {
        let findings: Vec<Finding> = statuses
            .iter()
            .map(|s| Finding::new("x.y", *s, "example.org", "detail"))
            .collect();
        AuditReport::new(vec![DomainReport {
            domain: "example.org".into(),
            status: statuses.iter().copied().max().unwrap_or(Status::Pass),
            findings,
        }])
    }

    #[test]
    fn subjects_cannot_forge_perfdata() {
        let mut r = report(&[Status::Fail]);
        r.domains[0].findings[0].subject = "x | pass=99".into();
        let line = nagios(&r);
        assert_eq!(line.matches('|').count(), 1, "{line}");
        assert_eq!(r.schema, 1);
    }

    #[test]
    fn exit_codes_follow_monitoring_plugins() {
        assert_eq!(exit_code(report(&[Status::Pass, Status::Info]).status), 0);
        assert_eq!(exit_code(report(&[Status::Pass, Status::Warn]).status), 1);
        assert_eq!(
            exit_code(report(&[Status::Warn, Status::Unknown]).status),
            3
        );
        assert_eq!(
            exit_code(report(&[Status::Unknown, Status::Fail]).status),
            2
        );
    }

    #[test]
    fn nagios_line_names_problems_and_counts() {
        let line = nagios(&report(&[Status::Pass, Status::Fail]));
        assert!(
            line.starts_with("MAILCTL AUDIT CRITICAL - example.org x.y FAIL"),
            "{line}"
        );
        assert!(line.ends_with("| pass=1 warn=0 fail=1 unknown=0"), "{line}");
        assert!(
            nagios(&report(&[Status::Pass]))
                .starts_with("MAILCTL AUDIT OK - 1 domains, 1 checks passed")
        );
    }
}
