//! The `kiln` binary: parse arguments, run the command, render errors.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox helper is on every step's start-up path: skip clap.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == kiln::sandbox::init::SUBCOMMAND)
    {
        return ExitCode::from(u8::try_from(kiln::sandbox::init::main()).unwrap_or(1));
    }
    let cli = kiln::cli::Cli::parse();
    match kiln::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            kiln::cli::report(&err);
            ExitCode::from(1)
        }
    }
}
