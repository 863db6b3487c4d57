//! `credseal rekey`: a new data key for each file, every value re-encrypted under it.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::decrypt::open;
use crate::cli::edit::emit_options;
use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::InputType;
use crate::cli::{now, sops_failure};
use crate::fsx;
use crate::sops::file::Context;
use crate::sops::walk::OsEntropy;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input_type: InputType,
    /// The encrypted files to rekey (in place).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    for path in args.files {
        let input = args.input_type.input(path);
        let name = input.display();
        let mut opened = open(&input, env, false)?;
        let mut entropy = OsEntropy;
        let mut ctx = Context {
            entropy: &mut entropy,
            now: now(),
        };
        opened.rekey(&mut ctx).map_err(|e| sops_failure(&name, e))?;
        let out = opened
            .seal(&mut ctx, &emit_options(&input, env))
            .map_err(|e| sops_failure(&name, e))?;
        fsx::write_atomic(&input.file, &out, 0o644)
            .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e))?;
    }
    Ok(())
}
