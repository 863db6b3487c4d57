//! `credseal apply`: the deploy hook.

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::keyring;
use crate::cli::kube::{KubeArgs, connect, runtime};
use credseal::apply::{self, Item, Outcome};
use credseal::file_io;
use credseal::materialize::inputs::{load_keyring, visible_files};
use credseal::sops::file::EncryptedFile;
use credseal::sops::store::Format;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// SOPS-encrypted Secret manifests, or directories of them (*.yaml, *.yml, *.json).
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// A directory of age identities, as mounted from the cluster key Secret: every `*.agekey`
    /// (Flux's sops-age layout) or `keys.txt`, so keys added by `cluster-key add` keep working
    /// after `retire`. Without it, keys are found as sops finds them (SOPS_AGE_KEY_FILE, …).
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// Overwrite values that a rotation set after the file was encrypted (by default they are
    /// kept, and everything else is applied).
    #[arg(long)]
    pub force: bool,
    /// Ask the API server to validate without persisting (server-side dry run).
    #[arg(long)]
    pub dry_run: bool,
    /// The namespace every Secret must be bound to (default: the context's namespace).
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

fn expand(paths: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let files = visible_files(p).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?;
            out.extend(
                files
                    .into_iter()
                    .filter(|f| matches!(Format::from_path(f), Format::Yaml | Format::Json)),
            );
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(Failure::msg(
                Code::NoFileSpecified,
                format!("{}: no such file", p.display()),
            ));
        }
    }
    Ok(out)
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let files = expand(&args.files)?;
    let mounted = args
        .keys
        .as_deref()
        .map(load_keyring)
        .transpose()
        .map_err(Failure::from)?;
    runtime()?.block_on(async {
        let conn = connect(&args.kube, env).await?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or(conn.default_namespace.clone());
        let mut items: Vec<Item> = Vec::new();
        for file in files {
            let bytes = file_io::read(&file).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?;
            let found;
            let ring = match &mounted {
                Some(ring) => ring,
                None => {
                    // SOPS_AGE_KEY_CMD is told the file's recipients, as sops does.
                    let meta = EncryptedFile::parse(&bytes, Format::from_path(&file))
                        .map_err(|e| in_file(file.display(), e))?
                        .metadata;
                    found = keyring::load(env, Some(&meta))?;
                    &found
                }
            };
            items.extend(apply::decrypt_file(file, &bytes, ring, &namespace).map_err(Failure::from)?);
        }
        let outcomes = apply::apply_all(&conn.client, &items, args.dry_run, args.force)
            .await
            .map_err(Failure::from)?;
        for (item, outcome) in items.iter().zip(outcomes) {
            let dry = if args.dry_run {
                " (server dry run)"
            } else {
                ""
            };
            let (ns, name) = (&item.values.namespace, &item.values.name);
            let what = match &outcome {
                Outcome::Created => "created",
                Outcome::Updated => "configured",
                Outcome::Unchanged => "unchanged",
                Outcome::KeptRotated { .. } => "configured",
            };
            println!("secret/{name} {what}{dry}");
            if let Outcome::KeptRotated { keys, generation } = outcome {
                // Not a failure: the rotation is newer than git. Said once on stderr and as
                // an Event on the Secret, so the drift is visible where people look.
                let message = format!(
                    "kept {} from rotation generation {generation}, newer than {} (generation {}); bring git up to date with `credseal pull {}`; --force overwrites",
                    keys.join(", "),
                    item.file.display(),
                    item.generation,
                    item.file.display()
                );
                tracing::warn!(
                    target: crate::cli::log::CLI,
                    secret = %format_args!("{ns}/{name}"),
                    "secret {ns}/{name}: {message}"
                );
                if !args.dry_run {
                    let uid = credseal::k8s::secrets::Secrets::new(conn.client.clone(), ns)
                        .get(name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|s| s.metadata.uid);
                    if let Err(e) = credseal::k8s::events::record(
                        conn.client.clone(),
                        ns,
                        "Secret",
                        name,
                        uid,
                        "KeptRotatedValues",
                        &message,
                        "Normal",
                    )
                    .await
                    {
                        let error = credseal::sops::error_text::with_causes(&e);
                        tracing::warn!(
                            target: crate::cli::log::CLI,
                            reason = "KeptRotatedValues",
                            object = %format_args!("Secret/{ns}/{name}"),
                            error,
                            "event on secret {ns}/{name} not recorded: {error}"
                        );
                    }
                }
            }
        }
        Ok(())
    })
}
