use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = credseal::cli::Cli::parse();
    match credseal::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("credseal: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
