//! The `mailctl` binary: parse arguments, run one command, map the error to an exit code.
//!
//! The architecture is described in the crate documentation of the library (`src/lib.rs`).

use clap::Parser;
use clap::error::ErrorKind;

/// Whether the command line is an `audit` run (whose argument errors exit 3, like a monitoring plugin's).
fn is_audit(args: &[String]) -> bool {
    let mut skip_value = false;
    for a in args.iter().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if a == "--config" || a == "--database-url" {
            skip_value = true;
        } else if !a.starts_with('-') {
            return a == "audit";
        }
    }
    false
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cli = match mailctl::cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if is_audit(&args) => {
            let text = e.render().to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            std::process::exit(mailctl::error::exit::UNREACHABLE);
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(mailctl::error::exit::FAILED);
        }
    };
    match runtime.block_on(mailctl::cli::run(cli)) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            for line in err.details() {
                eprintln!("  {}", mailctl::model::one_line(line));
            }
            // Every error is one line, whatever it quotes (a config value may hold a line break or an escape).
            eprintln!("error: {}", mailctl::model::one_line(&err.to_string()));
            std::process::exit(err.exit_code());
        }
    }
}
