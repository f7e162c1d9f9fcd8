//! mailctl's integration tests: one test binary (as ripgrep and cargo lay theirs out), one module per area.
//! They drive the real `mailctl` binary and the real daemon over real sockets, against throw-away databases
//! (SQLite, and MariaDB from `MAILCTL_TEST_MYSQL_URL`), a loopback DNS server and scripted or real peers; the
//! shared machinery is the test kit (`tests/kit`, imported as `kit`), which the benches use too.
//!
//! Run one area or one test: `cargo test --test it serve_hostile`, `cargo test --test it -- --exact
//! serve_inbound::sqlite::catch_all_takes_unknown_names_but_not_mailboxes`. Heavy tests (kill loops, thousands of connections,
//! memory measurements) hold [`kit::exclusive`] so they never overlap. The interop tests with the real Postfix,
//! Dovecot and swaks are ignored unless asked for (`-- --ignored interop`; `.ci/run` installs the programs
//! and runs them).

mod architecture;
mod audit;
mod audit_dkim_dmarc;
mod audit_dmarc_walk;
mod audit_full;
mod audit_ptr_dnsbl;
mod audit_relay;
mod audit_smtp;
mod audit_spf;
mod bad_input;
mod bench_cmd;
mod cert_cmd;
mod cli_conventions;
mod config_systemd;
mod dkim;
mod dns_harness;
mod dns_records;
mod generated_files;
mod import_export;
mod interop;
mod lookup_config;
mod provisioning;
mod queue_cmd;
mod queue_database;
mod reports_import;
mod reports_summary;
mod secrets;
mod serve_app_passwords;
mod serve_checks;
mod serve_crash_database;
mod serve_crash_outbound;
mod serve_durability;
mod serve_forward;
mod serve_greylist;
mod serve_hostile;
mod serve_https;
mod serve_inbound;
mod serve_inbound_limits;
mod serve_milter;
mod serve_ops;
mod serve_outbound;
mod serve_outbound_cluster;
mod serve_outbound_queue;
mod serve_privileges;
mod serve_protocol;
mod serve_relay;
mod serve_reports;
mod serve_reports_send;
mod serve_send_limits;
mod serve_submission;
mod serve_vacation;
mod smtp_checks;
mod smtp_outbound_client;
mod smtp_outbound_lookup;
mod smtp_recipients;
mod srs_cmd;
mod worlds;
