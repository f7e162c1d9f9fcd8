//! Diagnostics of long-running commands (`serve`): a `tracing` subscriber that writes to stderr.
//!
//! Command output proper goes through [`crate::output`]; this is for the daemon's log lines. The filter comes
//! from `RUST_LOG` (the `tracing_subscriber::filter::Targets` syntax: `info`, `mailctl=debug,sqlx=warn`) when set,
//! else from `-q`/`-v`. Colour only on a terminal and when `NO_COLOR` is not set. Under systemd (`JOURNAL_STREAM`
//! names stderr) lines carry no timestamp, since journald stamps them, and start with a `<N>` syslog priority
//! prefix, so `journalctl -p warning` filters by level.

use std::io::IsTerminal;

use tracing::Level;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// The crate's own log target prefix, raised first by `-v` so that dependencies stay quiet.
const OWN_TARGET: &str = "mailctl";

/// Installs the process-wide subscriber writing to stderr. `verbosity` is the `-v` count, `quiet` is `-q`.
///
/// Safe to call more than once: only the first call installs anything. An unparsable `RUST_LOG` is reported as
/// one warning and the `-v`/`-q` level is used instead, so a typo never silences a daemon.
pub fn init(verbosity: u8, quiet: bool) {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !no_color;
    init_with(verbosity, quiet, ansi, std::io::stderr);
}

/// [`init`] with another writer: the unit tests install the harness's captured writer, so the log lines of
/// tests that exercise failures show with a failing test instead of in the middle of a green run.
fn init_with<W>(verbosity: u8, quiet: bool, ansi: bool, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let rust_log = std::env::var("RUST_LOG").ok();
    let (targets, bad_rust_log) = select_filter(rust_log.as_deref(), verbosity, quiet);
    let installed = subscriber(targets, under_journal(), ansi, writer).try_init();
    if installed.is_ok()
        && let Some(problem) = bad_rust_log
    {
        tracing::warn!("{problem}");
    }
}

/// The subscriber: `fmt` lines into `writer`, filtered by `targets`; for journald without timestamps and with
/// a priority prefix.
fn subscriber<W>(
    targets: Targets,
    journal: bool,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    if journal {
        let format = JournalPriority(tracing_subscriber::fmt::format().without_time());
        Box::new(
            tracing_subscriber::registry().with(layer.event_format(format).with_filter(targets)),
        )
    } else {
        Box::new(tracing_subscriber::registry().with(layer.with_filter(targets)))
    }
}

/// The filter for a run: `RUST_LOG` when set and valid, else the level of `-q` (warn), none (info), `-v` (debug
/// for mailctl, info for dependencies), `-vv` (trace for mailctl, debug for dependencies), `-vvv` (trace).
///
/// The second value explains why a set `RUST_LOG` was not used. A pure function, so the choice is testable.
pub fn select_filter(
    rust_log: Option<&str>,
    verbosity: u8,
    quiet: bool,
) -> (Targets, Option<String>) {
    let mut problem = None;
    if let Some(spec) = rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        match spec.parse::<Targets>() {
            Ok(t) => return (t, None),
            Err(e) => problem = Some(format!("RUST_LOG={spec:?} ignored: {e}")),
        }
    }
    let targets = match (quiet, verbosity) {
        (true, _) => Targets::new().with_default(Level::WARN),
        (false, 0) => Targets::new().with_default(Level::INFO),
        (false, 1) => Targets::new()
            .with_default(Level::INFO)
            .with_target(OWN_TARGET, Level::DEBUG),
        (false, 2) => Targets::new()
            .with_default(Level::DEBUG)
            .with_target(OWN_TARGET, Level::TRACE),
        (false, _) => Targets::new().with_default(Level::TRACE),
    };
    (targets, problem)
}

/// Whether stderr is the journal stream systemd announced in `JOURNAL_STREAM` (`DEVICE:INODE`).
///
/// Compared with stderr itself, as systemd.exec(5) advises: the variable is inherited by anything a service
/// starts, such as a shell an admin opens from it, whose stderr is a terminal.
fn under_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    match (value.to_str(), stderr_identity()) {
        (Some(v), Some((dev, ino))) => journal_stream_matches(v, dev, ino),
        _ => false,
    }
}

/// Whether a `JOURNAL_STREAM` value names the file with device `dev` and inode `ino`.
fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    match value.split_once(':') {
        Some((d, i)) => d.parse() == Ok(dev) && i.parse() == Ok(ino),
        None => false,
    }
}

#[cfg(unix)]
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_identity() -> Option<(u64, u64)> {
    None
}

/// The syslog priority prefix journald reads from the start of a line (sd-daemon(3)).
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        _ => "<7>",
    }
}

/// Wraps an event format with the journald priority prefix.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // Formatted aside first: the level is padded to five columns (" WARN"), which after the prefix would
        // leave the journal message starting with a space.
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(priority(*event.metadata().level()))?;
        writer.write_str(line.trim_start())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(t: &Targets, target: &str, level: Level) -> bool {
        t.would_enable(target, &level)
    }

    #[test]
    fn flags_choose_the_level_when_rust_log_is_unset() {
        let (t, p) = select_filter(None, 0, false);
        assert!(p.is_none());
        assert!(enabled(&t, "mailctl::smtp", Level::INFO));
        assert!(!enabled(&t, "mailctl::smtp", Level::DEBUG));

        let (t, _) = select_filter(None, 0, true);
        assert!(enabled(&t, "mailctl", Level::WARN));
        assert!(!enabled(&t, "mailctl", Level::INFO));

        let (t, _) = select_filter(None, 1, false);
        assert!(enabled(&t, "mailctl::smtp::inbound::session", Level::DEBUG));
        assert!(!enabled(
            &t,
            "mailctl::smtp::inbound::session",
            Level::TRACE
        ));
        assert!(!enabled(&t, "hickory_proto::udp", Level::DEBUG));
        assert!(enabled(&t, "hickory_proto::udp", Level::INFO));

        let (t, _) = select_filter(None, 2, false);
        assert!(enabled(&t, "mailctl", Level::TRACE));
        assert!(enabled(&t, "sqlx::query", Level::DEBUG));
        assert!(!enabled(&t, "sqlx::query", Level::TRACE));

        let (t, _) = select_filter(Some("  "), 3, false);
        assert!(enabled(&t, "sqlx::query", Level::TRACE));
    }

    #[test]
    fn rust_log_wins_over_flags() {
        let (t, p) = select_filter(Some("warn,mailctl::smtp=trace"), 0, true);
        assert!(p.is_none());
        assert!(enabled(&t, "mailctl::smtp::inbound::session", Level::TRACE));
        assert!(!enabled(&t, "mailctl::store", Level::INFO));
        assert!(enabled(&t, "mailctl::store", Level::WARN));
    }

    #[test]
    fn a_bad_rust_log_is_reported_and_the_flags_apply() {
        let (t, p) = select_filter(Some("mailctl=loud"), 1, false);
        let p = p.unwrap();
        assert!(p.contains("RUST_LOG") && p.contains("mailctl=loud"), "{p}");
        assert!(!p.contains('\n'), "{p}");
        assert!(enabled(&t, "mailctl", Level::DEBUG));
    }

    #[test]
    fn journal_stream_must_name_this_stderr() {
        assert!(journal_stream_matches("8:1234", 8, 1234));
        assert!(!journal_stream_matches("8:1234", 8, 1235));
        assert!(!journal_stream_matches("8-1234", 8, 1234));
        assert!(!journal_stream_matches("", 0, 0));
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(Level::ERROR), "<3>");
        assert_eq!(priority(Level::WARN), "<4>");
        assert_eq!(priority(Level::INFO), "<6>");
        assert_eq!(priority(Level::TRACE), "<7>");
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(journal: bool) -> String {
        let buf = Buffer::default();
        let out = buf.clone();
        let (targets, _) = select_filter(None, 0, false);
        let sub = subscriber(targets, journal, false, move || out.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(client = "192.0.2.1", "disk full");
            tracing::debug!("not shown at info");
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn journal_lines_carry_a_priority_and_no_timestamp() {
        assert_eq!(
            lines(true),
            "<4>WARN mailctl::logging::tests: disk full client=\"192.0.2.1\"\n"
        );
        let text = lines(false);
        assert!(
            text.starts_with("20"),
            "other lines start with a timestamp: {text}"
        );
        let rest = " WARN mailctl::logging::tests: disk full client=\"192.0.2.1\"\n";
        assert!(text.ends_with(rest), "{text}");
    }

    #[test]
    fn init_twice_is_harmless() {
        use tracing_subscriber::fmt::TestWriter;
        init_with(0, true, false, TestWriter::default);
        init_with(2, false, false, TestWriter::default);
    }
}
