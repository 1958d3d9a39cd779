//! The `kiln` binary: parse arguments, run the command, render errors.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = kiln::cli::Cli::parse();
    match kiln::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            kiln::cli::report(&err);
            ExitCode::from(1)
        }
    }
}
