//! # mailctl
//!
//! One binary that provisions, runs and audits a self-hosted mail server. This crate is the library behind the
//! `mailctl` binary (`src/main.rs` only parses arguments, runs one command and maps the error to an exit code).
//!
//! ## The shape of the house
//!
//! ```text
//! cli/            clap definitions, one file per subcommand; thin: parse, call, render
//! config.rs       TOML config + flag/env/file/default precedence (the only reader of MAILCTL_* variables)
//! error.rs        the one Error type; each variant knows its exit code and one-line message
//! output.rs       tables (comfy-table), --json, notes on stderr, progress bars on a TTY
//! model.rs        names that parse: DomainName, LocalPart, Address, AliasAddress
//! time.rs         UTC timestamps for storage and JSON, local time for tables
//! password/       Dovecot-compatible hashing ({SHA512-CRYPT}, {BLF-CRYPT}, {ARGON2ID}) and verification
//! logging.rs      tracing to stderr (RUST_LOG filter, journald-friendly)
//! store/          the ONLY place that speaks SQL: Store over SQLite and MySQL/MariaDB, migrations,
//!                 one file per table family (the outbound queue's tables included)
//! provision/      the rules of provisioning (limits, self-alias rows, loops, alias domains) over a Tx; the
//!                 sending limits of logged-in users (limits.rs: scopes, periods, the breaker's threshold);
//!                 postfixadmin's app passwords, TOTP rule (app_passwords.rs) and vacation replies (vacation.rs)
//! bulk.rs         the CSV layout of import/export
//! lookup_config.rs  the Postfix maps and Dovecot SQL config that serve the rows mailctl writes (with
//!                 `mailctl checkpassword` as Dovecot's passdb for app passwords)
//! dns/            the one Resolver (system or --nameserver), reverse names, TXT tag syntax (dns::txt), DMARC
//!                 policy discovery (dns::dmarc: the RFC 9989 tree walk, for the audit and the daemon alike)
//! dkim/           keys (RSA/Ed25519, PEM), TXT records, signing and verifying with mail-auth
//! srs.rs          the Sender Rewriting Scheme (SRS0/SRS1 as Mail::SRS and postsrsd write them) for forwarded mail
//! records.rs      what a domain must publish (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, PTR), as a zone
//! reports/        what receivers report back: DMARC aggregate and TLS reports found in files and mail
//!                 (extract.rs: gzip, zip, XML, JSON, MIME, bounded), stored per report (ingest.rs); and
//!                 the DMARC and TLS reports serve sends (send/: events recorded off the SMTP path, daily
//!                 reports per domain, _report._dmarc authorization, signed and queued)
//! mta_sts/        MTA-STS: the _mta-sts record, policies (parse, mx patterns), the HTTPS fetch; shared by the
//!                 audit and outbound delivery
//! tls/            TLS setup: the ring provider, trust roots (+ a configured extra CA), verified, opportunistic and
//!                 inspecting client configs, the listeners' certificate (server.rs, reloaded on SIGHUP), what a
//!                 certificate says (leaf.rs: names, validity, the TLSA 3 1 1 hash)
//! acme/           certificates from an ACME CA ([server.acme]): settings.rs, store.rs (account, kept key, chain,
//!                 state, 0600, atomic), client.rs (HTTPS/1.1 through our Resolver for instant-acme), challenge.rs
//!                 (TLS-ALPN-01 on the HTTPS listener, HTTP-01), names.rs (which names resolve), order.rs (one
//!                 issuance), manager.rs (the daemon's renewal task, over smtp's Context; `mailctl cert`)
//! audit/          the receiver's view of a domain: runner (MX first, then every family concurrently),
//!                 checks/ one file (or folder) per family, report/ (the text report people read, table,
//!                 json, nagios, exit code)
//! smtp/           the daemon (`mailctl serve`):
//!   settings.rs     the validated [server] config
//!   daemon/         start-up order, privileges (root dropped once ports are bound), wiring the halves,
//!                   signals and the drain; local delivery for the queue manager
//!   inbound/        mail arriving: server.rs (accept loop, admission, implicit TLS), context.rs (what
//!                   sessions share), limits.rs, session/ (the state machine, one file per stage), command/,
//!                   data/ (smuggling-safe DATA reader), recipients/, checks/ (SPF, DKIM, DMARC, iprev, DNSBL),
//!                   send_counter.rs + breaker.rs (sending limits counted in memory, written each second; the
//!                   breaker that switches a stolen account off), greylist.rs, milter/ (the milter
//!                   protocol v6 client: protocol.rs bytes, conversation.rs one filter's talk after DATA,
//!                   message.rs the header/body edits; session/milter.rs is the stage that calls it),
//!                   vacation.rs (RFC 3834 auto-replies after delivery)
//!   queue/          the outbound queue: ONE engine (engine.rs: claims, leases, results, admin) over a small
//!                   storage trait (storage.rs) that spool/ and database/ implement; role traits Intake
//!                   (sessions), Delivery (manager), Admin (CLI); entry.rs, the delivery manager
//!   outbound/       mail leaving: MX routing, the SMTP client, MTA-STS policies, dsn/ (RFC 3464 bounces),
//!                   tls_reports.rs (each session's TLS outcome for the recipient domain's TLS reports)
//!   deliver/        Maildir with a group-commit writer, LMTP
//!   metrics/        Prometheus counters and endpoint; shutdown.rs: the stop signal every task holds
//!   http.rs         the little HTTP/1.1 both endpoints speak; https/ the HTTPS endpoint (MTA-STS policies,
//!                   Thunderbird autoconfig, Outlook autodiscover, by Host)
//!   cached.rs       a database read shared for a period (who is away, which domains are hosted)
//! bench/          load generators behind `mailctl bench` (SMTP throughput, idle connections)
//! assets.rs       man pages and shell completions generated from the clap definition
//! sys.rs          the few process-level POSIX calls (ids, file limit) as safe functions; with
//!                 smtp/daemon/privileges.rs the only code allowed `unsafe`
//! ```
//!
//! Arrows only go down. `cli` -> everything; `audit`, `smtp` and `bench` -> the shared rooms (`tls`, `mta_sts`,
//! `dkim`, `records`) -> `dns`, `model`, `store`. Nothing in `smtp` or `bench` imports `audit`; a session never
//! imports the server that accepts it; `dns` imports neither `dkim` nor `records`. Nothing below `cli` prints.
//! Nothing outside `store` builds SQL. Nothing outside `dns` builds a resolver: `--nameserver` (and the tests)
//! swap one value. `tests/it/architecture.rs` checks these arrows and that this map names every module.
//! Every command that writes runs in one store transaction ([`store::Tx`]) and commits once, so a failure
//! anywhere leaves the database as it was.
//!
//! Crypto and TLS: mail-auth uses its pure-Rust `rust-crypto` backend and rustls uses `ring` as its only
//! provider (configs are always built with an explicit provider, [`tls::provider`]), so nothing compiles
//! aws-lc-sys and there is exactly one rustls provider in the tree.
//!
//! Outside `src/`: `tests/it/` is the one integration-test crate (a module per area), `tests/kit/` the test kit it
//! shares with `benches/` (throw-away databases, the one `serve` launcher, a loopback DNS server, SMTP
//! clients); `fuzz/` holds one libFuzzer target per untrusted-input parser.
//!
//! Differences from the team's design notes: there is a library crate (`src/lib.rs`) so integration tests, the
//! docs generator and the fuzz targets can reach the modules; provisioning rules live in `provision/` rather
//! than inside `store/`, so that the store stays a thin SQL layer with one statement per method; the daemon's
//! start-up and wiring live in `smtp/daemon/`, above both halves, rather than in the inbound server.

pub mod acme;
pub mod assets;
pub mod audit;
pub mod bench;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod dkim;
pub mod dns;
pub mod error;
pub mod logging;
pub mod lookup_config;
pub mod model;
pub mod mta_sts;
pub mod output;
pub mod password;
pub mod provision;
pub mod records;
pub mod reports;
pub mod smtp;
pub mod srs;
pub mod store;
pub mod sys;
pub mod time;
pub mod tls;
