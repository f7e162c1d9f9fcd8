//! The CSV layout of `mailctl import` (`mailctl::bulk::parse`).
//!
//! Asserted: no panic, whatever the bytes; a refusal is a usage or per-row error whose messages are one line
//! each with no control characters (they are printed to a terminal and may be logged); accepted records come
//! in application order (domains, alias domains, mailboxes, aliases).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailctl::error::Error;

fuzz_target!(|data: &[u8]| {
    match mailctl::bulk::parse(data) {
        Ok(lines) => {
            assert!(
                lines
                    .windows(2)
                    .all(|w| w[0].record.rank() <= w[1].record.rank()),
                "records are not in application order"
            );
        }
        Err(Error::Rows { summary, rows }) => {
            assert!(!rows.is_empty());
            for message in std::iter::once(&summary).chain(&rows) {
                assert!(
                    !message.chars().any(char::is_control),
                    "control character in {message:?}"
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.chars().any(char::is_control),
                "control character in {message:?}"
            );
        }
    }
});
