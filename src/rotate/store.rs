//! Where a credential's password lives, and the durable pending record of a rotation in
//! progress, written before anything else changes so a rerun after a crash finishes the
//! rotation from it. Two stores: a SOPS file ([`FileTarget`]) and a Kubernetes Secret
//! ([`SecretTarget`]).

use std::time::Duration;

use crate::rotate::RotateError;
use crate::rotate::lock::{LockError, RunLock};
use crate::rotate::secret_target::{SecretTarget, SecretTargetError};
use crate::rotate::target::{FileTarget, TargetError};
use crate::secret::SecretString;
use crate::sops::file::Context;
use crate::sops::tree::Timestamp;
use crate::sops::walk::OsEntropy;

/// The credential as the target holds it now.
pub struct Current {
    pub password: SecretString,
    pub username: Option<String>,
    pub generation: u64,
    pub rotated_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The new password is generated and saved; the engine may or may not have it yet.
    Staged,
    /// The target holds the new password; consumers may still use the old one.
    Committed,
    /// Consumers use the new password; the old one can go.
    Rolled,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Staged => "staged",
            Phase::Committed => "committed",
            Phase::Rolled => "rolled",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "staged" => Phase::Staged,
            "committed" => Phase::Committed,
            "rolled" => Phase::Rolled,
            _ => return None,
        })
    }
}

/// The durable record of a rotation in progress.
pub struct Pending {
    pub credential: String,
    pub phase: Phase,
    pub password: SecretString,
    /// The username that goes with it (alternating: the role being activated).
    pub username: Option<String>,
    /// The username being replaced (alternating: the role to retire).
    pub previous_username: Option<String>,
    /// Operator strategy: the password to restore if the operator never applies the new one.
    pub previous_password: Option<SecretString>,
    pub generation: u64,
    /// Dual with a grace: the old password stays valid until then; the first run after it
    /// retires the old password.
    pub retire_after: Option<Timestamp>,
}

impl Pending {
    /// Until when retiring the old password waits, if a run at `now` must still wait.
    pub fn retire_deferred(&self, now: Timestamp) -> Option<Timestamp> {
        self.retire_after.filter(|t| now.unix() < t.unix())
    }
}

/// A target's failure, before the rotation names its credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    File(#[from] TargetError),
    #[error(transparent)]
    Secret(#[from] SecretTargetError),
}

impl StoreError {
    pub fn for_credential(self, credential: &str) -> RotateError {
        let credential = credential.to_owned();
        match self {
            StoreError::File(source) => RotateError::Target { credential, source },
            StoreError::Secret(source) => RotateError::Secret { credential, source },
        }
    }
}

/// What a rotation needs of the place its password lives. Every write is idempotent: a rerun
/// after a crash writes the same again or finds it done.
pub(crate) trait Store {
    /// The lock that keeps other runs off this target until it is released: a file lock
    /// beside a file, a Lease (expiring `lease` after its last renewal) for a Secret. Waits up
    /// to `wait` for another run to finish.
    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        lease: Duration,
    ) -> Result<RunLock, LockError>;
    async fn read(&self) -> Result<Current, StoreError>;
    async fn pending(&self) -> Result<Option<Pending>, StoreError>;
    async fn save_pending(&self, p: &Pending, now: Timestamp) -> Result<(), StoreError>;
    /// Makes the pending password (and username) current, at generation `p.generation`,
    /// rotated at `now`.
    async fn commit(&self, p: &Pending, now: Timestamp) -> Result<(), StoreError>;
    async fn clear_pending(&self) -> Result<(), StoreError>;
}

impl Store for FileTarget<'_> {
    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        _lease: Duration,
    ) -> Result<RunLock, LockError> {
        RunLock::file(&self.path, holder, wait).await
    }

    async fn read(&self) -> Result<Current, StoreError> {
        Ok(FileTarget::read(self)?)
    }

    async fn pending(&self) -> Result<Option<Pending>, StoreError> {
        Ok(FileTarget::pending(self)?)
    }

    async fn save_pending(&self, p: &Pending, now: Timestamp) -> Result<(), StoreError> {
        let mut entropy = OsEntropy;
        let mut ctx = Context {
            entropy: &mut entropy,
            now,
        };
        Ok(FileTarget::save_pending(self, p, &mut ctx)?)
    }

    async fn commit(&self, p: &Pending, now: Timestamp) -> Result<(), StoreError> {
        let mut entropy = OsEntropy;
        let mut ctx = Context {
            entropy: &mut entropy,
            now,
        };
        Ok(FileTarget::commit(self, p, &mut ctx)?)
    }

    async fn clear_pending(&self) -> Result<(), StoreError> {
        Ok(FileTarget::clear_pending(self)?)
    }
}

impl Store for SecretTarget {
    async fn lock(
        &self,
        holder: &str,
        wait: Duration,
        lease: Duration,
    ) -> Result<RunLock, LockError> {
        let (namespace, name) = self.id();
        RunLock::lease(self.client(), namespace, name, holder, lease, wait).await
    }

    async fn read(&self) -> Result<Current, StoreError> {
        Ok(SecretTarget::read(self).await?)
    }

    async fn pending(&self) -> Result<Option<Pending>, StoreError> {
        Ok(SecretTarget::pending(self).await?)
    }

    async fn save_pending(&self, p: &Pending, _now: Timestamp) -> Result<(), StoreError> {
        Ok(SecretTarget::save_pending(self, p).await?)
    }

    async fn commit(&self, p: &Pending, now: Timestamp) -> Result<(), StoreError> {
        Ok(SecretTarget::commit(self, p, &now).await?)
    }

    async fn clear_pending(&self) -> Result<(), StoreError> {
        Ok(SecretTarget::clear_pending(self).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(retire_after: Option<i64>) -> Pending {
        Pending {
            credential: "app".into(),
            phase: Phase::Rolled,
            password: SecretString::new("x".into()),
            username: None,
            previous_username: None,
            previous_password: None,
            generation: 1,
            retire_after: retire_after.map(Timestamp::from_unix),
        }
    }

    #[test]
    fn the_old_password_is_retired_by_the_first_run_after_its_grace() {
        let p = pending(Some(10_000));
        assert_eq!(
            p.retire_deferred(Timestamp::from_unix(9_999)),
            Some(Timestamp::from_unix(10_000))
        );
        assert_eq!(p.retire_deferred(Timestamp::from_unix(10_000)), None);
        assert_eq!(pending(None).retire_deferred(Timestamp::from_unix(0)), None);
    }
}
