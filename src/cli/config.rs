//! Finding and reading `.sops.yaml` the way sops does (docs/sops-format.md §12).

use std::path::{Path, PathBuf};

use crate::cli::exit::{CliResult, Code, Failure};
use credseal::file_io;
use credseal::sops::config::Config;

/// A loaded config and the directory rule paths are relative to.
pub struct Loaded {
    pub path: PathBuf,
    pub config: Config,
}

/// `--config`, else `SOPS_CONFIG`, else `.sops.yaml` searched from the current directory up.
pub fn find(explicit: Option<&Path>, env_config: Option<&Path>) -> CliResult<Option<Loaded>> {
    let path = match explicit.or(env_config) {
        Some(p) => Some(p.to_owned()),
        None => lookup(&std::env::current_dir().map_err(|e| Failure::new(Code::Generic, e))?),
    };
    let Some(path) = path else { return Ok(None) };
    let text = file_io::read(&path).map_err(|e| Failure::new(Code::ErrorReadingConfig, e))?;
    let config = Config::parse(&text)
        .map_err(|e| Failure::from(e).context(format!("{}", path.display())))?;
    Ok(Some(Loaded { path, config }))
}

fn lookup(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .take(100)
        .map(|d| d.join(".sops.yaml"))
        .find(|p| p.is_file())
}

impl Loaded {
    /// The path a rule's `path_regex` sees: relative to the config's directory when the file
    /// is below it, absolute otherwise.
    pub fn rule_path(&self, file: &Path) -> String {
        let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
        let dir = self
            .path
            .parent()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_owned()))
            .unwrap_or_default();
        match abs.strip_prefix(&dir) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => abs.to_string_lossy().into_owned(),
        }
    }
}
