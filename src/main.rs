//! The `credseal` binary: the command line over the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    cli::log::init(cli.log_format);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            cli::log::failure(&failure);
            ExitCode::from(failure.exit_code())
        }
    }
}
