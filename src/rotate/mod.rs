//! `rotate`: crash-safe password rotation. Per credential a durable state machine — stage,
//! apply, verify, commit, roll, retire (`phases.rs`) — where every step is idempotent and a
//! rerun after a crash anywhere finishes the rotation from what it observes. It reaches the
//! database through an [`engine`] (PostgreSQL, Redis) and keeps the password and its pending
//! record in a [`store`] (a SOPS file, a Kubernetes Secret).

mod admin;
pub mod connections;
mod engine;
pub mod lock;
pub mod password;
mod permissions;
mod phases;
pub mod plan;
pub mod postgres;
pub mod redis;
pub mod redis_topology;
mod roll;
mod runner;
pub mod secret_target;
pub mod status;
pub mod store;
pub mod target;
pub mod tls;

pub use permissions::cluster_calls;
pub use runner::Runner;

use self::lock::LockError;
use self::postgres::PgError;
use self::redis::RedisError;
use self::secret_target::SecretTargetError;
use self::target::TargetError;
use crate::k8s::K8sError;

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("credential {credential}")]
    Target {
        credential: String,
        source: TargetError,
    },
    #[error("credential {credential}")]
    Postgres { credential: String, source: PgError },
    #[error("credential {credential}")]
    Redis {
        credential: String,
        source: RedisError,
    },
    #[error(
        "credential {credential}: the new password does not log in after it was applied ({reason}); the pending record keeps it, rerun to retry"
    )]
    Verify { credential: String, reason: String },
    #[error("credential {credential}: admin password: {reason}")]
    AdminPassword { credential: String, reason: String },
    #[error("credential {credential}: admin TLS material: {reason}")]
    Pem { credential: String, reason: String },
    /// Another run rotates this credential now (or its lock was lost mid-run).
    #[error("credential {credential}")]
    Locked {
        credential: String,
        source: Box<LockError>,
    },
    /// The ServiceAccount may not make every call the run would: nothing was changed.
    #[error(
        "credential {credential}: this identity may not make every call the rotation would make; nothing was changed. Add to its Role:\n{rules}"
    )]
    Forbidden { credential: String, rules: String },
    #[error("credential {credential}: the pending record belongs to credential {other}")]
    ForeignPending { credential: String, other: String },
    #[error("credential {credential}")]
    Secret {
        credential: String,
        source: SecretTargetError,
    },
    #[error("credential {credential}")]
    Kube {
        credential: String,
        source: K8sError,
    },
    #[error(
        "credential {credential}: the operator did not apply the new password within {timeout_secs}s; the Secret holds the previous password again and nothing was rolled"
    )]
    OperatorTimeout {
        credential: String,
        timeout_secs: u64,
    },
    #[error(
        "credential {credential}: a Kubernetes target, rollout or StatefulSet topology needs a cluster connection"
    )]
    NoCluster { credential: String },
    /// A rollout did not become healthy in time: the line stops here.
    #[error(
        "credential {credential}: {workload} did not finish rolling out within {timeout_secs}s; stopped, nothing further rolled (rolled so far: {done}); the old password stays valid where the strategy allows; rerun after fixing the workload"
    )]
    RolloutFailed {
        credential: String,
        workload: String,
        timeout_secs: u64,
        done: String,
    },
}

/// What a run did for one credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Rotated less than `rotateAfter` ago and nothing pending.
    NotDue,
    /// `--dry-run`: what would happen.
    WouldRotate,
    Rotated {
        generation: u64,
    },
    /// Dual with a grace: committed and rolled; the old password stays valid until `until`
    /// (RFC 3339) and the first run after that retires it.
    Retiring {
        generation: u64,
        until: String,
    },
    /// A deferred retire done: only the new password is left.
    Retired {
        generation: u64,
    },
}
