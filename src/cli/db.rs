//! `mailctl db migrate|status`

use clap::Subcommand;
use serde::Serialize;

use super::Ctx;
use crate::config::Source;
use crate::error::Result;
use crate::output::{Render, key_values};
use crate::store::migrate::{Applied, MIGRATIONS, Status};
use crate::store::{Backend, Store, redact_url};

/// Database subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Apply pending schema migrations (also done automatically on first use)
    Migrate,
    /// Show the database, its schema version and pending migrations (changes nothing)
    Status,
}

#[derive(Serialize)]
struct Migrated {
    applied: Vec<Applied>,
    current_version: i64,
}

impl Render for Migrated {
    fn render(&self) -> String {
        if self.applied.is_empty() {
            return format!("schema is up to date (version {})", self.current_version);
        }
        self.applied
            .iter()
            .map(|a| format!("applied migration {}: {}", a.version, a.description))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Serialize)]
struct StatusView {
    backend: Backend,
    url: String,
    url_source: Source,
    #[serde(flatten)]
    schema: Status,
}

impl Render for StatusView {
    fn render(&self) -> String {
        let pending = if self.schema.pending.is_empty() {
            "none".to_string()
        } else {
            let list: Vec<String> = self.schema.pending.iter().map(i64::to_string).collect();
            format!("{} (run `mailctl db migrate`)", list.join(", "))
        };
        key_values(vec![
            ("backend", format!("{:?}", self.backend).to_lowercase()),
            ("database", self.url.clone()),
            ("from", format!("{:?}", self.url_source).to_lowercase()),
            ("schema version", self.schema.current_version.to_string()),
            ("latest version", self.schema.latest_version.to_string()),
            ("pending", pending),
        ])
    }
}

/// Runs a db subcommand.
pub async fn run(ctx: &Ctx, cmd: DbCmd) -> Result<()> {
    match cmd {
        DbCmd::Migrate => {
            let (store, created) = Store::connect(&ctx.config.database_url).await?;
            if let Some(p) = created {
                ctx.out
                    .note(format!("created new database at {}", p.display()));
            }
            let applied = store.migrate().await?;
            let current_version = store.migration_status().await?.current_version;
            ctx.out.emit(&Migrated {
                applied,
                current_version,
            });
        }
        DbCmd::Status => {
            // Status changes nothing: a SQLite file that does not exist yet is reported, not created.
            if let Some(path) = crate::store::sqlite_path(&ctx.config.database_url)
                && !path.exists()
            {
                ctx.out
                    .note(format!("no database at {} yet", path.display()));
                ctx.out.emit(&StatusView {
                    backend: Backend::Sqlite,
                    url: redact_url(&ctx.config.database_url),
                    url_source: ctx.config.database_source,
                    schema: Status {
                        current_version: 0,
                        latest_version: MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0),
                        applied: Vec::new(),
                        pending: MIGRATIONS.iter().map(|m| m.version).collect(),
                    },
                });
                return Ok(());
            }
            let (store, _) = Store::connect(&ctx.config.database_url).await?;
            let schema = store.migration_status().await?;
            ctx.out.emit(&StatusView {
                backend: store.backend(),
                url: redact_url(store.url()),
                url_source: ctx.config.database_source,
                schema,
            });
        }
    }
    Ok(())
}
