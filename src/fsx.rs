//! Filesystem I/O with the path in every error, and atomic writes (temp file in the same
//! directory, fsync, rename, fsync the directory): an output is never half-written.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {action}: {source}")]
pub struct FsError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

fn err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> FsError {
    let path = path.to_owned();
    move |source| FsError {
        path,
        action,
        source,
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(err(path, "cannot read"))
}

pub fn read_to_string(path: &Path) -> Result<String, FsError> {
    fs::read_to_string(path).map_err(err(path, "cannot read"))
}

/// Replaces `path` atomically with `data`. The new file keeps the mode of the file it replaces
/// (or `new_mode` when there is none).
pub fn write_atomic(path: &Path, data: &[u8], new_mode: u32) -> Result<(), FsError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(new_mode);
    let mut tmp = tempfile::Builder::new()
        .prefix(".credseal-")
        .tempfile_in(dir)
        .map_err(err(path, "cannot create a temporary file next to"))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err(
            path,
            "cannot set permissions of the temporary file for",
        ))?;
    tmp.write_all(data).map_err(err(path, "cannot write"))?;
    tmp.as_file().sync_all().map_err(err(path, "cannot sync"))?;
    tmp.persist(path).map_err(|e| FsError {
        path: path.to_owned(),
        action: "cannot replace",
        source: e.error,
    })?;
    if let Ok(d) = fs::File::open(dir) {
        // Best effort: some filesystems refuse fsync on directories.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `path` with `mode`, refusing to overwrite an existing file.
pub fn create_new(path: &Path, data: &[u8], mode: u32) -> Result<(), FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err(path, "cannot create"))?;
    f.write_all(data).map_err(err(path, "cannot write"))?;
    f.sync_all().map_err(err(path, "cannot sync"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_keeps_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.yaml");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = create_new(&p, b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("f.yaml"));
    }
}
