//! The Secret calls credseal makes: read, create, update guarded by `resourceVersion`, and
//! server-side apply as field manager `credseal`.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::k8s::error::K8sError;

/// credseal's field manager for server-side apply.
pub const FIELD_MANAGER: &str = "credseal";

pub struct Secrets {
    api: Api<Secret>,
    namespace: String,
}

impl Secrets {
    pub fn new(client: kube::Client, namespace: &str) -> Secrets {
        Secrets {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }

    fn what(&self, name: &str) -> String {
        format!("secret {}/{name}", self.namespace)
    }

    pub async fn get(&self, name: &str) -> Result<Option<Secret>, K8sError> {
        match self.api.get(name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match K8sError::from_kube(self.what(name), e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    pub async fn create(&self, secret: &Secret) -> Result<Secret, K8sError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        self.api
            .create(&PostParams::default(), secret)
            .await
            .map_err(|e| K8sError::from_kube(self.what(&name), e))
    }

    /// Replaces the Secret; `secret.metadata.resource_version` must be the one read, so a
    /// concurrent change is a conflict instead of a lost update.
    pub async fn replace(&self, secret: &Secret) -> Result<Secret, K8sError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        self.api
            .replace(&name, &PostParams::default(), secret)
            .await
            .map_err(|e| K8sError::from_kube(self.what(&name), e))
    }

    /// Deletes the Secret; a missing one is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), K8sError> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) => match K8sError::from_kube(self.what(name), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Server-side apply (forced: credseal owns the fields it sets).
    pub async fn apply(&self, secret: &Secret, dry_run: bool) -> Result<Secret, K8sError> {
        self.apply_as(secret, FIELD_MANAGER, true, dry_run).await
    }

    /// Server-side apply as `manager`. Unforced, a field another manager set differently is a
    /// conflict (409); a `resourceVersion` in `secret` is a precondition.
    pub async fn apply_as(
        &self,
        secret: &Secret,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<Secret, K8sError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut params = PatchParams::apply(manager);
        params.force = force;
        params.dry_run = dry_run;
        self.api
            .patch(&name, &params, &Patch::Apply(secret))
            .await
            .map_err(|e| K8sError::from_kube(self.what(&name), e))
    }
}
