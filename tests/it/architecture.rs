//! The arrows of the house (the crate map in `src/lib.rs`), checked on the source: a change that adds an
//! arrow the design forbids fails here, naming the file and line, instead of slowly turning the modules into one.
//!
//! The rules read `use` paths and macro names in the non-test code of `src/` (a file's test module, which by
//! convention comes last after `#[cfg(test)]`, and files under `tests/` directories are skipped).

use std::path::{Path, PathBuf};

/// One forbidden arrow: in files under any of `scope` (paths relative to `src/`), no line may contain any
/// of `patterns`, except in files under `allowed`.
struct Rule {
    why: &'static str,
    scope: &'static [&'static str],
    patterns: &'static [&'static str],
    allowed: &'static [&'static str],
}

const RULES: &[Rule] = &[
    Rule {
        why: "the daemon, the load generators and the shared rooms never depend on the auditor",
        scope: &[
            "smtp",
            "bench",
            "tls",
            "mta_sts",
            "dns",
            "dkim",
            "records.rs",
            "store",
        ],
        patterns: &["crate::audit"],
        allowed: &[],
    },
    Rule {
        why: "sessions know their context, limits and stop signal, never the server that accepts them",
        scope: &["smtp/inbound/session"],
        patterns: &["inbound::server", "super::server", "crate::smtp::daemon"],
        allowed: &[],
    },
    Rule {
        why: "inbound, outbound, queue and delivery are wired by the daemon, not by each other's start-up",
        scope: &[
            "smtp/inbound",
            "smtp/outbound",
            "smtp/queue",
            "smtp/deliver",
        ],
        patterns: &["crate::smtp::daemon"],
        allowed: &[],
    },
    Rule {
        why: "dns is the bottom floor: records and DKIM build on it, not the other way round",
        scope: &["dns"],
        patterns: &[
            "crate::dkim",
            "crate::records",
            "crate::audit",
            "crate::smtp",
        ],
        allowed: &[],
    },
    Rule {
        why: "the store is the only place that speaks SQL",
        scope: &[""],
        patterns: &["sqlx::query", "sqlx::raw_sql", "query_as(", "query_scalar("],
        allowed: &["store"],
    },
    Rule {
        why: "nothing outside dns constructs a resolver",
        scope: &[""],
        patterns: &[
            "TokioResolver",
            "ResolverConfig",
            "MessageAuthenticator::new",
        ],
        allowed: &["dns"],
    },
    Rule {
        why: "nothing below the CLI prints: output goes through output.rs, logs through tracing",
        scope: &[""],
        patterns: &["println!", "print!(", "eprintln!", "eprint!("],
        allowed: &["cli", "main.rs", "output.rs"],
    },
    Rule {
        why: "nothing reads knobs from the environment but the config layer and logging",
        scope: &[""],
        patterns: &["env::var("],
        allowed: &["config.rs", "cli", "logging.rs"],
    },
];

fn src() -> PathBuf {
    kit::repo_root().join("src")
}

/// Every `.rs` file under `dir`, skipping `tests/` directories and `tests.rs` files.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if name != "tests" {
                files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// The lines of `path` before its test module, numbered from 1, comments left out.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("read a source file");
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn under(rel: &Path, prefix: &str) -> bool {
    prefix.is_empty() || rel.starts_with(prefix)
}

#[test]
fn no_forbidden_arrow_between_modules() {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(all.len() > 100, "found only {} source files", all.len());
    let mut violations = Vec::new();
    for file in &all {
        let rel = file.strip_prefix(&root).expect("under src");
        let rules: Vec<&Rule> = RULES
            .iter()
            .filter(|r| r.scope.iter().any(|s| under(rel, s)))
            .filter(|r| !r.allowed.iter().any(|a| under(rel, a)))
            .collect();
        if rules.is_empty() {
            continue;
        }
        for (n, line) in code_lines(file) {
            for rule in &rules {
                if let Some(p) = rule.patterns.iter().find(|p| line.contains(*p)) {
                    violations.push(format!(
                        "src/{}:{n}: `{p}`: {}\n    {}",
                        rel.display(),
                        rule.why,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_crate_map_names_every_top_level_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
    let (map, decls) = lib.split_once("\npub mod ").expect("module declarations");
    let decls = format!("pub mod {decls}");
    for name in decls
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
    {
        let shown = [format!("//! {name}/"), format!("//! {name}.rs")];
        assert!(
            shown.iter().any(|s| map.contains(s.as_str())),
            "src/lib.rs declares `{name}` but its crate map (the `text` block) does not name it"
        );
    }
}
