//! A `coordination.k8s.io/v1` Lease as a lock held by one run at a time, the way client-go's
//! leader election uses one: created create-only, renewed by its holder before it expires, taken
//! over by someone else only once it has expired (an update guarded by the resourceVersion
//! read, so two takers cannot both win), and deleted by its holder at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};

use crate::k8s::error::K8sError;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds the lock and it has not expired.
    #[error(
        "lease {namespace}/{name} is held by {holder} (renewed {renewed}, expires {expires}); nothing was changed: that run releases it when it ends, or it expires if that run died"
    )]
    Held {
        namespace: String,
        name: String,
        holder: String,
        renewed: String,
        expires: String,
    },
    /// The holder could not renew in time and someone else may have taken over.
    #[error(
        "lease {namespace}/{name} was lost (not renewed in time or taken over); stopped before the next change: rerun to resume"
    )]
    Lost { namespace: String, name: String },
    #[error(transparent)]
    Kube(#[from] K8sError),
}

/// A held Lease; renewed in the background until released.
pub struct Lease {
    api: Api<LeaseObject>,
    namespace: String,
    name: String,
    holder: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

fn object(name: &str, holder: &str, duration: Duration, transitions: i32) -> LeaseObject {
    let now = Timestamp::now();
    LeaseObject {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "credseal".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
            acquire_time: Some(micro(now)),
            renew_time: Some(micro(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// When a Lease's holder stops owning it: its last renewal plus its duration.
pub fn expiry(spec: &LeaseSpec) -> Option<Timestamp> {
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    renewed.checked_add(jiff_seconds(secs)).ok()
}

fn jiff_seconds(secs: i64) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::from_secs(secs)
}

impl Lease {
    /// Takes the Lease `namespace/name` for `holder`, or says who holds it.
    pub async fn acquire(
        client: kube::Client,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
    ) -> Result<Lease, LeaseError> {
        let api: Api<LeaseObject> = Api::namespaced(client, namespace);
        let what = format!("lease {namespace}/{name}");
        match api
            .create(&PostParams::default(), &object(name, holder, duration, 0))
            .await
        {
            Ok(created) => return Ok(Lease::held(api, namespace, name, created, duration)),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(K8sError::from_kube(what, e).into()),
        }
        let current = api
            .get(name)
            .await
            .map_err(|e| K8sError::from_kube(what.clone(), e))?;
        let spec = current.spec.clone().unwrap_or_default();
        let expires = expiry(&spec);
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !free && expires.is_some_and(|t| t > Timestamp::now()) {
            return Err(LeaseError::Held {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                holder: spec.holder_identity.unwrap_or_default(),
                renewed: spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
                expires: expires.map(|t| t.to_string()).unwrap_or_default(),
            });
        }
        // Expired or released: take it over, conditional on the version read, so of two runs
        // taking it over at once one gets a conflict.
        let mut next = object(
            name,
            holder,
            duration,
            spec.lease_transitions.unwrap_or(0) + 1,
        );
        next.metadata.resource_version = current.metadata.resource_version.clone();
        match api.replace(name, &PostParams::default(), &next).await {
            Ok(taken) => Ok(Lease::held(api, namespace, name, taken, duration)),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(LeaseError::Held {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                holder: "another run that took it over just now".to_owned(),
                renewed: Timestamp::now().to_string(),
                expires: String::new(),
            }),
            Err(e) => Err(K8sError::from_kube(what, e).into()),
        }
    }

    fn held(
        api: Api<LeaseObject>,
        namespace: &str,
        name: &str,
        mut lease: LeaseObject,
        duration: Duration,
    ) -> Lease {
        let lost = Arc::new(AtomicBool::new(false));
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        let renewer = {
            let (api, name, lost) = (api.clone(), name.to_owned(), lost.clone());
            tokio::spawn(async move {
                // client-go renews at a third of the duration, well before it lapses.
                let every = (duration / 3).max(Duration::from_millis(200));
                loop {
                    tokio::time::sleep(every).await;
                    if let Some(spec) = lease.spec.as_mut() {
                        spec.renew_time = Some(micro(Timestamp::now()));
                    }
                    lease.metadata.managed_fields = None;
                    match api.replace(&name, &PostParams::default(), &lease).await {
                        Ok(renewed) => lease = renewed,
                        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A transient error: try again at the next tick, before expiry.
                        Err(_) => {}
                    }
                }
            })
        };
        Lease {
            api,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            holder,
            lost,
            renewer,
        }
    }

    /// Whether the Lease is still ours: check before every change.
    pub fn ensure_held(&self) -> Result<(), LeaseError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(LeaseError::Lost {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Stops renewing and deletes the Lease, only if it is still the one we hold.
    pub async fn release(self) -> Result<(), LeaseError> {
        self.renewer.abort();
        if self.lost.load(Ordering::SeqCst) {
            return Ok(());
        }
        let current = match self.api.get_opt(&self.name).await {
            Ok(Some(c))
                if c.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                    == Some(self.holder.as_str()) =>
            {
                c
            }
            // Gone, or someone else's now: nothing of ours to release.
            Ok(_) => return Ok(()),
            Err(e) => {
                return Err(K8sError::from_kube(
                    format!("lease {}/{}", self.namespace, self.name),
                    e,
                )
                .into());
            }
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: current.metadata.resource_version.clone(),
                uid: current.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(K8sError::from_kube(
                format!("lease {}/{}", self.namespace, self.name),
                e,
            )
            .into()),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // An early return keeps the Lease until it expires; it is never renewed past us.
        self.renewer.abort();
    }
}
