//! API errors by kind (branch on `is_conflict()`, never on text), each naming the object.

use kube::core::Status;

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// No usable cluster configuration.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// 403: the message names the verb, resource and namespace the service account lacks.
    #[error("{what}: forbidden: {message} (grant it in the Role bound to this service account)")]
    Forbidden { what: String, message: String },
    #[error("{what}: not found")]
    NotFound { what: String },
    /// 409: a resourceVersion conflict or an object that already exists.
    #[error("{what}: conflict: {message}")]
    Conflict { what: String, message: String },
    #[error("{what}: the API server refused the request ({code} {reason}): {message}")]
    Api {
        what: String,
        code: u16,
        reason: String,
        message: String,
    },
    /// An object the API returned that credseal cannot act on safely.
    #[error("{what}: {problem}")]
    Unusable { what: String, problem: String },
    #[error("{what}: cannot reach the API server")]
    Transport { what: String, source: kube::Error },
    /// A watch the server ended at once, again and again (a proxy cutting long requests).
    #[error("{what}: the watch ended as soon as it started")]
    WatchEnded { what: String },
}

impl K8sError {
    /// Classifies a kube error for the object described by `what` (e.g. `secret ns/name`).
    pub fn from_kube(what: impl Into<String>, e: kube::Error) -> K8sError {
        let what = what.into();
        match e {
            kube::Error::Api(status) => from_status(what, &status),
            source => K8sError::Transport { what, source },
        }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, K8sError::Conflict { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::NotFound { .. })
    }

    pub fn is_forbidden(&self) -> bool {
        matches!(self, K8sError::Forbidden { .. })
    }
}

fn from_status(what: String, s: &Status) -> K8sError {
    match s.code {
        403 => K8sError::Forbidden {
            what,
            message: s.message.clone(),
        },
        404 => K8sError::NotFound { what },
        409 => K8sError::Conflict {
            what,
            message: s.message.clone(),
        },
        code => K8sError::Api {
            what,
            code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
    }
}

/// How many writes in a row, each guarded by what it read, may meet a concurrent change before
/// a read-modify-write gives up.
pub const CONFLICT_ATTEMPTS: usize = 5;

/// An error that may be a 409 conflict: the one kind [`retry_on_conflict`] tries again.
pub trait Conflict {
    fn is_conflict(&self) -> bool;
}

impl Conflict for K8sError {
    fn is_conflict(&self) -> bool {
        K8sError::is_conflict(self)
    }
}

/// Runs `attempt` (read, change, write guarded by the `resourceVersion` read) again on fresh
/// data while it ends in a conflict, so a concurrent writer's change is never lost; after
/// [`CONFLICT_ATTEMPTS`] conflicts in a row, the error `contended` makes.
pub async fn retry_on_conflict<T, E: Conflict>(
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
    contended: impl FnOnce() -> E,
) -> Result<T, E> {
    for _ in 0..CONFLICT_ATTEMPTS {
        match attempt().await {
            Err(e) if e.is_conflict() => continue,
            done => return done,
        }
    }
    Err(contended())
}
