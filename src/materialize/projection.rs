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
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::fsx::FsError;
use crate::secret::SecretBytes;

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

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> FsError {
    let path = path.to_owned();
    move |source| FsError {
        path,
        action,
        source,
    }
}

/// Writes `payload` into `out` atomically. Returns false when the current content is already
/// identical (nothing is touched then).
pub fn project(
    out: &Path,
    payload: &Payload,
    mode: FileMode,
    now_label: &str,
) -> Result<bool, FsError> {
    fs::create_dir_all(out).map_err(io_err(out, "cannot create the output directory"))?;
    let data_link = out.join(DATA_LINK);
    let old = fs::read_link(&data_link).ok();
    if let Some(old) = &old {
        if same_content(&out.join(old), payload) {
            return Ok(false);
        }
    }

    // 1. The new payload in a fresh hidden directory.
    let ts_dir = tempfile::Builder::new()
        .prefix(&format!("..{now_label}."))
        .rand_bytes(6)
        .tempdir_in(out)
        .map_err(io_err(out, "cannot create a payload directory in"))?
        .keep();
    let ts_name = ts_dir.file_name().expect("tempdir has a name").to_owned();
    let dir_mode = if mode.group.is_some() { 0o750 } else { 0o755 };
    let result = write_payload(&ts_dir, payload, mode, dir_mode);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }

    // 2. Swap `..data` in one rename.
    let tmp_link = out.join(DATA_TMP);
    let _ = fs::remove_file(&tmp_link);
    symlink(&ts_name, &tmp_link).map_err(io_err(&tmp_link, "cannot create symlink"))?;
    fs::rename(&tmp_link, &data_link).map_err(io_err(&data_link, "cannot swap"))?;
    if let Ok(d) = fs::File::open(out) {
        let _ = d.sync_all();
    }

    // 3. Stable top-level links for every top-level name; drop the ones no longer projected.
    let wanted: BTreeSet<&str> = payload.iter().map(|(p, _)| top_level(p)).collect();
    for name in &wanted {
        let link = out.join(name);
        let target = Path::new(DATA_LINK).join(name);
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = fs::remove_file(&link);
            symlink(&target, &link).map_err(io_err(&link, "cannot create symlink"))?;
        }
    }
    for entry in fs::read_dir(out)
        .map_err(io_err(out, "cannot list"))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if !name.starts_with("..") && is_link && !wanted.contains(name.as_str()) {
            let _ = fs::remove_file(entry.path());
        }
    }

    // 4. The old payload goes; readers that resolved it before the swap may see it vanish
    // (and retry), never a mix.
    if let Some(old) = old {
        let old = out.join(old);
        if old.file_name() != Some(&ts_name) {
            let _ = fs::remove_dir_all(old);
        }
    }
    remove_stale(out, &ts_name);
    Ok(true)
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
                fs::create_dir_all(parent).map_err(io_err(parent, "cannot create"))?;
                set_owner(parent, dir_mode, mode.group)?;
            }
        }
        let mut f = fs::File::create(&path).map_err(io_err(&path, "cannot create"))?;
        f.write_all(bytes.expose())
            .map_err(io_err(&path, "cannot write"))?;
        f.sync_all().map_err(io_err(&path, "cannot sync"))?;
        set_owner(&path, mode.mode, mode.group)?;
    }
    set_owner(dir, dir_mode, mode.group)
}

fn set_owner(path: &Path, mode: u32, group: Option<u32>) -> Result<(), FsError> {
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
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

/// Removes payload directories left by an interrupted earlier run.
fn remove_stale(out: &Path, keep: &std::ffi::OsStr) {
    if let Ok(rd) = fs::read_dir(out) {
        for e in rd.flatten() {
            let name = e.file_name();
            let s = name.to_string_lossy();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && s.starts_with("..") && name != keep {
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
        assert!(project(out, &payload("1"), MODE, "t1").unwrap());
        assert_eq!(fs::read(out.join("db/password")).unwrap(), b"pw-1");
        assert!(
            !project(out, &payload("1"), MODE, "t2").unwrap(),
            "unchanged payload is not rewritten"
        );
        assert!(project(out, &payload("2"), MODE, "t3").unwrap());
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
        project(out, &payload("3")[..2].to_vec(), MODE, "t4").unwrap();
        assert!(!out.join("DATABASE_URL").exists());
    }
}
