//! `credseal check`: the pre-commit and CI guard over files in the work tree or in git's index.
//! Which files (`files`, `git`), each judged by the library (`credseal::check`) against its
//! `.sops.yaml` rule, key custody across them, then the report (`report`).

mod files;
mod git;
mod report;

use std::path::{Path, PathBuf};

use crate::cli::config::{self, Loaded};
use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::keyring;
use credseal::check::{self, CheckAgainst, FileReport, Finding};
use credseal::file_io;
use credseal::sops::keys::Keyring;
use credseal::sops::master_key::{KeyKind, MasterKey};
use report::Outcome;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories to check (default: the current directory). With --staged, limits
    /// the staged files checked to these paths.
    pub paths: Vec<PathBuf>,
    /// Check what git would commit (the index), not the work tree.
    #[arg(long)]
    pub staged: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
    /// The .sops.yaml whose rules say which recipients each file must have.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let mut loaded = config::find(args.config.as_deref(), env.config.as_deref())?;
    if args.staged && args.config.is_none() && env.config.is_none() {
        if let Some(l) = loaded.as_mut() {
            git::use_staged_config(l)?;
        }
    }
    // MAC verification is a bonus: with no usable identity every other check still runs.
    let ring = keyring::load(env, None).ok();
    let files = files::to_check(&args.paths, args.staged)?;
    let outcome = judge(&files, args.staged, loaded.as_ref(), ring.as_ref())?;
    outcome.print(args.format);
    outcome.result()
}

/// One file judged: its name, the index of the `.sops.yaml` rule it matches, and the
/// library's report (its findings already taken out), for key custody.
struct Judged {
    name: String,
    rule: Option<usize>,
    report: FileReport,
}

/// Reads and judges every file, then key custody across them.
fn judge(
    files: &[PathBuf],
    staged: bool,
    loaded: Option<&Loaded>,
    ring: Option<&Keyring>,
) -> CliResult<Outcome> {
    let mut outcome = Outcome::default();
    let mut judged: Vec<Judged> = Vec::new();
    for file in files {
        // Every file is read: one without a YAML/JSON extension is judged by its content.
        let name = file.strip_prefix(".").unwrap_or(file).display().to_string();
        let bytes = if staged {
            git::staged_content(file)?
        } else {
            file_io::read(file).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?
        };
        let (rule, keys) = match loaded {
            Some(l) => rule_of(l, file, &name, &mut outcome.findings),
            None => (None, None),
        };
        let expect = CheckAgainst {
            keys: keys.as_deref(),
            keyring: ring,
        };
        let mut report = check::check_file(&name, &bytes, &expect);
        if report.skipped {
            continue;
        }
        outcome.checked += 1;
        outcome.encrypted += usize::from(report.encrypted);
        outcome.mac_verified += usize::from(report.mac_verified);
        outcome.findings.append(&mut report.findings);
        judged.push(Judged { name, rule, report });
    }
    if let Some(l) = loaded {
        outcome.findings.extend(custody(l, &judged));
        // Grouped by file, in the order the files were checked.
        let order = |f: &Finding| judged.iter().position(|j| j.name == f.file);
        outcome.findings.sort_by_key(order);
    }
    Ok(outcome)
}

/// The `.sops.yaml` creation rule a file matches (its index) and its keys of every type. A
/// broken rule concerns the files it matches only: it is a finding on each (never the key
/// text: see `ConfigError`).
fn rule_of(
    loaded: &Loaded,
    file: &Path,
    name: &str,
    findings: &mut Vec<Finding>,
) -> (Option<usize>, Option<Vec<MasterKey>>) {
    let Some(index) = loaded.config.rule_index_for(&loaded.rule_path(file)) else {
        return (None, None);
    };
    let rule = &loaded.config.creation_rules[index];
    if let Err(e) = rule.keys() {
        findings.push(Finding {
            file: name.to_owned(),
            check: check::Check::Recipients,
            location: String::new(),
            message: format!(
                "{}: {}",
                loaded.path.display(),
                credseal::sops::error_text::with_causes(&e)
            ),
        });
    }
    (Some(index), Some(rule.all_keys().cloned().collect()))
}

/// Key custody across the judged files: the age recipients of each creation rule, and each
/// file's rule, namespaces and recipients.
fn custody(loaded: &Loaded, judged: &[Judged]) -> Vec<Finding> {
    let rules: Vec<Vec<String>> = loaded
        .config
        .creation_rules
        .iter()
        .map(|r| {
            r.all_keys()
                .filter(|k| k.kind == KeyKind::Age)
                .map(|k| k.id.clone())
                .collect()
        })
        .collect();
    let files: Vec<check::Placed<'_>> = judged
        .iter()
        .map(|j| check::Placed {
            file: &j.name,
            rule: j.rule,
            namespaces: &j.report.namespaces,
            recipients: &j.report.recipients,
        })
        .collect();
    check::custody(&rules, &files)
}
