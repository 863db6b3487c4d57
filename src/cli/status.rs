//! `credseal status --plan FILE [--only NAME] [--format table|json] [--print-role]`: where each
//! credential of a plan stands, read only.

use std::path::PathBuf;

use clap::{Args as ClapArgs, ValueEnum};
use serde_json::{Value, json};

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Coded, Failure};
use crate::cli::keyring;
use crate::cli::kube::{KubeArgs, connect, runtime};
use crate::cli::rotate::{chosen, read_plan};
use credseal::rotate::status::{self, CredentialStatus, LockState, Target};
use credseal::sops::keys::Keyring;
use credseal::sops::tree::Timestamp;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document (field names in the README's "Status" section).
    Json,
}

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The rotation plan (kind: RotationPlan). File paths in it are relative to its directory.
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Only this credential.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Print the Role rules status needs (get on the target Secrets, their pending records
    /// and Leases) and exit.
    #[arg(long)]
    pub print_role: bool,
    #[command(flatten)]
    pub kube: KubeArgs,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let plan = read_plan(&args.plan)?;
    let creds = chosen(&plan, args.only.as_deref(), &args.plan)?;
    if args.print_role {
        let calls: Vec<_> = creds
            .iter()
            .flat_map(|c| status::cluster_calls(c))
            .collect();
        for (ns, rules) in credseal::k8s::access::role_rules(&calls) {
            println!("# Role in namespace {ns}\nrules:");
            for r in rules {
                println!("  {r}");
            }
        }
        return Ok(());
    }
    // An identity only where a file target must be opened; a plan of Secret targets needs none.
    let ring = match creds.iter().any(|c| c.target.file().is_some()) {
        true => keyring::load(env, None)?,
        false => Keyring::new(),
    };
    let base_dir = match args.plan.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let statuses = runtime()?.block_on(async {
        let kube = match creds.iter().any(|c| c.target.secret().is_some()) {
            true => Some(connect(&args.kube, env).await?.client),
            false => None,
        };
        let ctx = status::Context {
            keyring: &ring,
            base_dir: &base_dir,
            kube,
            now: crate::cli::now().unix(),
        };
        let mut out = Vec::new();
        for cred in &creds {
            out.push(status::read(cred, &ctx).await);
        }
        Ok::<_, Failure>(out)
    })?;
    match args.format {
        OutputFormat::Table => print!("{}", table(&statuses)),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&statuses)).expect("JSON values serialize")
        ),
    }
    let failed = statuses.iter().filter(|s| !s.errors.is_empty()).count();
    for s in &statuses {
        for e in &s.errors {
            eprintln!(
                "credseal: credential {}: {}",
                s.name,
                credseal::sops::error_text::with_causes(e)
            );
        }
    }
    let Some(first) = statuses.into_iter().flat_map(|s| s.errors).next() else {
        return Ok(());
    };
    Err(Failure::msg(
        first.code(),
        format!(
            "{failed} of the plan's credentials could not be read in full (the first failure sets the exit code)"
        ),
    ))
}

fn time(t: &Timestamp) -> String {
    t.to_rfc3339()
}

fn target_text(t: &Target) -> String {
    match t {
        Target::File { path } => format!("file {path}"),
        Target::Secret { namespace, name } => format!("secret {namespace}/{name}"),
    }
}

fn next_due_text(s: &CredentialStatus) -> String {
    let Some(due) = s.due else {
        return "?".into();
    };
    match (&s.rotate_after, &s.next_due) {
        (None, _) => "every run".into(),
        (Some(_), None) => "now (never rotated)".into(),
        (Some(_), Some(t)) if due => format!("{} (due)", time(t)),
        (Some(_), Some(t)) => time(t),
    }
}

/// A holder's name as it was written (a lock file anyone with access to the directory may
/// write, a Lease field): control characters shown as `?`, never sent to the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn lock_text(l: Option<&LockState>) -> String {
    let l = match l {
        Some(LockState::Held {
            holder,
            pid,
            expires,
        }) => Some(LockState::Held {
            holder: holder.as_deref().map(printable),
            pid: *pid,
            expires: *expires,
        }),
        Some(LockState::Expired { holder, expired }) => Some(LockState::Expired {
            holder: printable(holder),
            expired: *expired,
        }),
        other => other.cloned(),
    };
    match l.as_ref() {
        None => "?".into(),
        Some(LockState::Free) => "free".into(),
        Some(LockState::Unknown) => "unknown".into(),
        Some(LockState::Held { holder, pid, .. }) => match (holder, pid) {
            (Some(h), Some(p)) => format!("held by {h} (pid {p})"),
            (Some(h), None) => format!("held by {h}"),
            (None, Some(p)) => format!("held (pid {p})"),
            (None, None) => "held".into(),
        },
        Some(LockState::Expired { holder, .. }) => format!("expired (was {holder})"),
    }
}

fn table(statuses: &[CredentialStatus]) -> String {
    let mut rows = vec![
        [
            "NAME",
            "TARGET",
            "GENERATION",
            "LAST ROTATION",
            "NEXT DUE",
            "PENDING",
            "LOCK",
        ]
        .map(str::to_owned),
    ];
    for s in statuses {
        let pending = match &s.pending {
            None => "?".to_owned(),
            Some(None) => "-".to_owned(),
            Some(Some(p)) => match p.retire_after {
                Some(t) => format!(
                    "{} (generation {}, retire after {})",
                    p.phase.as_str(),
                    p.generation,
                    time(&t)
                ),
                None => format!("{} (generation {})", p.phase.as_str(), p.generation),
            },
        };
        rows.push([
            s.name.clone(),
            target_text(&s.target),
            s.generation.map_or("?".into(), |g| g.to_string()),
            match (s.generation, &s.last_rotation) {
                (None, _) => "?".into(),
                (Some(_), None) => "never".into(),
                (Some(_), Some(t)) => time(t),
            },
            next_due_text(s),
            pending,
            lock_text(s.lock.as_ref()),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn to_json(statuses: &[CredentialStatus]) -> Value {
    let ts = |t: Option<&Timestamp>| t.map_or(Value::Null, |t| Value::String(time(t)));
    let creds: Vec<Value> = statuses
        .iter()
        .map(|s| {
            let target = match &s.target {
                Target::File { path } => json!({"kind": "file", "path": path}),
                Target::Secret { namespace, name } => {
                    json!({"kind": "secret", "namespace": namespace, "name": name})
                }
            };
            let pending = s.pending.as_ref().and_then(Option::as_ref);
            let pending = pending.map_or(Value::Null, |p| {
                json!({
                    "phase": p.phase.as_str(),
                    "generation": p.generation,
                    "retireAfter": ts(p.retire_after.as_ref()),
                })
            });
            let lock = match &s.lock {
                None => Value::Null,
                Some(LockState::Free) => {
                    json!({"state": "free", "holder": null, "pid": null, "expires": null})
                }
                Some(LockState::Unknown) => {
                    json!({"state": "unknown", "holder": null, "pid": null, "expires": null})
                }
                Some(LockState::Held {
                    holder,
                    pid,
                    expires,
                }) => json!({
                    "state": "held",
                    "holder": holder,
                    "pid": pid,
                    "expires": ts(expires.as_ref()),
                }),
                Some(LockState::Expired { holder, expired }) => json!({
                    "state": "expired",
                    "holder": holder,
                    "pid": null,
                    "expires": ts(expired.as_ref()),
                }),
            };
            json!({
                "name": s.name,
                "target": target,
                "generation": s.generation,
                "lastRotation": ts(s.last_rotation.as_ref()),
                "rotateAfterSeconds": s.rotate_after.map(|d| d.as_secs()),
                "nextDue": ts(s.next_due.as_ref()),
                "due": s.due,
                "pending": pending,
                "lock": lock,
                "errors": s.errors.iter().map(|e| credseal::sops::error_text::with_causes(e)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"credentials": creds})
}
