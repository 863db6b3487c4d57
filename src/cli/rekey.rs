//! `credseal rekey`: a new data key for each file, every value re-encrypted under it.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::CliResult;
use crate::cli::exit::in_file;
use crate::cli::io::InputType;
use crate::cli::key_plan::{self, PgpSources};
use crate::cli::sopsfile::{emit_options, open, write_back};
use crate::cli::{config, now};
use credseal::sops::file::Context;
use credseal::sops::master_key::MasterKey;
use credseal::sops::walk::OsEntropy;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input_type: InputType,
    /// The encrypted files to rekey (in place).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also wrap for these age recipients (comma-separated), as `sops rotate --add-age`.
    #[arg(long, value_name = "R1,R2")]
    pub add_age: Option<String>,
    /// Stop wrapping for these age recipients (comma-separated), as `sops rotate --rm-age`.
    #[arg(long, value_name = "R1,R2")]
    pub rm_age: Option<String>,
    /// Also wrap for these PGP fingerprints, as `sops rotate --add-pgp`.
    #[arg(long, value_name = "FP1,FP2")]
    pub add_pgp: Option<String>,
    /// Stop wrapping for these PGP fingerprints, as `sops rotate --rm-pgp`.
    #[arg(long, value_name = "FP1,FP2")]
    pub rm_pgp: Option<String>,
    #[command(flatten)]
    pub pgp_sources: PgpSources,
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
        let removed: Vec<MasterKey> = key_plan::from_flag("age", args.rm_age.as_deref())
            .into_iter()
            .chain(key_plan::from_flag("pgp", args.rm_pgp.as_deref()))
            .collect();
        let added = key_plan::from_flag("age", args.add_age.as_deref())
            .into_iter()
            .chain(key_plan::from_flag("pgp", args.add_pgp.as_deref()));
        let mut keys: Vec<MasterKey> = opened.metadata.keys();
        keys.extend(added);
        keys.retain(|k| !removed.contains(k));
        let loaded = config::find(None, env.config.as_deref())?;
        let plan = key_plan::plan(keys, |_| true, &args.pgp_sources, loaded.as_ref(), None)?;
        opened
            .rekey(&mut ctx, &plan)
            .map_err(|e| in_file(&name, e))?;
        write_back(&mut opened, &input, &emit_options(&input, env))?;
    }
    Ok(())
}
