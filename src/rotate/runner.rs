//! One run over a plan's credentials: for each, its target, the permission preflight, its
//! lock, and the engine its plan names; then the state machine (`phases.rs`) does the rest.

use std::path::Path;

use crate::clock::Clock;
use crate::rotate::connections::AdminConnections;
use crate::rotate::engine::{Engine, PgEngine, RedisEngine};
use crate::rotate::lock::{self, LockError, RunLock};
use crate::rotate::phases::Rotation;
use crate::rotate::plan::{Credential, Method, TargetSpec};
use crate::rotate::secret_target::SecretTarget;
use crate::rotate::store::Store;
use crate::rotate::target::FileTarget;
use crate::rotate::{Outcome, RotateError};
use crate::sops::keys::Keyring;

/// What the library needs from its caller (the cli reads the environment; tests inject).
pub struct Runner<'a> {
    pub keyring: &'a Keyring,
    /// Looks up an environment variable (admin passwords given as `{env: NAME}`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub dry_run: bool,
    pub base_dir: &'a Path,
    /// The cluster, for Secret targets and rollouts.
    pub kube: Option<kube::Client>,
    /// Who this run is, as its lock names it (pod or host, process, a random suffix).
    pub holder: String,
    /// How long to wait for another run's lock before giving up (exit 221).
    pub wait_for_lock: std::time::Duration,
    /// Admin sessions kept across the run's credentials (one per server and admin).
    pub connections: AdminConnections,
    /// When a credential is due, when a grace ends, what a commit records as its time.
    pub clock: &'a dyn Clock,
}

impl<'a> Runner<'a> {
    /// Runs (or resumes) the rotation of one credential, holding its lock (none for a dry
    /// run, which changes nothing).
    pub async fn rotate(&mut self, cred: &Credential) -> Result<Outcome, RotateError> {
        match &cred.target {
            TargetSpec::File(f) => {
                let keyring: &'a Keyring = self.keyring;
                let store = FileTarget::new(
                    self.base_dir.join(&f.path),
                    &f.key,
                    f.username_key.as_deref(),
                    keyring,
                )
                .map_err(|source| RotateError::Target {
                    credential: cred.name.clone(),
                    source,
                })?;
                self.rotate_in(cred, &store).await
            }
            TargetSpec::Secret(s) => {
                let store = SecretTarget::new(self.cluster(cred)?, s.clone());
                self.rotate_in(cred, &store).await
            }
        }
    }

    async fn rotate_in<S: Store>(
        &mut self,
        cred: &Credential,
        store: &S,
    ) -> Result<Outcome, RotateError> {
        self.may_do_everything(cred).await?;
        let locked = |source: LockError| RotateError::Locked {
            credential: cred.name.clone(),
            source: Box::new(source),
        };
        let lock = match self.dry_run {
            true => None,
            false => {
                let lease = cred.lock_duration.unwrap_or(lock::LEASE_DURATION);
                let taken = store.lock(&self.holder, self.wait_for_lock, lease).await;
                Some(taken.map_err(locked)?)
            }
        };
        let result = self.rotate_locked(cred, store, lock.as_ref()).await;
        if let Some(lock) = lock {
            let released = lock.release().await.map_err(locked);
            if let (Ok(_), Err(e)) = (&result, released) {
                // The rotation is done; an unreleased lock only expires later.
                let outcome = crate::sops::error_text::with_causes(&e);
                self.audit(cred, "unlock", &outcome, None);
            }
        }
        result
    }

    /// Reads where the rotation stands, then runs the state machine with the plan's engine.
    async fn rotate_locked<S: Store>(
        &mut self,
        cred: &Credential,
        store: &S,
        lock: Option<&RunLock>,
    ) -> Result<Outcome, RotateError> {
        let current = store
            .read()
            .await
            .map_err(|e| e.for_credential(&cred.name))?;
        let pending = store
            .pending()
            .await
            .map_err(|e| e.for_credential(&cred.name))?;
        if let Some(p) = pending.as_ref().filter(|p| p.credential != cred.name) {
            return Err(RotateError::ForeignPending {
                credential: cred.name.clone(),
                other: p.credential.clone(),
            });
        }
        let tls = self.admin_tls(cred).await?;
        match &cred.method {
            Method::Postgres(strategy) => {
                let engine = PgEngine::new(cred, *strategy, tls.ca.as_ref())?;
                self.run(cred, store, engine, lock, current, pending).await
            }
            Method::Redis { strategy, topology } => {
                let engine = RedisEngine::new(
                    cred,
                    *strategy,
                    topology,
                    tls.ca.as_ref(),
                    tls.client_cert(),
                    self.kube.clone(),
                )?;
                self.run(cred, store, engine, lock, current, pending).await
            }
        }
    }

    async fn run<S: Store, E: Engine>(
        &mut self,
        cred: &Credential,
        store: &S,
        engine: E,
        lock: Option<&RunLock>,
        current: crate::rotate::store::Current,
        pending: Option<crate::rotate::store::Pending>,
    ) -> Result<Outcome, RotateError> {
        Rotation {
            runner: self,
            cred,
            store,
            engine,
            lock,
        }
        .run(current, pending)
        .await
    }

    /// The cluster connection a Kubernetes-backed part of the plan needs.
    pub(crate) fn cluster(&self, cred: &Credential) -> Result<kube::Client, RotateError> {
        self.kube.clone().ok_or_else(|| RotateError::NoCluster {
            credential: cred.name.clone(),
        })
    }

    /// One audit event: which credential, which step, how it went (and the generation a
    /// commit recorded); never a value.
    pub(crate) fn audit(
        &self,
        cred: &Credential,
        step: &str,
        outcome: &str,
        generation: Option<u64>,
    ) {
        tracing::info!(
            target: crate::log::AUDIT,
            credential = %cred.name,
            engine = cred.method.engine_name(),
            role = %cred.role,
            step,
            outcome,
            generation,
        );
    }
}
