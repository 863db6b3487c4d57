//! Atomic projection of a set of files into a directory, the way the kubelet updates Secret
//! and ConfigMap volumes (`pkg/volume/util/atomic_writer.go`):
//!
//! ```text
//! OUT/..2026_11_23_06_52_03.123456789/<secret>/<key>   the payload, written and synced first
//! OUT/..data -> ..2026_…                               one rename swaps every file at once
//! OUT/<secret> -> ..data/<secret>                      stable user-visible paths
//! ```
//!
//! A reader that resolves `..data` once sees the old set or the new set, never a mix.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::file_io::FsError;
use crate::manifest::valid_key;
use crate::secret::SecretBytes;
use crate::sops::tree::Timestamp;

const DATA_LINK: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of the payload: a relative path (`secret/key` or a template name) and its bytes.
pub type Payload = Vec<(String, SecretBytes)>;

/// File ownership and permissions of the projected files.
#[derive(Clone, Copy, Debug)]
pub struct FileMode {
    pub mode: u32,
    pub group: Option<u32>,
}

/// Why a projection was refused or failed. Whatever the cause, the last good set stays.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The output directory may be shared (the app container, an operator's `--out` at an
    /// existing directory): credseal replaces only entries it created.
    #[error(
        "{}: exists and was not created by credseal ({what}); refusing to replace it: remove it or give another --out",
        path.display()
    )]
    NotOurs { path: PathBuf, what: &'static str },
    #[error(
        "{0:?} is not a safe name in the output directory (a Secret name or template name, then a Secret key: no '/', '.' or '..' prefix)"
    )]
    UnsafePath(String),
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> FsError {
    let path = path.to_owned();
    move |source| FsError {
        path,
        action,
        source,
    }
}

/// What `path` is, without following a symlink: a link's target, a directory, or something
/// else (which credseal never created). `None` when nothing is there.
enum Entry {
    Link(PathBuf),
    Dir,
    Other,
}

fn entry(path: &Path) -> Result<Option<Entry>, FsError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Ok(Some(Entry::Link(
            fs::read_link(path).map_err(io_err(path, "cannot read symlink"))?,
        ))),
        Ok(m) if m.is_dir() => Ok(Some(Entry::Dir)),
        Ok(_) => Ok(Some(Entry::Other)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "cannot inspect")(e)),
    }
}

/// Whether `name` has the shape of the payload directories `project` creates,
/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN.XXXXXX`: the only hidden directories it ever removes.
fn is_payload_name(name: &str) -> bool {
    const SHAPE: &[u8] = b"..DDDD_DD_DD_DD_DD_DD.DDDDDDDDD.AAAAAA";
    name.len() == SHAPE.len()
        && name.bytes().zip(SHAPE).all(|(c, s)| match s {
            b'D' => c.is_ascii_digit(),
            b'A' => c.is_ascii_alphanumeric(),
            _ => c == *s,
        })
}

/// The current payload directory: `..data`'s target if it is one of ours (a payload-shaped
/// name in `out` that is a real directory). A link planted elsewhere is never followed.
fn current_payload(out: &Path) -> Result<Option<String>, FsError> {
    let Some(Entry::Link(target)) = entry(&out.join(DATA_LINK))? else {
        return Ok(None);
    };
    let Some(name) = target.to_str().filter(|n| is_payload_name(n)) else {
        return Ok(None);
    };
    Ok(matches!(entry(&out.join(name))?, Some(Entry::Dir)).then(|| name.to_owned()))
}

/// A payload path is one or two names (`template` or `secret/key`), each a valid Secret key,
/// so it can neither leave the payload directory nor shadow a `..` entry.
fn check_path(rel: &str) -> Result<(), ProjectionError> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.len() > 2 || !parts.iter().all(|p| valid_key(p)) {
        return Err(ProjectionError::UnsafePath(rel.to_owned()));
    }
    Ok(())
}

/// Writes `payload` into `out` atomically. Returns false when the current content is already
/// identical (nothing is touched then). Only entries credseal creates are replaced or
/// removed: `..data`, `..data_tmp`, payload-shaped directories, and top-level links to
/// `..data/<name>`; no symlink in `out` is followed.
pub fn project(out: &Path, payload: &Payload, mode: FileMode) -> Result<bool, ProjectionError> {
    for (rel, _) in payload {
        check_path(rel)?;
    }
    fs::create_dir_all(out).map_err(io_err(out, "cannot create the output directory"))?;
    let old = current_payload(out)?;
    if let Some(old) = &old {
        if same_content(&out.join(old), payload) {
            return Ok(false);
        }
    }

    // 0. Refuse before anything changes when a name we need is held by something else.
    let wanted: BTreeSet<&str> = payload.iter().map(|(p, _)| top_level(p)).collect();
    for name in &wanted {
        let link = out.join(name);
        match entry(&link)? {
            None => {}
            Some(Entry::Link(t)) if t == Path::new(DATA_LINK).join(name) => {}
            Some(_) => {
                return Err(ProjectionError::NotOurs {
                    path: link,
                    what: "not a link into ..data",
                });
            }
        }
    }
    for (name, what) in [(DATA_LINK, "not a symlink"), (DATA_TMP, "not a symlink")] {
        if let Some(Entry::Dir | Entry::Other) = entry(&out.join(name))? {
            return Err(ProjectionError::NotOurs {
                path: out.join(name),
                what,
            });
        }
    }

    // 1. The new payload in a fresh hidden directory (0700 until complete: nobody else can
    // plant anything in it).
    let ts_dir = tempfile::Builder::new()
        .prefix(&format!("..{}.", label()))
        .rand_bytes(6)
        .tempdir_in(out)
        .map_err(io_err(out, "cannot create a payload directory in"))?
        .keep();
    let ts_name = ts_dir.file_name().expect("tempdir has a name").to_owned();
    let dir_mode = if mode.group.is_some() { 0o750 } else { 0o755 };
    let result = write_payload(&ts_dir, payload, mode, dir_mode);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e.into());
    }

    // 2. Swap `..data` in one rename. Both names hold at most a symlink (checked above), and
    // replacing a symlink never touches its target.
    let tmp_link = out.join(DATA_TMP);
    if let Some(Entry::Link(_)) = entry(&tmp_link)? {
        fs::remove_file(&tmp_link).map_err(io_err(&tmp_link, "cannot remove"))?;
    }
    symlink(&ts_name, &tmp_link).map_err(io_err(&tmp_link, "cannot create symlink"))?;
    fs::rename(&tmp_link, out.join(DATA_LINK))
        .map_err(io_err(&out.join(DATA_LINK), "cannot swap"))?;
    if let Ok(d) = fs::File::open(out) {
        let _ = d.sync_all();
    }

    // 3. Stable top-level links for every top-level name; drop ours no longer projected.
    for name in &wanted {
        let link = out.join(name);
        if entry(&link)?.is_none() {
            symlink(Path::new(DATA_LINK).join(name), &link)
                .map_err(io_err(&link, "cannot create symlink"))?;
        }
    }
    for dirent in fs::read_dir(out)
        .map_err(io_err(out, "cannot list"))?
        .flatten()
    {
        let name = dirent.file_name().to_string_lossy().into_owned();
        if wanted.contains(name.as_str()) {
            continue;
        }
        if let Ok(Some(Entry::Link(t))) = entry(&dirent.path()) {
            if t == Path::new(DATA_LINK).join(&name) {
                let _ = fs::remove_file(dirent.path());
            }
        }
    }

    // 4. The old payload goes; readers that resolved it before the swap may see it vanish
    // (and retry), never a mix. Then payload dirs left by an interrupted earlier run.
    if let Some(old) = old {
        if old.as_str() != ts_name {
            let _ = fs::remove_dir_all(out.join(old));
        }
    }
    remove_stale(out, &ts_name);
    Ok(true)
}

/// A payload directory name in the kubelet's format (`..2026_11_23_06_52_03.123456789`).
fn label() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = Timestamp::from_unix(now.as_secs() as i64);
    format!(
        "{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        now.subsec_nanos()
    )
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn write_payload(
    dir: &Path,
    payload: &Payload,
    mode: FileMode,
    dir_mode: u32,
) -> Result<(), FsError> {
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for (rel, bytes) in payload {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            if parent != dir && dirs.insert(parent.to_owned()) {
                fs::create_dir(parent).map_err(io_err(parent, "cannot create"))?;
                set_owner(parent, dir_mode, mode.group)?;
            }
        }
        // create_new: never through a symlink, never over an existing file.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path, "cannot create"))?;
        f.write_all(bytes.expose())
            .map_err(io_err(&path, "cannot write"))?;
        f.sync_all().map_err(io_err(&path, "cannot sync"))?;
        if let Some(gid) = mode.group {
            std::os::unix::fs::fchown(&f, None, Some(gid))
                .map_err(io_err(&path, "cannot change the group of"))?;
        }
        f.set_permissions(fs::Permissions::from_mode(mode.mode))
            .map_err(io_err(&path, "cannot set permissions of"))?;
    }
    set_owner(dir, dir_mode, mode.group)
}

fn set_owner(path: &Path, mode: u32, group: Option<u32>) -> Result<(), FsError> {
    if let Some(gid) = group {
        std::os::unix::fs::lchown(path, None, Some(gid))
            .map_err(io_err(path, "cannot change the group of"))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err(path, "cannot set permissions of"))
}

fn same_content(dir: &Path, payload: &Payload) -> bool {
    let mut count = 0;
    for (rel, bytes) in payload {
        match fs::read(dir.join(rel)) {
            Ok(current) if current == bytes.expose() => count += 1,
            _ => return false,
        }
    }
    // No extra files either.
    count_files(dir) == count
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => count_files(&e.path()),
                    _ => 1,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Removes payload directories left by an interrupted earlier run: only payload-shaped real
/// directories, never a look-alike link or another program's `..` entry.
fn remove_stale(out: &Path, keep: &std::ffi::OsStr) {
    if let Ok(rd) = fs::read_dir(out) {
        for e in rd.flatten() {
            let name = e.file_name();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && name != keep && name.to_str().is_some_and(is_payload_name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(v: &str) -> Payload {
        vec![
            (
                "db/user".into(),
                SecretBytes::new(format!("user-{v}").into_bytes()),
            ),
            (
                "db/password".into(),
                SecretBytes::new(format!("pw-{v}").into_bytes()),
            ),
            (
                "DATABASE_URL".into(),
                SecretBytes::new(format!("url-{v}").into_bytes()),
            ),
        ]
    }

    const MODE: FileMode = FileMode {
        mode: 0o400,
        group: None,
    };

    #[test]
    fn swaps_atomically_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        assert!(project(out, &payload("1"), MODE).unwrap());
        assert_eq!(fs::read(out.join("db/password")).unwrap(), b"pw-1");
        assert!(
            !project(out, &payload("1"), MODE).unwrap(),
            "unchanged payload is not rewritten"
        );
        assert!(project(out, &payload("2"), MODE).unwrap());
        assert_eq!(fs::read(out.join("DATABASE_URL")).unwrap(), b"url-2");
        let hidden: Vec<String> = fs::read_dir(out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != "..data")
            .collect();
        assert_eq!(
            hidden.len(),
            1,
            "only the current payload dir remains: {hidden:?}"
        );
        let m = fs::metadata(out.join("db/user"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o400);
        // A name that disappears from the payload disappears from OUT.
        project(out, &payload("3")[..2].to_vec(), MODE).unwrap();
        assert!(!out.join("DATABASE_URL").exists());
    }
}
