//! # mailctl
//!
//! One binary that provisions, runs and audits a self-hosted mail server. This crate is the library behind the
//! `mailctl` binary (`src/main.rs` only parses arguments, runs one command and maps the error to an exit code).
//!
//! ## The shape of the house
//!
//! ```text
//! cli/            clap definitions, one file per subcommand; thin: parse, call, render
//! config.rs       TOML config + flag/env/file/default precedence
//! error.rs        the one Error type; each variant knows its exit code and one-line message
//! output.rs       tables (comfy-table), --json, notes on stderr, progress bars on a TTY
//! model.rs        names that parse: DomainName, LocalPart, Address, AliasAddress
//! password.rs     Dovecot-compatible hashing ({SHA512-CRYPT}, {BLF-CRYPT}, {ARGON2ID}) and verification
//! provision/      the rules of provisioning (limits, self-alias rows, loops, alias domains) over a Tx
//! bulk.rs         the CSV layout of import/export
//! lookup_config.rs  the Postfix maps and Dovecot SQL config that serve the rows mailctl writes
//! dns/            the one Resolver (system or --nameserver), records.rs: what a domain must publish
//! dkim/           keys (RSA/Ed25519, PEM), TXT records, signing and verifying with mail-auth
//! audit/          the receiver's view of a domain: runner (MX first, then every family concurrently),
//!                 checks/ one file (or folder) per family, report.rs (table, json, nagios, exit code)
//! smtp/           the daemon (`mailctl serve`): settings.rs (the validated [server] config), server/ (listeners,
//!                 connection limits, AUTH throttling, TLS with SIGHUP reload, SIGTERM drain, privileges.rs:
//!                 root dropped for `server.user` once the ports are bound), session/ (the state machine:
//!                 io.rs owns the socket and its deadlines, mod.rs the hostile-client limits (pre-greet,
//!                 error and junk-command counts), one file per stage: ehlo, auth, mail, rcpt, data, received), command/ (command line, AUTH decoders, replies), data/ (smuggling-safe DATA
//!                 reader), recipients/ (alias/catch-all resolution, sender ownership), checks/ (SPF, DKIM,
//!                 DMARC, iprev, DNSBL with per-check actions; Authentication-Results), deliver/ (Maildir with
//!                 a group-commit writer, LMTP), metrics/ (Prometheus counters and endpoint), queue/ (the
//!                 outbound queue: the Queue trait, spool and database backends, the delivery manager),
//!                 outbound/ (MX routing, the SMTP client with MTA-STS), dsn/ (RFC 3464 bounces)
//! mta_sts/        MTA-STS policies (parse, mx patterns, HTTPS fetch), shared by the audit and outbound delivery
//! bench/          load generators behind `mailctl bench` (SMTP throughput, idle connections)
//! logging.rs      tracing to stderr (RUST_LOG filter, journald-friendly)
//! store/          the ONLY place that speaks SQL: Store over SQLite and MySQL/MariaDB, migrations,
//!                 one file per table family
//! assets.rs       man pages and shell completions generated from the clap definition
//! ```
//!
//! Data flows one way: `cli` -> `provision` / `bulk` / `lookup_config` / `dkim` / `dns` -> `store`. Nothing
//! below `cli` prints. Nothing outside `dns` builds a resolver: `--nameserver` (and the tests) swap one value.
//! Every command that writes runs in one store transaction ([`store::Tx`]) and commits once, so a failure
//! anywhere leaves the database as it was.
//!
//! Crypto and TLS: mail-auth uses its pure-Rust `rust-crypto` backend and rustls uses `ring` as its only
//! provider (configs are always built with an explicit provider), so nothing compiles aws-lc-sys and there is
//! exactly one rustls provider in the tree.
//!
//! Outside `src/`: `fuzz/` is a separate cargo-fuzz crate (its own workspace and lock) with one libFuzzer
//! target per untrusted-input parser; `tests/` runs the real binary, including against real Postfix and
//! Dovecot (`tests/interop.rs`) and under SIGKILL (`tests/serve_durability.rs`, `serve_crash_*.rs`).
//!
//! Differences from `DESIGN.md`: there is a library crate (`src/lib.rs`) so integration tests, the docs
//! generator and the fuzz targets can reach the modules; provisioning rules live in `provision/` rather than
//! inside `store/`, so that the store stays a thin SQL layer with one statement per method.

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
pub mod smtp;
pub mod store;
pub mod time;
pub mod tls;
