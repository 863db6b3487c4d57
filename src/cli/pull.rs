//! `credseal pull FILE...`: bring the values a rotation set in the cluster back into the
//! encrypted files in git, churn-free (only those values, `lastmodified` and `mac` change).

use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::Input;
use crate::cli::kube::{KubeArgs, connect, runtime};
use crate::cli::sopsfile::{emit_options, open, write_back};
use credseal::apply::{self, Pulled};
use credseal::k8s::secrets::Secrets;
use credseal::manifest;
use credseal::sops::tree::Node;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Encrypted Secret manifests to bring up to date with the cluster.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub kube: KubeArgs,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    runtime()?.block_on(async {
        let conn = connect(&args.kube, env).await?;
        for file in args.files {
            let input = Input::from_path(file);
            let name = input.display();
            let mut opened = open(&input, env, false)?;
            let mut notes = Vec::new();
            for doc in opened.tree.documents.iter_mut() {
                if !manifest::is_secret(doc) {
                    continue;
                }
                let field = |f: &str| {
                    doc.get("metadata")
                        .and_then(Node::as_map)
                        .and_then(|m| m.get(f))
                        .and_then(Node::as_str)
                        .map(str::to_owned)
                };
                let (Some(secret), Some(ns)) = (field("name"), field("namespace")) else {
                    continue;
                };
                let live = Secrets::new(conn.client.clone(), &ns)
                    .get(&secret)
                    .await
                    .map_err(Failure::from)?;
                let Some(live) = live else {
                    notes.push(format!("secret {ns}/{secret} is not in the cluster"));
                    continue;
                };
                match apply::pull_values(doc, &live)
                    .map_err(|e| Failure::new(Code::Generic, e).context(name.clone()))?
                {
                    Pulled::UpToDate => {}
                    Pulled::Updated { keys, generation } => notes.push(format!(
                        "secret {ns}/{secret}: pulled {} (generation {generation})",
                        keys.join(", ")
                    )),
                }
            }
            let changed = notes.iter().any(|n| n.contains(": pulled"));
            if changed {
                let opts = emit_options(&input, env);
                write_back(&mut opened, &input, &opts)?;
            }
            if notes.is_empty() {
                println!("{name}: up to date");
            }
            for n in notes {
                println!("{name}: {n}");
            }
        }
        Ok(())
    })
}
