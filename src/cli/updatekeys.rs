//! `credseal updatekeys`: make each file's recipients what `.sops.yaml` requires now.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::edit::emit_options;
use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::InputType;
use crate::cli::{config, keyring, sops_failure};
use crate::fsx;
use crate::sops::file::EncryptedFile;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input_type: InputType,
    /// The encrypted files to update.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Show what would change without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accepted for sops compatibility (credseal never prompts).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Path of the .sops.yaml to use.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let loaded = config::find(args.config.as_deref(), env.config.as_deref())?.ok_or_else(|| {
        Failure::msg(
            Code::ConfigFileNotFound,
            "updatekeys needs a .sops.yaml (none found from the current directory up)",
        )
    })?;
    for path in args.files {
        let input = args.input_type.input(path);
        let name = input.display();
        let rule = loaded
            .config
            .rule_for(&loaded.rule_path(&input.file))
            .map_err(|e| Failure::new(Code::ErrorReadingConfig, e))?;
        let wanted = rule
            .recipients()
            .map_err(|e| Failure::new(Code::Generic, e))?
            .to_vec();
        let data = input.read()?;
        let mut file = EncryptedFile::parse(&data, input.encrypted_format(&data)?)
            .map_err(|e| sops_failure(&name, e))?;
        let current: Vec<String> = file.metadata.age_recipients().map(str::to_owned).collect();
        let added: Vec<&str> = wanted
            .iter()
            .map(|r| r.as_str())
            .filter(|r| !current.iter().any(|c| c == r))
            .collect();
        let removed: Vec<&str> = current
            .iter()
            .map(String::as_str)
            .filter(|c| !wanted.iter().any(|r| r.as_str() == *c))
            .collect();
        if added.is_empty() && removed.is_empty() && file.metadata.key_groups.len() == 1 {
            eprintln!("{name}: already up to date");
            continue;
        }
        for r in &added {
            eprintln!("{name}: + {r}");
        }
        for r in &removed {
            eprintln!("{name}: - {r}");
        }
        if args.dry_run {
            continue;
        }
        let ring = keyring::load(env, Some(&file.metadata))?;
        file.rewrap(&ring, &wanted)
            .map_err(|e| sops_failure(&name, e))?;
        let out = file
            .emit(&emit_options(&input, env))
            .map_err(|e| sops_failure(&name, e))?;
        fsx::write_atomic(&input.file, &out, 0o644)
            .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e))?;
        if !removed.is_empty() {
            eprintln!(
                "{name}: removed recipients still know the data key; run `credseal rekey {name}` to lock them out"
            );
        }
    }
    Ok(())
}
