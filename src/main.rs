//! The `credseal` binary: the command line over the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("credseal: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
