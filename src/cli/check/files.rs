//! Which files `check` reads: the staged ones, or those below the paths given (in a git work
//! tree what git sees, elsewhere every regular file), less what `.credsealignore` names.

use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

use super::git;
use crate::cli::exit::{CliResult, Code, Failure};
use credseal::check::{IGNORE_FILE, IgnoreList};

/// The files to check, relative to the current directory where they were given so.
pub fn to_check(paths: &[PathBuf], staged: bool) -> CliResult<Vec<PathBuf>> {
    let files = if staged {
        git::staged_files(paths)?
    } else {
        below(paths)?
    };
    let ignored = ignore_list()?;
    Ok(files
        .into_iter()
        .filter(|f| !ignored.is_ignored(f))
        .collect())
}

/// The files below each path (the current directory if none is given). In a git work tree,
/// what git would see (tracked, or untracked and not ignored): a build directory is not the
/// repository's content. A file named on the command line is always checked.
fn below(paths: &[PathBuf]) -> CliResult<Vec<PathBuf>> {
    let roots = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in &roots {
        match root.is_dir().then(|| git::work_tree_files(root)).flatten() {
            Some(found) => files.extend(found),
            None => walk(root, &mut files)?,
        }
    }
    Ok(files)
}

/// Regular files below `root` (or `root` itself when it is not a directory), in name order,
/// not following symbolic links, skipping `.git`. Outside git nothing says what is build
/// output, so hidden and `.gitignore`d files are read too.
fn walk(root: &Path, out: &mut Vec<PathBuf>) -> CliResult {
    let meta = std::fs::symlink_metadata(root).map_err(|e| {
        Failure::new(Code::CouldNotReadInput, e).context(format!("{}", root.display()))
    })?;
    if !meta.is_dir() {
        out.push(root.to_owned());
        return Ok(());
    }
    let walker = WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry.map_err(|e| Failure::new(Code::CouldNotReadInput, e))?;
        if entry.file_type().is_some_and(|t| t.is_file()) {
            out.push(entry.into_path());
        }
    }
    Ok(())
}

/// `.credsealignore` in the current directory; none is an empty list.
fn ignore_list() -> CliResult<IgnoreList> {
    let path = Path::new(IGNORE_FILE);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(IgnoreList::empty()),
        Err(e) => {
            return Err(
                Failure::new(Code::CouldNotReadInput, e).context(format!("{}", path.display()))
            );
        }
    };
    IgnoreList::parse(&text, path).map_err(Failure::from)
}
