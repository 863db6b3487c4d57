//! `credseal rotate --plan FILE [--only NAME] [--dry-run]`.

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::keyring;
use crate::cli::kube::{KubeArgs, connect, runtime};
use credseal::clock::SystemClock;
use credseal::file_io;
use credseal::rotate::plan::{Credential, Plan};
use credseal::rotate::{Outcome, Runner};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The rotation plan (kind: RotationPlan). File paths in it are relative to its directory.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Rotate only this credential.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Say what would be rotated, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait up to this many seconds for another run rotating the same credential (or for its
    /// lock to expire, if it died) instead of exiting 221 at once.
    #[arg(long, value_name = "SECONDS", default_value = "0")]
    pub wait_for_lock: u64,
    /// Print the Role rules this plan needs (per namespace) and exit: every call a run makes,
    /// except those on the workloads that read a rotated Secret (`get`, `patch`, `watch`; `list`
    /// and `delete` on pods for an OnDelete set), which are found when it runs (the preflight
    /// names any that are missing).
    #[arg(long)]
    pub print_role: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// The rotation plan at `path`, for rotate and status.
pub fn read_plan(path: &Path) -> CliResult<Plan> {
    let text = file_io::read(path).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?;
    Plan::parse(&text).map_err(|e| Failure::from(e).context(path.display().to_string()))
}

/// The plan's credentials, or only the one named by `--only` (which must exist).
pub fn chosen<'p>(
    plan: &'p Plan,
    only: Option<&str>,
    path: &Path,
) -> CliResult<Vec<&'p Credential>> {
    let creds: Vec<_> = plan
        .credentials
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .collect();
    if creds.is_empty() {
        return Err(Failure::msg(
            Code::Generic,
            format!(
                "{}: no credential named {:?}",
                path.display(),
                only.unwrap_or_default()
            ),
        ));
    }
    Ok(creds)
}

pub fn run(args: Args, env: &Env) -> CliResult {
    // FAILPOINTS=rotate::after-apply=panic … rehearses a crash after any step.
    let _failpoints = fail::FailScenario::setup();
    let plan = read_plan(&args.plan)?;
    if args.print_role {
        let calls: Vec<_> = plan
            .credentials
            .iter()
            .filter(|c| args.only.as_deref().is_none_or(|o| o == c.name))
            .flat_map(credseal::rotate::cluster_calls)
            .collect();
        for (ns, rules) in credseal::k8s::access::role_rules(&calls) {
            println!("# Role in namespace {ns}\nrules:");
            for r in rules {
                println!("  {r}");
            }
        }
        return Ok(());
    }
    let creds = chosen(&plan, args.only.as_deref(), &args.plan)?;
    let ring = keyring::load(env, None)?;
    let base_dir = args
        .plan
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(std::path::Path::new("."))
        .to_owned();
    let lookup = |name: &str| std::env::var(name).ok();
    let needs_cluster = creds.iter().any(|c| c.needs_cluster());
    runtime()?.block_on(async {
        let kube = match needs_cluster {
            true => Some(connect(&args.kube, env).await?.client),
            false => None,
        };
        let mut runner = Runner {
            keyring: &ring,
            env: &lookup,
            dry_run: args.dry_run,
            base_dir: &base_dir,
            kube,
            holder: holder_identity(),
            wait_for_lock: std::time::Duration::from_secs(args.wait_for_lock),
            connections: Default::default(),
            clock: &SystemClock,
        };
        // A failure stops the line: later credentials are not touched.
        for cred in creds {
            let outcome = runner.rotate(cred).await.map_err(Failure::from)?;
            let what = match outcome {
                Outcome::NotDue => "not due".to_owned(),
                Outcome::WouldRotate => "would rotate (dry run)".to_owned(),
                Outcome::Rotated { generation } => format!("rotated (generation {generation})"),
                Outcome::Retiring { generation, until } => format!(
                    "rotated (generation {generation}); the old password stays valid until {until}"
                ),
                Outcome::Retired { generation } => {
                    format!("old password retired (generation {generation})")
                }
            };
            println!("{}: {what}", cred.name);
        }
        Ok(())
    })
}

/// This run as its lock names it: the pod (HOSTNAME is the pod name in a container) or host,
/// the process, and a random part so two runs of one pod differ.
fn holder_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!(
        "{host}/pid-{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}
