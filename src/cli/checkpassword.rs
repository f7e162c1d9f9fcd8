//! `mailctl checkpassword REPLY...`: Dovecot's checkpassword protocol, for app passwords. Dovecot's SQL passdb
//! checks one password per user (a query returning several rows fails with "Password query returned multiple
//! matches"), so the configuration `mailctl config dovecot` writes asks this command second, after the SQL
//! passdb of the main password: Dovecot writes `user\0password\0` on file descriptor 3; on a match this
//! process becomes REPLY (Dovecot's `checkpassword-reply`) with `USER` set, as the protocol says; otherwise it
//! exits 1 (wrong password: Dovecot says so to the client), or 111 when the database cannot answer (Dovecot
//! counts it as a temporary failure).

use std::io::Read;

use clap::Args;

use super::Ctx;
use crate::error::Result;
use crate::provision;

/// Arguments Dovecot appends.
#[derive(Debug, Args)]
pub struct CheckpasswordArgs {
    /// The program to run on success (Dovecot's checkpassword-reply) and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "REPLY"
    )]
    reply: Vec<String>,
}

/// checkpassword's exit codes.
const WRONG: i32 = 1;
const PROTOCOL: i32 = 2;
const TEMPORARY: i32 = 111;

/// Runs the check; the exit code when it does not become the reply program.
pub async fn run(ctx: &Ctx, args: CheckpasswordArgs) -> Result<i32> {
    let Some((user, password)) = read_credentials() else {
        return Ok(PROTOCOL);
    };
    let Some(reply) = args.reply.first() else {
        return Ok(PROTOCOL);
    };
    // Dovecot names the service asking: smtp logins need `smtp_active`, as the SQL passdb requires.
    let smtp = std::env::var("SERVICE").is_ok_and(|s| s == "smtp");
    // As serve reads a login: an address (IDNA domains in their stored form); anything else never matches.
    let Ok(address) = user.trim().parse::<crate::model::Address>() else {
        return Ok(WRONG);
    };
    let username = address.to_string();
    let checked = async {
        // Never create or migrate a database from Dovecot's auth process: a wrong path or an old schema is a
        // temporary failure for the admin to see, not an empty database that refuses everyone.
        if let Some(path) = crate::store::sqlite_path(&ctx.config.database_url)
            && !path.exists()
        {
            return Err(crate::error::Error::refused(format!(
                "the database {} does not exist",
                path.display()
            )));
        }
        let (store, _) = crate::store::Store::connect(&ctx.config.database_url).await?;
        let mut tx = store.begin().await?;
        let hashes = provision::login_hashes(&mut tx, &username, smtp, None).await?;
        tx.rollback().await?;
        tokio::task::spawn_blocking(move || crate::password::verify_any(&hashes, &password))
            .await
            .map_err(|e| crate::error::Error::refused(format!("password check failed: {e}")))
    }
    .await;
    match checked {
        Ok(true) => {
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(reply)
                .args(&args.reply[1..])
                .env("USER", &username)
                .exec();
            ctx.out
                .note(format!("error: cannot run {reply} after a match: {err}"));
            Ok(TEMPORARY)
        }
        Ok(false) => Ok(WRONG),
        Err(e) => {
            ctx.out.note(format!("error: {e}"));
            Ok(TEMPORARY)
        }
    }
}

/// `user\0password\0...` from file descriptor 3 (at most 512 bytes, as the protocol allows).
fn read_credentials() -> Option<(String, String)> {
    let mut input = Vec::new();
    std::fs::File::open("/dev/fd/3")
        .ok()?
        .take(512)
        .read_to_end(&mut input)
        .ok()?;
    let mut parts = input.split(|b| *b == 0);
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    (!user.is_empty()).then_some((user, password))
}
