//! `credseal check`: the pre-commit and CI guard over files in the work tree or in git's index.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::config;
use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::keyring;
use credseal::check::{self, Expect, FileReport, Finding};
use credseal::fsx;
use credseal::sops::master_key::{KeyKind, MasterKey};

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
        // The rules being committed are the staged ones.
        if let Some(l) = loaded.as_mut() {
            staged_config(l)?;
        }
    }
    // MAC verification is a bonus: with no usable identity every other check still runs.
    let ring = keyring::load(env, None).ok();
    let files = if args.staged {
        staged(&args.paths)?
    } else {
        let roots = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        // In a git work tree, what git would see (tracked, or untracked and not ignored): a
        // build directory is not the repository's content.
        let mut files = Vec::new();
        for root in &roots {
            if root.is_dir() {
                match git_files(root) {
                    Some(found) => files.extend(found),
                    None => walk(root, &mut files)?,
                }
            } else {
                // A file named on the command line is always checked.
                walk(root, &mut files)?;
            }
        }
        files
    };
    let ignore = Ignore::load(Path::new(IGNORE_FILE))?;
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| !ignore.matches(f.strip_prefix(".").unwrap_or(f)))
        .collect();

    let mut findings: Vec<Finding> = Vec::new();
    // Per file checked: (name, matching rule, Secret namespaces, recipients), for key custody.
    let mut placed: Vec<(String, Option<usize>, FileReport)> = Vec::new();
    let (mut checked, mut encrypted, mut verified) = (0usize, 0usize, 0usize);
    for file in &files {
        // Every file is read: one without a YAML/JSON extension is judged by its content.
        let name = file.strip_prefix(".").unwrap_or(file).display().to_string();
        let bytes = if args.staged {
            git_show_index(file)?
        } else {
            fsx::read(file).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?
        };
        let rule_index = loaded
            .as_ref()
            .and_then(|l| l.config.rule_index_for(&l.rule_path(file)));
        let rule = loaded
            .as_ref()
            .and_then(|l| Some((l, l.config.rule_for(&l.rule_path(file)).ok()?)));
        let keys: Option<Vec<MasterKey>> = rule.map(|(_, r)| r.all_keys().cloned().collect());
        // A broken rule concerns the files it matches only (never the key text: see ConfigError).
        if let Some((l, Err(e))) = rule.map(|(l, r)| (l, r.keys())) {
            findings.push(Finding {
                file: name.clone(),
                check: check::Check::Recipients,
                location: String::new(),
                message: format!("{}: {e}", l.path.display()),
            });
        }
        let mut report: FileReport = check::check_file(
            &name,
            &bytes,
            &Expect {
                keys: keys.as_deref(),
                keyring: ring.as_ref(),
            },
        );
        if report.skipped {
            continue;
        }
        checked += 1;
        encrypted += usize::from(report.encrypted);
        verified += usize::from(report.mac_verified);
        findings.extend(std::mem::take(&mut report.findings));
        placed.push((name, rule_index, report));
    }
    if let Some(l) = &loaded {
        let rules: Vec<Vec<String>> = l
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
        let files: Vec<check::Placed<'_>> = placed
            .iter()
            .map(|(name, rule, report)| check::Placed {
                file: name,
                rule: *rule,
                namespaces: &report.namespaces,
                recipients: &report.recipients,
            })
            .collect();
        findings.extend(check::custody(&rules, &files));
        // Grouped by file, in the order the files were checked.
        let order = |f: &Finding| placed.iter().position(|(n, _, _)| *n == f.file);
        findings.sort_by_key(order);
    }

    match args.format {
        OutputFormat::Json => {
            let doc = serde_json::json!({
                "checked": checked,
                "encrypted": encrypted,
                "macVerified": verified,
                "findings": findings,
            });
            println!("{doc:#}");
        }
        OutputFormat::Text => {
            for f in &findings {
                let at = if f.location.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.location)
                };
                let check = serde_json::to_value(f.check).unwrap_or_default();
                println!(
                    "{}{at}: {}: {}",
                    f.file,
                    check.as_str().unwrap_or(""),
                    f.message
                );
            }
            eprintln!(
                "credseal check: {checked} file(s) checked, {encrypted} encrypted ({verified} MAC-verified), {} finding(s)",
                findings.len()
            );
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(Failure::msg(
            Code::CheckFindings,
            format!("{} finding(s)", findings.len()),
        ))
    }
}

/// Regular files below `root`, sorted, not following symlinked directories, skipping `.git`.
fn walk(root: &Path, out: &mut Vec<PathBuf>) -> CliResult {
    let meta = std::fs::symlink_metadata(root).map_err(|e| {
        Failure::new(Code::CouldNotReadInput, e).context(format!("{}", root.display()))
    })?;
    if !meta.is_dir() {
        out.push(root.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| {
            Failure::new(Code::CouldNotReadInput, e).context(format!("{}", root.display()))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        let ft = std::fs::symlink_metadata(&path).map(|m| m.file_type());
        match ft {
            Ok(t) if t.is_dir() => walk(&path, out)?,
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    Ok(())
}

/// Paths `check` never judges (test fixtures, documented plaintext examples), one pattern per
/// line relative to the current directory: `*` and `?` within a name, `**` across
/// directories, a trailing `/` for everything below a directory, `#` for comments.
pub const IGNORE_FILE: &str = ".credsealignore";

struct Ignore(Vec<regex::Regex>);

impl Ignore {
    fn load(path: &Path) -> CliResult<Ignore> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ignore(Vec::new())),
            Err(e) => {
                return Err(
                    Failure::new(Code::CouldNotReadInput, e).context(format!("{}", path.display()))
                );
            }
        };
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.trim_start_matches("./");
            let mut re = String::from("^");
            let (body, dir) = match line.strip_suffix('/') {
                Some(b) => (b, true),
                None => (line, false),
            };
            let mut chars = body.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '*' if chars.peek() == Some(&'*') => {
                        chars.next();
                        re.push_str(".*");
                    }
                    '*' => re.push_str("[^/]*"),
                    '?' => re.push_str("[^/]"),
                    c => re.push_str(&regex::escape(&c.to_string())),
                }
            }
            re.push_str(if dir { "/" } else { "$" });
            out.push(regex::Regex::new(&re).map_err(|e| {
                Failure::new(Code::CouldNotReadInput, e)
                    .context(format!("{}: pattern {line:?}", path.display()))
            })?);
        }
        Ok(Ignore(out))
    }

    fn matches(&self, file: &Path) -> bool {
        let name = file.to_string_lossy();
        self.0.iter().any(|re| re.is_match(&name))
    }
}

/// Files git sees below `dir` (relative to the current directory), or `None` outside a work
/// tree.
fn git_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let dir = dir.display().to_string();
    let out = git(&["ls-files", "-z", "-co", "--exclude-standard", "--", &dir]).ok()?;
    let mut files: Vec<PathBuf> = out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        // Deleted but still tracked files are listed too; only what exists is checked.
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

fn git(args: &[&str]) -> CliResult<Vec<u8>> {
    let out = Command::new("git")
        .args(args)
        .output()
        .map_err(|e| Failure::new(Code::Generic, e).context("--staged needs git on PATH"))?;
    if !out.status.success() {
        return Err(Failure::msg(
            Code::Generic,
            format!(
                "git {}: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(out.stdout)
}

/// Files added, copied, modified or renamed in the index, relative to the current directory.
fn staged(limit: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let mut args = vec![
        "diff",
        "--cached",
        "--name-only",
        "--relative",
        "-z",
        "--diff-filter=ACMR",
        "--",
    ];
    let limit: Vec<String> = limit.iter().map(|p| p.display().to_string()).collect();
    args.extend(limit.iter().map(String::as_str));
    let out = git(&args)?;
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        .collect())
}

/// Replaces a found `.sops.yaml` with its staged content when git tracks it.
fn staged_config(loaded: &mut config::Loaded) -> CliResult {
    let cwd = std::env::current_dir().map_err(|e| Failure::new(Code::Generic, e))?;
    let Some(dir) = loaded.path.parent() else {
        return Ok(());
    };
    let Ok(below) = cwd.strip_prefix(dir) else {
        return Ok(());
    };
    let up = "../".repeat(below.components().count());
    let spec = format!(":./{up}.sops.yaml");
    let Ok(text) = git(&["show", &spec]) else {
        return Ok(()); // not in the index: the work tree's is what would be committed
    };
    loaded.config = credseal::sops::config::Config::parse(&text).map_err(|e| {
        Failure::new(Code::ErrorReadingConfig, e)
            .context(format!("{} (staged)", loaded.path.display()))
    })?;
    Ok(())
}

fn git_show_index(file: &Path) -> CliResult<Vec<u8>> {
    // `:./path` is the index entry relative to the current directory.
    git(&["show", &format!(":./{}", file.display())])
}
