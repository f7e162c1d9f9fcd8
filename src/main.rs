//! The `mailctl` binary: parse arguments, run one command, map the error to an exit code.
//!
//! The architecture is described in the crate documentation of the library (`src/lib.rs`).

use clap::Parser;

fn main() {
    let cli = mailctl::cli::Cli::parse();
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
    let result = runtime.block_on(mailctl::cli::run(cli));
    if let Err(err) = result {
        if let mailctl::error::Error::Rows { rows, .. } = &err {
            for row in rows {
                eprintln!("  {row}");
            }
        }
        eprintln!("error: {err}");
        std::process::exit(err.exit_code());
    }
}
