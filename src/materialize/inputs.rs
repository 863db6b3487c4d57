//! Reading the mounted inputs: SOPS files from `--source` and age identities from `--keys`,
//! laid out the way the kubelet mounts ConfigMaps and Secrets (`..data` symlinks, hidden
//! timestamped directories).

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::file_io::FsError;
use crate::secret::SecretBytes;
use crate::sops::keys::{KeyError, Keyring};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}: no age identities (*.agekey, keys.txt, or age.agekey of a Flux sops-age Secret)")]
    NoIdentities(PathBuf),
}

/// The visible regular files of a mounted directory, sorted: hidden entries (`..data`, the
/// timestamped payload dirs) are skipped, symlinks followed.
pub fn visible_files(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let rd = fs::read_dir(dir).map_err(|source| FsError {
        path: dir.to_owned(),
        action: "cannot list",
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a file in `--keys` holds identities: `*.agekey` (Flux's layout) or `keys.txt`.
fn is_key_file(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "agekey") || p.file_name().is_some_and(|n| n == "keys.txt")
}

/// Loads every identity in the key directory into one keyring (old keys keep decrypting
/// while files move to a new one).
pub fn load_keyring(dir: &Path) -> Result<Keyring, InputError> {
    let mut ring = Keyring::new();
    for path in visible_files(dir)?.into_iter().filter(|p| is_key_file(p)) {
        // Straight into a zeroizing buffer: the identities never sit in a plain String.
        let bytes = SecretBytes::read_file(&path).map_err(|source| FsError {
            path: path.clone(),
            action: "cannot read",
            source,
        })?;
        ring.add_identities_bytes(bytes.expose(), &path.display().to_string())?;
    }
    if ring.is_empty() {
        return Err(InputError::NoIdentities(dir.to_owned()));
    }
    Ok(ring)
}

/// A digest of the names and contents of the visible files of the given directories: it
/// changes exactly when an input changes (including kubelet `..data` swaps).
pub fn fingerprint(dirs: &[&Path]) -> [u8; 32] {
    let mut h = Sha256::new();
    for dir in dirs {
        h.update(dir.as_os_str().as_encoded_bytes());
        h.update([0]);
        if let Ok(files) = visible_files(dir) {
            for f in files {
                h.update(f.as_os_str().as_encoded_bytes());
                h.update([0]);
                match fs::read(&f) {
                    Ok(bytes) => {
                        h.update((bytes.len() as u64).to_le_bytes());
                        h.update(&bytes);
                    }
                    Err(_) => h.update([1]),
                }
            }
        } else {
            h.update([2]);
        }
    }
    h.finalize().into()
}
