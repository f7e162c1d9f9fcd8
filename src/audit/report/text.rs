//! The audit as a person reads it first thing in the morning: a diagnostic report, not a spreadsheet.
//!
//! Per domain, one line per finding (status, id, subject and the first line of the detail), cut with `…` to
//! the terminal width, grouped by family with the worst family first; then, under "To fix", each fix whole, on
//! lines of its own (records in zone syntax, long TXT values already split in quoted 255-byte strings), so it
//! can be copied; then one verdict line that says what the exit code means. Several domains get a summary
//! table first and the details of the domains that are not OK after it. `-v` adds every detail line.
//!
//! The width is `COLUMNS` when set, else the terminal's; in a pipe nothing is cut. Colour only on a terminal
//! without `NO_COLOR` (the caller decides).

use super::{AuditReport, exit_code};
use crate::audit::{DomainReport, FAMILIES, Finding, Status};

/// How to lay the report out.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Cut finding lines to this many characters (None: never cut).
    pub width: Option<usize>,
    /// Colour the statuses.
    pub colour: bool,
    /// Show every line of every detail.
    pub verbose: bool,
}

/// The longest id column; longer ids push their line's subject right.
const MAX_ID: usize = 22;

/// The whole report.
pub fn render(report: &AuditReport, style: Style) -> String {
    let mut out = Vec::new();
    let id_width = report
        .domains
        .iter()
        .flat_map(|d| &d.findings)
        .map(|f| f.id.len())
        .max()
        .unwrap_or(0)
        .min(MAX_ID);
    if report.domains.len() > 1 {
        out.push(summary(report, style));
        for d in report
            .domains
            .iter()
            .filter(|d| matches!(d.status, Status::Warn | Status::Fail | Status::Unknown))
        {
            out.push(String::new());
            domain(&mut out, d, id_width, style);
        }
    } else if let Some(d) = report.domains.first() {
        domain(&mut out, d, id_width, style);
    }
    out.push(String::new());
    out.push(verdict(report, style));
    out.join("\n")
}

/// One domain: its headline, its findings by family, its fixes.
fn domain(out: &mut Vec<String>, d: &DomainReport, id_width: usize, style: Style) {
    let n = |s: &[Status]| count(d, s);
    let header = format!(
        "{}  {}  ({}, {}, {}, {})",
        d.domain,
        d.status.name(),
        plural(n(&[Status::Fail]), "failed", "failed"),
        plural(n(&[Status::Warn]), "warning", "warnings"),
        plural(n(&[Status::Unknown]), "not tested", "not tested"),
        plural(n(&[Status::Pass, Status::Info]), "passed", "passed"),
    );
    out.push(colour_status(cut(&header, style.width), d.status, style));
    for family in families(d) {
        out.push(String::new());
        for f in family {
            out.push(line(f, id_width, style));
            if style.verbose {
                for more in f.detail.lines().skip(1) {
                    out.push(cut(
                        &format!("{:9}{:id_width$}  {}", "", "", more.trim()),
                        style.width,
                    ));
                }
            }
        }
    }
    let fixes = fixes(d);
    if !fixes.is_empty() {
        out.push(String::new());
        out.push("To fix".to_string());
        for (fix, findings) in fixes {
            let mut subjects: Vec<&str> = Vec::new();
            for f in &findings {
                if !subjects.contains(&f.subject.as_str()) {
                    subjects.push(&f.subject);
                }
            }
            let ids: Vec<&str> = findings.iter().map(|f| f.id).collect();
            out.push(cut(
                &format!("  {} ({}):", ids.join(", "), subjects.join(", ")),
                style.width,
            ));
            for fix_line in fix.lines() {
                out.push(format!("    {fix_line}"));
            }
        }
    }
}

/// What to fix, what to do first first: one entry per distinct fix (several findings often point at one
/// record: the whole SPF record mends both `spf.all` and `spf.lookups`), with the findings it mends; the
/// entries ordered by the worst of their findings, ties in the order the checks ran in.
fn fixes(d: &DomainReport) -> Vec<(&str, Vec<&Finding>)> {
    let mut entries: Vec<(&str, Vec<&Finding>)> = Vec::new();
    for f in &d.findings {
        let Some(fix) = f.fix.as_deref() else {
            continue;
        };
        match entries.iter_mut().find(|(text, _)| *text == fix) {
            Some((_, findings)) => findings.push(f),
            None => entries.push((fix, vec![f])),
        }
    }
    entries.sort_by_key(|(_, findings)| std::cmp::Reverse(findings.iter().map(|f| f.status).max()));
    entries
}

/// The findings grouped by family (the id's prefix), each group worst first, the worst group first; ties
/// keep the order of [`FAMILIES`] and, within a family, the order the checks ran in.
fn families(d: &DomainReport) -> Vec<Vec<&Finding>> {
    let family_of = |f: &Finding| f.id.split('.').next().unwrap_or("").to_string();
    let mut names: Vec<String> = Vec::new();
    for f in &d.findings {
        let name = family_of(f);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let mut groups: Vec<Vec<&Finding>> = names
        .iter()
        .map(|name| {
            let mut g: Vec<&Finding> = d
                .findings
                .iter()
                .filter(|f| family_of(f) == *name)
                .collect();
            g.sort_by_key(|f| std::cmp::Reverse(f.status));
            g
        })
        .collect();
    let rank = |g: &Vec<&Finding>| {
        let name = g.first().map(|f| family_of(f)).unwrap_or_default();
        let order = FAMILIES
            .iter()
            .position(|n| *n == name)
            .unwrap_or(FAMILIES.len());
        (std::cmp::Reverse(g.iter().map(|f| f.status).max()), order)
    };
    groups.sort_by_key(rank);
    groups
}

/// `FAIL     spf.record            example.org: no SPF record`, cut to the width.
fn line(f: &Finding, id_width: usize, style: Style) -> String {
    let first = f.detail.lines().next().unwrap_or("").trim();
    let text = if first.is_empty() {
        f.subject.clone()
    } else {
        format!("{}: {first}", f.subject)
    };
    let plain = format!("{:<7}  {:<id_width$}  {text}", f.status.name(), f.id);
    let plain = cut(&plain, style.width);
    if style.colour {
        // The status word is the line's first 7 characters, padded; colour leaves the width alone.
        let name = f.status.name();
        match plain.strip_prefix(name) {
            Some(rest) => format!("{}{rest}", paint(f.status, true)),
            None => plain,
        }
    } else {
        plain
    }
}

/// Several domains: one row each (domain, worst status, counts), aligned, within the width.
fn summary(report: &AuditReport, style: Style) -> String {
    let width = report
        .domains
        .iter()
        .map(|d| d.domain.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut rows = vec![format!(
        "{:<width$}  {:<7}  {:>4}  {:>4}  {:>4}  {:>7}",
        "DOMAIN", "STATUS", "FAIL", "WARN", "PASS", "UNKNOWN"
    )];
    for d in &report.domains {
        let n = |s: &[Status]| count(d, s);
        let row = format!(
            "{:<width$}  {:<7}  {:>4}  {:>4}  {:>4}  {:>7}",
            d.domain,
            d.status.name(),
            n(&[Status::Fail]),
            n(&[Status::Warn]),
            n(&[Status::Pass, Status::Info]),
            n(&[Status::Unknown])
        );
        rows.push(colour_status(cut(&row, style.width), d.status, style));
    }
    rows.iter()
        .map(|r| r.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many of a domain's findings have one of `statuses`.
fn count(d: &DomainReport, statuses: &[Status]) -> usize {
    d.findings
        .iter()
        .filter(|f| statuses.contains(&f.status))
        .count()
}

/// `line` with the domain's status word (between two double spaces) coloured, when colour is on. By its text,
/// never by byte offsets: the line may be cut and the domain may hold non-ASCII characters.
fn colour_status(line: String, status: Status, style: Style) -> String {
    let word = format!("  {}  ", status.name());
    if style.colour && line.contains(&word) {
        line.replacen(&word, &format!("  {}  ", paint(status, true)), 1)
    } else {
        line
    }
}

/// `FAIL (exit 2): receivers refuse or junk this mail; fix the failures first`.
fn verdict(report: &AuditReport, style: Style) -> String {
    let code = exit_code(report.status);
    let meaning = match code {
        0 => "nothing to do",
        1 => "mail gets through, but receivers trust it less",
        2 => "receivers refuse or junk this mail; fix the failures first",
        _ => "some checks could not run; their lines say why",
    };
    format!(
        "{} (exit {code}): {meaning}",
        paint(report.status, style.colour)
    )
}

/// `1 warning`, `2 warnings`.
fn plural(n: usize, one: &str, many: &str) -> String {
    crate::output::count(i64::try_from(n).unwrap_or(i64::MAX), one, many)
}

/// `text` cut to `width` characters with `…` when longer (never to less than two).
fn cut(text: &str, width: Option<usize>) -> String {
    match width {
        Some(w) => crate::output::ellipsis(text, w.max(2)),
        None => text.to_string(),
    }
}

/// The status word, coloured when asked.
fn paint(status: Status, colour: bool) -> String {
    if !colour {
        return status.name().to_string();
    }
    let code = match status {
        Status::Pass => "32",
        Status::Info => "34",
        Status::Warn => "33",
        Status::Unknown => "35",
        Status::Fail => "31",
    };
    format!("\x1b[{code}m{}\x1b[0m", status.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A domain and its findings: id, status, fix.
    type Spec<'a> = (&'a str, &'a [(&'static str, Status, Option<&'a str>)]);

    fn report(domains: &[Spec<'_>]) -> AuditReport {
        AuditReport::new(
            domains
                .iter()
                .map(|(domain, findings)| {
                    let findings: Vec<Finding> = findings
                        .iter()
                        .map(|(id, status, fix)| {
                            let f = Finding::new(
                                id,
                                *status,
                                domain.to_string(),
                                "a detail long enough to be cut at eighty columns, which it will be here\nsecond line",
                            );
                            match fix {
                                Some(fix) => f.fix(*fix),
                                None => f,
                            }
                        })
                        .collect();
                    DomainReport {
                        domain: domain.to_string(),
                        status: findings.iter().map(|f| f.status).max().unwrap_or(Status::Pass),
                        findings,
                    }
                })
                .collect(),
        )
    }

    const PLAIN: Style = Style {
        width: Some(80),
        colour: false,
        verbose: false,
    };

    #[test]
    fn lines_fit_the_width_fixes_are_whole_and_the_worst_family_comes_first() {
        let fix = "_dmarc.example.org. 3600 IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org; a long tail\"";
        let r = report(&[(
            "example.org",
            &[
                ("mx.present", Status::Pass, None),
                ("spf.record", Status::Warn, None),
                ("dmarc.record", Status::Fail, Some(fix)),
                ("dmarc.policy", Status::Pass, None),
            ],
        )]);
        let text = render(&r, PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "example.org  FAIL  (1 failed, 1 warning, 0 not tested, 2 passed)",
            "{text}"
        );
        let first_finding = lines.iter().position(|l| l.starts_with("FAIL")).unwrap();
        assert!(lines[first_finding].contains("dmarc.record"), "{text}");
        assert!(
            lines[first_finding + 1].starts_with("PASS     dmarc.policy"),
            "{text}"
        );
        for l in lines.iter().filter(|l| !l.starts_with("    ")) {
            assert!(l.chars().count() <= 80, "{l:?} is wider than 80");
        }
        assert!(lines.iter().any(|l| l.ends_with('…')), "{text}");
        let to_fix = lines
            .iter()
            .position(|l| *l == "To fix")
            .expect("a To fix section");
        assert_eq!(lines[to_fix + 1], "  dmarc.record (example.org):");
        assert_eq!(lines[to_fix + 2], format!("    {fix}"), "the fix is whole");
        assert_eq!(
            *lines.last().unwrap(),
            "FAIL (exit 2): receivers refuse or junk this mail; fix the failures first"
        );
        assert!(!text.contains('\u{1b}'));
        assert!(!text.contains("second line"));
        let verbose = render(
            &r,
            Style {
                verbose: true,
                ..PLAIN
            },
        );
        assert!(verbose.contains("second line"));
    }

    #[test]
    fn one_fix_for_several_findings_is_shown_once_and_the_worst_comes_first() {
        let spf = "example.org. 3600 IN TXT \"v=spf1 mx -all\"";
        let dmarc = "_dmarc.example.org. 3600 IN TXT \"v=DMARC1; p=none\"";
        let r = report(&[(
            "example.org",
            &[
                ("dmarc.policy", Status::Warn, Some(dmarc)),
                ("spf.all", Status::Fail, Some(spf)),
                ("spf.lookups", Status::Warn, Some(spf)),
            ],
        )]);
        let text = render(&r, PLAIN);
        let to_fix: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "To fix")
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            to_fix,
            [
                "To fix",
                "  spf.all, spf.lookups (example.org):",
                &format!("    {spf}"),
                "  dmarc.policy (example.org):",
                &format!("    {dmarc}"),
            ],
            "{text}"
        );
    }

    #[test]
    fn several_domains_get_a_summary_and_details_of_those_not_ok() {
        let r = report(&[
            ("good.example", &[("mx.present", Status::Pass, None)]),
            ("bad.example", &[("mx.present", Status::Fail, None)]),
        ]);
        let text = render(
            &r,
            Style {
                width: None,
                ..PLAIN
            },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DOMAIN"), "{text}");
        assert!(lines[1].starts_with("good.example  PASS"), "{text}");
        assert!(lines[2].starts_with("bad.example   FAIL"), "{text}");
        assert!(text.contains("\nbad.example  FAIL  ("), "{text}");
        assert!(
            !text.contains("\ngood.example  PASS  ("),
            "an OK domain has no details: {text}"
        );
        let coloured = render(
            &r,
            Style {
                colour: true,
                ..PLAIN
            },
        );
        // Narrow and coloured, with a non-ASCII domain: cut by characters, coloured by text, no panic.
        let narrow = report(&[
            (
                "bücher-bücher-bücher.example",
                &[("mx.present", Status::Fail, None)],
            ),
            ("b.example", &[("mx.present", Status::Pass, None)]),
        ]);
        for w in [3, 12, 30] {
            let _ = render(
                &narrow,
                Style {
                    width: Some(w),
                    colour: true,
                    verbose: false,
                },
            );
        }
        // The summary row and the finding line are coloured, not only the verdict.
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("bad.example") && l.contains("\x1b[31mFAIL\x1b[0m")),
            "{coloured}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("\x1b[31mFAIL\x1b[0m") && l.contains("mx.present")),
            "{coloured}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("good.example") && l.contains("\x1b[32mPASS\x1b[0m")),
            "{coloured}"
        );
    }
}
