//! Restarting the consumers after a commit: the plan's `also` workloads (the database tier) in
//! order, then every workload that reads the target Secret, each to a healthy rollout before
//! the next; the first that does not finish in time stops the line. Every step is recorded as
//! a Kubernetes Event (best effort, never a value).

use crate::k8s::workloads::{self, Workload, Workloads};
use crate::rotate::plan::Credential;
use crate::rotate::{RotateError, Runner};

/// How long a workload may take to become healthy when the plan does not say.
const ROLLOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl Runner<'_> {
    pub(crate) async fn roll(
        &mut self,
        cred: &Credential,
        generation: u64,
    ) -> Result<(), RotateError> {
        let secret = cred.target.secret();
        if secret.is_none() && cred.rollout.also.is_empty() {
            self.audit(cred, "roll", "ok (file target: nothing to roll)", None);
            return Ok(());
        }
        let kube_err = |source| RotateError::Kube {
            credential: cred.name.clone(),
            source,
        };
        let w = Workloads::new(self.cluster(cred)?);
        let mut order: Vec<Workload> = cred.rollout.also.clone();
        let stamp_name = match secret {
            Some(s) => {
                for found in w.discover(&s.namespace, &s.name).await.map_err(kube_err)? {
                    if !order.contains(&found.workload) {
                        order.push(found.workload);
                    }
                }
                s.name.clone()
            }
            None => cred.name.clone(),
        };
        let key = workloads::stamp_key(&stamp_name);
        let timeout = cred.rollout.timeout.unwrap_or(ROLLOUT_TIMEOUT);
        let mut done = Vec::new();
        for workload in &order {
            let uid = w
                .stamp(workload, &key, &generation.to_string())
                .await
                .map_err(kube_err)?;
            self.audit(cred, "roll", &format!("restarting {workload}"), None);
            if !w.wait(workload, timeout).await.map_err(kube_err)? {
                self.audit(cred, "roll", &format!("failed {workload}"), None);
                let message = "credseal: rollout did not become healthy in time";
                self.event(workload, uid, "RolloutFailed", message, "Warning")
                    .await;
                return Err(RotateError::RolloutFailed {
                    credential: cred.name.clone(),
                    workload: workload.to_string(),
                    timeout_secs: timeout.as_secs(),
                    done: if done.is_empty() {
                        "none".into()
                    } else {
                        done.join(", ")
                    },
                });
            }
            let message = format!("credseal: restarted for {stamp_name} generation {generation}");
            self.event(workload, uid, "CredentialRolled", &message, "Normal")
                .await;
            done.push(workload.to_string());
        }
        self.audit(cred, "roll", &format!("ok {} workloads", done.len()), None);
        Ok(())
    }

    /// Records an Event on the target Secret, if the credential has one.
    pub(crate) async fn event_on_secret(
        &self,
        cred: &Credential,
        reason: &str,
        message: &str,
        type_: &str,
    ) {
        let Some(s) = cred.target.secret() else {
            return;
        };
        let Some(client) = self.kube.clone() else {
            return;
        };
        let (ns, name) = (s.namespace.clone(), s.name.clone());
        // The Secret's uid: the rotator may read the Secret it rotates.
        let uid = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .get_metadata_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.metadata.uid);
        if let Err(e) =
            crate::k8s::events::record(client, &ns, "Secret", &name, uid, reason, message, type_)
                .await
        {
            not_recorded(reason, &format!("Secret/{ns}/{name}"), &e);
        }
    }

    /// Records an Event on a workload (best effort: a missing permission is an audit line,
    /// not a failed rotation). Messages never carry a value.
    async fn event(
        &self,
        w: &Workload,
        uid: Option<String>,
        reason: &str,
        message: &str,
        type_: &str,
    ) {
        let Some(client) = self.kube.clone() else {
            return;
        };
        if let Err(e) = crate::k8s::events::record(
            client,
            &w.namespace,
            w.kind.as_str(),
            &w.name,
            uid,
            reason,
            message,
            type_,
        )
        .await
        {
            not_recorded(reason, &w.to_string(), &e);
        }
    }
}

/// An Event that could not be recorded: worth a warning, not a failed rotation.
fn not_recorded(reason: &str, object: &str, e: &crate::k8s::K8sError) {
    let error = crate::sops::error_text::with_causes(e);
    tracing::warn!(
        target: crate::log::AUDIT,
        reason,
        object,
        error,
        "event {reason} on {object} not recorded: {error}"
    );
}
