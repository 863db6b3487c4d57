//! What `check` asks git: the files of the work tree it sees, the files and `.sops.yaml`
//! staged in the index, and a staged file's content. Paths are relative to the current
//! directory, as `check` names them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::config;
use crate::cli::exit::{CliResult, Code, Failure};

/// Files git sees below `dir` (tracked, or untracked and not ignored), sorted, or `None`
/// outside a work tree.
pub fn work_tree_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let dir = dir.display().to_string();
    let out = git(&["ls-files", "-z", "-co", "--exclude-standard", "--", &dir]).ok()?;
    let mut files: Vec<PathBuf> = paths(&out)
        // Deleted but still tracked files are listed too; only what exists is checked.
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

/// Files added, copied, modified or renamed in the index, limited to `limit` if given.
pub fn staged_files(limit: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
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
    Ok(paths(&git(&args)?).collect())
}

/// A file's content in the index.
pub fn staged_content(file: &Path) -> CliResult<Vec<u8>> {
    // `:./path` is the index entry relative to the current directory.
    git(&["show", &format!(":./{}", file.display())])
}

/// Replaces a found `.sops.yaml` with its staged content when git tracks it: the rules being
/// committed are the staged ones.
pub fn use_staged_config(loaded: &mut config::Loaded) -> CliResult {
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
    loaded.config = credseal::sops::config::Config::parse(&text)
        .map_err(|e| Failure::from(e).context(format!("{} (staged)", loaded.path.display())))?;
    Ok(())
}

/// git's NUL-separated path list.
fn paths(out: &[u8]) -> impl Iterator<Item = PathBuf> + '_ {
    out.split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
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
