//! `credseal updatekeys`: make each file's recipients what `.sops.yaml` requires now.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::InputType;
use crate::cli::key_plan::{self, PgpSources};
use crate::cli::sopsfile::{self, emit_options};
use crate::cli::{config, keyring, now};
use credseal::sops::master_key::{KeyKind, MasterKey};

/// An age recipient as itself (as before other kinds were listed); other kinds with their type.
fn shown(k: &MasterKey) -> String {
    match k.kind {
        KeyKind::Age => k.id.clone(),
        _ => k.to_string(),
    }
}

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
    #[command(flatten)]
    pub pgp_sources: PgpSources,
    /// Also rewrite files last written by an older sops in the sops 3.13 layout and version
    /// (metadata keys sorted). Without it each file keeps the layout of the sops that wrote
    /// it, so teams still on sops 3.11 see no churn.
    #[arg(long)]
    pub upgrade_layout: bool,
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
        let rule = loaded.config.rule_for(&loaded.rule_path(&input.file))?;
        let wanted = rule
            .keys()
            .map_err(|e| Failure::from(e).context(loaded.path.display().to_string()))?
            .to_vec();
        let mut file = sopsfile::parse(&input)?;
        let current = file.metadata.keys();
        let added: Vec<&MasterKey> = wanted.iter().filter(|k| !current.contains(k)).collect();
        let removed: Vec<&MasterKey> = current.iter().filter(|k| !wanted.contains(k)).collect();
        let old_version = file.metadata.version.clone();
        let upgrade = args.upgrade_layout && file.metadata.upgrade_version();
        if added.is_empty() && removed.is_empty() && file.metadata.key_groups.len() == 1 && !upgrade
        {
            eprintln!("{name}: already up to date");
            continue;
        }
        if upgrade {
            eprintln!(
                "{name}: layout and version {old_version} -> {}",
                file.metadata.version
            );
        }
        for k in &added {
            eprintln!("{name}: + {}", shown(k));
        }
        for k in &removed {
            eprintln!("{name}: - {}", shown(k));
        }
        if args.dry_run {
            continue;
        }
        let plan = key_plan::plan(
            wanted.clone(),
            |k| !current.contains(k),
            &args.pgp_sources,
            Some(&loaded),
            Some(rule),
        )?;
        let ring = if added.is_empty() {
            Default::default()
        } else {
            keyring::load(env, Some(&file.metadata))?
        };
        file.rewrap(&ring, &plan, &now())
            .map_err(|e| in_file(&name, e))?;
        let out = file
            .emit(&emit_options(&input, env))
            .map_err(|e| in_file(&name, e))?;
        sopsfile::replace(&input, &out)?;
        if !removed.is_empty() {
            eprintln!(
                "{name}: removed recipients still know the data key; run `credseal rekey {name}` to lock them out"
            );
        }
    }
    Ok(())
}
