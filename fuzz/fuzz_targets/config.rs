//! The config file: `mailctl::config::parse`, then the validation `serve` applies to `[server]`.
//!
//! The input is the file's text. When it parses, it is resolved into a `Config` the way `Config::load` does
//! (without flags or environment; fields it does not set keep `Config::load`'s defaults) and validated with `Settings::from_config`, once with the file's listeners
//! and once with `--listen` flags taken from `#listen NAME=ADDR` comment lines. `server.hostname` gets a value
//! when absent, so the validation never reads the system host name: nothing touches the disk or network.
//!
//! Asserted: no panic; a parse error is one line without control characters, as `config::parse` documents.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailctl::config::{self, Config, FileConfig, Overrides, Source};
use mailctl::password::Scheme;
use mailctl::smtp::settings::{self, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match config::parse(text) {
        Ok(file) => file,
        Err(e) => {
            assert!(
                !e.chars().any(char::is_control),
                "parse error is not one clean line: {e:?}"
            );
            return;
        }
    };
    let flags: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#listen "))
        .map(str::to_owned)
        .collect();
    let Some(config) = resolve(file) else {
        return;
    };
    let _ = settings::queue(&config.server.queue, &config.database_url);
    let _ = Settings::from_config(&config, &[]);
    if !flags.is_empty() {
        let _ = Settings::from_config(&config, &flags);
    }
});

/// `Config::load` for a file already parsed, with no flags or environment: the file's values over a base from
/// `Config::load` itself (built once), so fields this target does not know about keep `load`'s defaults.
fn resolve(file: FileConfig) -> Option<Config> {
    static BASE: OnceLock<Option<Config>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        Config::load(&Overrides {
            database_url_flag: Some("sqlite:///nonexistent/fuzz.db".to_owned()),
            ..Overrides::default()
        })
        .ok()
    });
    let mut config = base.clone()?;
    if let Some(s) = &file.passwords.scheme {
        config.password_scheme = s.parse::<Scheme>().ok()?;
    }
    if let Some(url) = file.database.url.clone().filter(|u| !u.trim().is_empty()) {
        config.database_url = url;
        config.database_source = Source::ConfigFile;
    }
    config.min_password_length = file.passwords.min_length.unwrap_or(8);
    config.vmail_root = file
        .mail
        .vmail_root
        .unwrap_or_else(|| PathBuf::from("/var/vmail"));
    config.vmail_uid = file.mail.vmail_uid.unwrap_or(5000);
    config.vmail_gid = file.mail.vmail_gid.unwrap_or(5000);
    config.hostname = Some(
        file.server
            .hostname
            .clone()
            .unwrap_or_else(|| "mx.example.org".to_owned()),
    );
    config.public_ips = file.server.public_ips.clone();
    config.nameserver = file.dns.nameserver;
    config.server = file.server;
    Some(config)
}
