//! `credseal keygen`: an identity file exactly as `age-keygen` writes it.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::write_stdout;
use crate::cli::now;
use credseal::file_io;
use credseal::sops::keys::generate_identity;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Write the identity to this file (mode 0600; never overwrites) and print its recipient.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let (identity, recipient) = generate_identity(&now().to_rfc3339());
    match args.output {
        Some(path) => {
            file_io::create_new(&path, identity.expose().as_bytes(), 0o600)
                .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e))?;
            write_stdout(format!("{recipient}\n").as_bytes())
        }
        None => {
            eprintln!("Public key: {recipient}");
            write_stdout(identity.expose().as_bytes())
        }
    }
}
