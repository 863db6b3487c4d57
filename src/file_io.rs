//! Filesystem I/O with the path in every error, and atomic writes (temp file in the same
//! directory, fsync, rename, fsync the directory): an output is never half-written.

use std::ffi::OsString;
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
/// (or `new_mode` when there is none). A symlink is written through, as sops does: its final
/// target is replaced and the link stays, so a file linked into a checkout stays one file.
pub fn write_atomic(path: &Path, data: &[u8], new_mode: u32) -> Result<(), FsError> {
    use std::os::unix::fs::PermissionsExt;
    let target = resolve_links(path)?;
    let path = target.as_path();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(new_mode);
    let (prefix, suffix) = temp_affixes(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(&suffix)
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

/// Linux's limit on symlinks followed in one path lookup.
const MAX_LINKS: usize = 40;

/// The file a write to `path` lands in: symlinks followed one by one (not canonicalized, so a
/// dangling link still names the file to create, as `open(O_CREAT)` would).
fn resolve_links(path: &Path) -> Result<PathBuf, FsError> {
    let mut p = path.to_owned();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).map_err(err(&p, "cannot read the symlink"))?;
                // A relative link is relative to the directory holding it.
                p = p.parent().map_or(to.clone(), |dir| dir.join(&to));
            }
            _ => return Ok(p),
        }
    }
    Err(FsError {
        path: path.to_owned(),
        action: "cannot write through",
        source: io::Error::other("too many levels of symbolic links"),
    })
}

/// The temporary file's name around its random part: hidden, named after the target, and
/// ending in the target's extension, so a file left by a killed process is still read as what
/// it holds (`check` judges `.yaml`/`.json` files) and its origin is plain to see.
fn temp_affixes(path: &Path) -> (OsString, OsString) {
    use std::os::unix::ffi::OsStrExt;
    // Room for the affixes and the random part within the usual 255-byte name limit.
    const KEEP: usize = 160;
    let name = path.file_name().unwrap_or_default().as_bytes();
    let mut prefix = OsString::from(".");
    prefix.push(std::ffi::OsStr::from_bytes(&name[..name.len().min(KEEP)]));
    prefix.push(".credseal-");
    let mut suffix = OsString::new();
    if let Some(ext) = path.extension().filter(|e| e.len() <= 32) {
        suffix.push(".");
        suffix.push(ext);
    }
    (prefix, suffix)
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

    #[test]
    fn a_symlink_is_written_through_and_kept() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/s.yaml");
        fs::write(&target, "old").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        // A chain: link2 -> link1 -> real/s.yaml, both relative.
        symlink("real/s.yaml", dir.path().join("link1")).unwrap();
        symlink("link1", dir.path().join("link2")).unwrap();
        write_atomic(&dir.path().join("link2"), b"new", 0o644).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for link in ["link1", "link2"] {
            let m = fs::symlink_metadata(dir.path().join(link)).unwrap();
            assert!(m.file_type().is_symlink(), "{link} kept");
        }
        // A dangling link names the file to create.
        symlink("real/new.yaml", dir.path().join("dangling")).unwrap();
        write_atomic(&dir.path().join("dangling"), b"x", 0o600).unwrap();
        assert_eq!(fs::read(dir.path().join("real/new.yaml")).unwrap(), b"x");
        // A loop is an error naming the path, not a hang.
        symlink("loop", dir.path().join("loop")).unwrap();
        let e = write_atomic(&dir.path().join("loop"), b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains("loop"), "{e}");
    }

    #[test]
    fn temp_names_keep_the_target_and_its_extension() {
        let (p, s) = temp_affixes(Path::new("dir/db.enc.yaml"));
        assert_eq!(
            (p.to_str().unwrap(), s.to_str().unwrap()),
            (".db.enc.yaml.credseal-", ".yaml")
        );
        let (p, s) = temp_affixes(Path::new("secret"));
        assert_eq!(
            (p.to_str().unwrap(), s.to_str().unwrap()),
            (".secret.credseal-", "")
        );
        let long = format!("{}.json", "a".repeat(300));
        let (p, s) = temp_affixes(Path::new(&long));
        assert!(p.len() + s.len() + 6 <= 255);
        assert_eq!(s, ".json");
    }
}
