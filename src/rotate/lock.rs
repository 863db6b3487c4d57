//! One rotation of a credential at a time, whoever starts it (the CronJob, a
//! `kubectl create job --from`, a laptop): a Lease per target Secret, an OS lock beside a
//! target file. Held from before the pending record is read until the run ends; every change
//! checks first that it is still held.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::k8s::lease::{Lease, LeaseError};

/// How long a Lease outlives a holder that stopped renewing it (a crashed run), by default.
pub const LEASE_DURATION: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(
        "{}: held by {holder}; nothing was changed: that run releases it when it ends",
        path.display()
    )]
    FileHeld { path: PathBuf, holder: String },
    #[error("{}: cannot lock", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub enum RunLock {
    Lease(Box<Lease>),
    /// The open lock file; the OS releases the lock when it is closed, also on a crash.
    File(std::fs::File),
}

/// The Lease guarding a target Secret.
pub fn lease_name(secret: &str) -> String {
    format!("{secret}-credseal-rotation")
}

/// `dir/.name.credseal-lock` beside a target file.
pub fn lock_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.credseal-lock"))
}

impl RunLock {
    /// Takes the Lease of `secret`, waiting up to `wait` for another run to release it or for
    /// its Lease to expire.
    pub async fn lease(
        client: kube::Client,
        namespace: &str,
        secret: &str,
        holder: &str,
        duration: Duration,
        wait: Duration,
    ) -> Result<RunLock, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Lease::acquire(
                client.clone(),
                namespace,
                &lease_name(secret),
                holder,
                duration,
            )
            .await
            {
                Err(LeaseError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return Ok(RunLock::Lease(Box::new(other?))),
            }
        }
    }

    /// Locks the file beside `target`, waiting up to `wait` for another run to finish.
    pub async fn file(target: &Path, holder: &str, wait: Duration) -> Result<RunLock, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match RunLock::try_file(target, holder) {
                Err(LockError::FileHeld { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    fn try_file(target: &Path, holder: &str) -> Result<RunLock, LockError> {
        let path = lock_path(target);
        let io = |source| LockError::File {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // flock(2): held by the open file, released by the kernel when it is closed, also
        // when the process dies.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "another run".to_owned());
                return Err(LockError::FileHeld { path, holder });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{holder}").map_err(io)?;
        Ok(RunLock::File(file))
    }

    /// Errs when the lock was lost (a Lease not renewed in time): stop before changing more.
    pub fn ensure_held(&self) -> Result<(), LockError> {
        match self {
            RunLock::Lease(l) => Ok(l.ensure_held()?),
            RunLock::File(_) => Ok(()),
        }
    }

    pub async fn release(self) -> Result<(), LockError> {
        match self {
            RunLock::Lease(l) => Ok(l.release().await?),
            RunLock::File(f) => {
                drop(f);
                Ok(())
            }
        }
    }
}
