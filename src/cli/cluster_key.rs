//! `credseal cluster-key init|show|add|retire`.

use clap::{Args as ClapArgs, Subcommand};

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::kube::{KubeArgs, connect, runtime};
use crate::cli::now;
use credseal::cluster_key::{ClusterKey, DEFAULT_NAME, DEFAULT_NAMESPACE};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
    /// Namespace of the key Secret.
    #[arg(long, global = true, value_name = "NS", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Name of the key Secret (Flux's sops-age layout).
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_NAME)]
    pub name: String,
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Create the key Secret if it is missing and print the recipient for .sops.yaml.
    Init,
    /// Print the recipients of the cluster's identities.
    Show,
    /// Add a new identity, keeping the old ones; prints the new recipient.
    Add,
    /// Remove the identity with this recipient (after files were moved to a newer key).
    Retire {
        /// The recipient (age1…) whose identity to remove.
        recipient: String,
    },
}

pub fn run(args: Args, env: &Env) -> CliResult {
    if let Action::Retire { recipient } = &args.action {
        // Checked before the cluster is asked anything; the error never shows the text (a
        // private key pasted by mistake would otherwise be printed back).
        credseal::sops::keys::Recipient::parse_each(&[recipient], "cluster-key retire")
            .map_err(|e| Failure::new(Code::Generic, e))?;
    }
    runtime()?.block_on(async {
        let conn = connect(&args.kube, env).await?;
        let key = ClusterKey::new(conn.client, &args.namespace, &args.name);
        let label = now().to_rfc3339();
        match args.action {
            Action::Init => {
                let (created, entries) = key.init(&label).await.map_err(Failure::from)?;
                let verb = if created { "created" } else { "exists" };
                eprintln!(
                    "secret {}/{} {verb}; it opens only what is encrypted to it: add this recipient to the .sops.yaml rule for the files of namespace {} (beside the admins' keys), and to no other rule:",
                    args.namespace, args.name, args.namespace
                );
                for e in entries {
                    println!("{}", e.recipient);
                }
            }
            Action::Show => {
                for e in key.show().await.map_err(Failure::from)? {
                    println!("{}\t{}", e.recipient, e.key);
                }
            }
            Action::Add => {
                let stamp = label.replace([':', '-'], "").to_lowercase();
                let e = key
                    .add(&label, &format!("age-{stamp}.agekey"))
                    .await
                    .map_err(Failure::from)?;
                eprintln!(
                    "added {}; encrypt to it (credseal updatekeys), then retire the old one",
                    e.key
                );
                println!("{}", e.recipient);
            }
            Action::Retire { recipient } => {
                let e = key.retire(&recipient).await.map_err(Failure::from)?;
                eprintln!("retired {} ({})", e.recipient, e.key);
            }
        }
        Ok(())
    })
}
