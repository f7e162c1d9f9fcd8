//! Unit tests of the command parser, one file per concern, with helpers shared between them.

mod auth;
mod params;
mod paths;
mod reply;
mod verbs;

use super::{Command, CommandError, parse};

/// Parses a line that must be accepted.
fn ok(line: &str) -> Command {
    match parse(line.as_bytes()) {
        Ok(command) => command,
        Err(e) => panic!("{line:?} was refused: {e}"),
    }
}

/// Parses a line that must be refused and returns the error.
fn err(line: &[u8]) -> CommandError {
    match parse(line) {
        Ok(command) => panic!(
            "{:?} was accepted as {command:?}",
            String::from_utf8_lossy(line)
        ),
        Err(e) => e,
    }
}

/// The code and enhanced code a refused line is answered with, e.g. `"501 5.1.3"`.
fn codes(line: &[u8]) -> String {
    let reply = err(line).reply();
    let enhanced = reply
        .enhanced()
        .map(|(a, b, c)| format!(" {a}.{b}.{c}"))
        .unwrap_or_default();
    format!("{}{enhanced}", reply.code())
}
