//! Reading a new password: from standard input, a terminal prompt, or generated; never from argv.

use std::io::{BufRead, IsTerminal};

use clap::Args;

use super::Ctx;
use crate::error::{Error, Result};
use crate::model::Address;
use crate::password::{self, Scheme};

/// Where a new password comes from. Never from argv: it would show in `ps` and shell history.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input
    #[arg(long, conflicts_with = "random_password")]
    password_stdin: bool,
    /// Generate a random password and print it once
    #[arg(long, visible_alias = "random")]
    random_password: bool,
    /// Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]
    #[arg(long, value_name = "SCHEME")]
    scheme: Option<String>,
}

/// A new password, hashed, and the plain text when mailctl generated it (to show once).
pub struct NewPassword {
    /// The `{SCHEME}hash` to store.
    pub hash: String,
    /// The plain text, when mailctl generated it (to show once).
    pub generated: Option<String>,
}

impl PasswordArgs {
    /// Reads (or generates), checks and hashes the password; hashing runs off the async reactor.
    pub async fn obtain(&self, ctx: &Ctx, who: &Address) -> Result<NewPassword> {
        let scheme = match &self.scheme {
            Some(s) => s.parse::<Scheme>().map_err(Error::Usage)?,
            None => ctx.config.password_scheme,
        };
        let (plain, generated) = if self.random_password {
            let p = password::random_password();
            (p.clone(), Some(p))
        } else if self.password_stdin {
            (read_stdin_line()?, None)
        } else if std::io::stdin().is_terminal() {
            (prompt(who)?, None)
        } else {
            return Err(Error::usage(
                "no password given: use --password-stdin, --random-password, or run on a terminal",
            ));
        };
        password::check_acceptable(&plain, ctx.config.min_password_length).map_err(Error::Usage)?;
        let hash = tokio::task::spawn_blocking(move || password::hash(scheme, &plain))
            .await
            .map_err(|e| Error::refused(format!("password hashing failed: {e}")))?
            .map_err(|e| Error::usage(e.to_string()))?;
        Ok(NewPassword { hash, generated })
    }
}

/// The first line of standard input, without its line break.
pub(super) fn read_stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| Error::File {
            action: "cannot read the password from",
            path: "standard input".into(),
            source,
        })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn prompt(who: &Address) -> Result<String> {
    let io_err = |source| Error::File {
        action: "cannot read the password from",
        path: "the terminal".into(),
        source,
    };
    let first = rpassword::prompt_password(format!("New password for {who}: ")).map_err(io_err)?;
    let again = rpassword::prompt_password("Repeat it: ").map_err(io_err)?;
    if first != again {
        return Err(Error::usage("the two passwords differ"));
    }
    Ok(first)
}
