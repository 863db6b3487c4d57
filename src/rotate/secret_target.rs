//! The Kubernetes target: the password lives in a Secret. The pending record is a companion
//! Secret owned by it (garbage-collected with it), written before anything else changes; the
//! commit is an update guarded by `resourceVersion` that also bumps the generation annotation
//! the deploy hook's no-downgrade rule reads.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::k8s::K8sError;
use crate::k8s::error::{CONFLICT_ATTEMPTS, Conflict, retry_on_conflict};
use crate::k8s::secrets::Secrets;
use crate::manifest::{GENERATION_ANNOTATION, ROTATED_AT_ANNOTATION, ROTATED_KEYS_ANNOTATION};
use crate::rotate::plan::SecretRef;
use crate::rotate::store::{Current, Pending, Phase};
use crate::secret::SecretString;
use crate::sops::tree::Timestamp;

pub const PHASE: &str = "credseal.dev/phase";
pub const CREDENTIAL: &str = "credseal.dev/credential";
pub const RETIRE_AFTER: &str = "credseal.dev/retire-after";
/// The field manager of the pending record (server-side apply).
const PENDING_MANAGER: &str = "credseal-rotate";

#[derive(Debug, thiserror::Error)]
pub enum SecretTargetError {
    #[error(transparent)]
    Kube(#[from] K8sError),
    #[error("secret {0}: not found")]
    Missing(String),
    #[error("secret {what}: {problem}")]
    Shape { what: String, problem: String },
    #[error("secret {0}: changed concurrently {CONFLICT_ATTEMPTS} times in a row")]
    Contended(String),
    /// Something else holds the pending record's name.
    #[error(
        "secret {what}: not a credseal pending record ({problem}); refusing to use it, nothing was changed"
    )]
    NotOurs { what: String, problem: String },
    /// A pending record this run did not write: never overwritten.
    #[error(
        "secret {0}: a pending record appeared that this run did not write (another writer outside the rotation lock?); refusing to overwrite it, nothing was changed"
    )]
    ForeignPending(String),
}

impl Conflict for SecretTargetError {
    fn is_conflict(&self) -> bool {
        matches!(self, SecretTargetError::Kube(e) if e.is_conflict())
    }
}

pub struct SecretTarget {
    client: kube::Client,
    secrets: Secrets,
    spec: SecretRef,
}

fn text(data: &BTreeMap<String, ByteString>, key: &str) -> Option<String> {
    data.get(key)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

impl SecretTarget {
    pub fn new(client: kube::Client, spec: SecretRef) -> SecretTarget {
        SecretTarget {
            secrets: Secrets::new(client.clone(), &spec.namespace),
            client,
            spec,
        }
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The target Secret's namespace and name.
    pub fn id(&self) -> (&str, &str) {
        (&self.spec.namespace, &self.spec.name)
    }

    fn what(&self) -> String {
        format!("{}/{}", self.spec.namespace, self.spec.name)
    }

    pub fn pending_name(&self) -> String {
        format!("{}-credseal-pending", self.spec.name)
    }

    async fn get(&self) -> Result<Secret, SecretTargetError> {
        self.secrets
            .get(&self.spec.name)
            .await?
            .ok_or_else(|| SecretTargetError::Missing(self.what()))
    }

    pub async fn read(&self) -> Result<Current, SecretTargetError> {
        let s = self.get().await?;
        let data = s.data.unwrap_or_default();
        let shape = |problem: String| SecretTargetError::Shape {
            what: self.what(),
            problem,
        };
        let password = text(&data, &self.spec.key)
            .ok_or_else(|| shape(format!("no UTF-8 value under key {:?}", self.spec.key)))?;
        let username = match &self.spec.username_key {
            Some(k) => Some(
                text(&data, k).ok_or_else(|| shape(format!("no UTF-8 value under key {k:?}")))?,
            ),
            None => None,
        };
        let annotations = s.metadata.annotations.unwrap_or_default();
        Ok(Current {
            password: SecretString::new(password),
            username,
            generation: annotations
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            rotated_at: annotations
                .get(ROTATED_AT_ANNOTATION)
                .and_then(|t| Timestamp::parse_rfc3339(t)),
        })
    }

    pub async fn pending(&self) -> Result<Option<Pending>, SecretTargetError> {
        let Some(s) = self.secrets.get(&self.pending_name()).await? else {
            return Ok(None);
        };
        self.check_ours(&s, &self.get().await?)?;
        let data = s.data.unwrap_or_default();
        let annotations = s.metadata.annotations.unwrap_or_default();
        let bad = |problem: &str| SecretTargetError::Shape {
            what: format!("{}/{}", self.spec.namespace, self.pending_name()),
            problem: problem.to_owned(),
        };
        Ok(Some(Pending {
            credential: annotations
                .get(CREDENTIAL)
                .cloned()
                .ok_or_else(|| bad("no credential annotation"))?,
            phase: annotations
                .get(PHASE)
                .and_then(|p| Phase::parse(p))
                .ok_or_else(|| bad("bad phase annotation"))?,
            password: SecretString::new(text(&data, "password").ok_or_else(|| bad("no password"))?),
            username: text(&data, "username"),
            previous_username: text(&data, "previousUsername"),
            previous_password: text(&data, "previousPassword").map(SecretString::new),
            generation: annotations
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok())
                .ok_or_else(|| bad("bad generation annotation"))?,
            retire_after: annotations
                .get(RETIRE_AFTER)
                .map(|t| {
                    Timestamp::parse_rfc3339(t).ok_or_else(|| bad("bad retire-after annotation"))
                })
                .transpose()?,
        }))
    }

    /// Writes the companion Secret (owned by the target, so it goes with it) by server-side
    /// apply of that one name, so the Role grants `patch` on it instead of `create` on every
    /// Secret. The first write is unforced: a record someone else created meanwhile is a
    /// conflict, never overwritten. An existing one must be ours: `Opaque`, owned by the target.
    pub async fn save_pending(&self, p: &Pending) -> Result<(), SecretTargetError> {
        let owner = self.get().await?;
        let mut data = BTreeMap::new();
        data.insert(
            "password".to_owned(),
            ByteString(p.password.expose().as_bytes().to_vec()),
        );
        if let Some(u) = &p.username {
            data.insert("username".to_owned(), ByteString(u.as_bytes().to_vec()));
        }
        if let Some(old) = &p.previous_password {
            data.insert(
                "previousPassword".to_owned(),
                ByteString(old.expose().as_bytes().to_vec()),
            );
        }
        if let Some(u) = &p.previous_username {
            data.insert(
                "previousUsername".to_owned(),
                ByteString(u.as_bytes().to_vec()),
            );
        }
        let mut annotations = BTreeMap::from([
            (CREDENTIAL.to_owned(), p.credential.clone()),
            (PHASE.to_owned(), p.phase.as_str().to_owned()),
            (GENERATION_ANNOTATION.to_owned(), p.generation.to_string()),
        ]);
        if let Some(t) = p.retire_after {
            annotations.insert(RETIRE_AFTER.to_owned(), t.to_rfc3339());
        }
        let pending_what = format!("{}/{}", self.spec.namespace, self.pending_name());
        let attempt = async || {
            let existing = self.secrets.get(&self.pending_name()).await?;
            if let Some(e) = &existing {
                self.check_ours(e, &owner)?;
            }
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(self.pending_name()),
                    namespace: Some(self.spec.namespace.clone()),
                    annotations: Some(annotations.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_owned(),
                        "credseal".to_owned(),
                    )])),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Secret".into(),
                        name: self.spec.name.clone(),
                        uid: owner.metadata.uid.clone().unwrap_or_default(),
                        ..OwnerReference::default()
                    }]),
                    resource_version: existing
                        .as_ref()
                        .and_then(|e| e.metadata.resource_version.clone()),
                    ..ObjectMeta::default()
                },
                type_: Some("Opaque".into()),
                data: Some(data.clone()),
                ..Secret::default()
            };
            // Unforced, a record someone else created meanwhile conflicts: theirs, never
            // retried over. Forced over our own record, a conflict is a concurrent update.
            let forced = existing.is_some();
            match self
                .secrets
                .apply_as(&secret, PENDING_MANAGER, forced, false)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_conflict() && !forced => {
                    Err(SecretTargetError::ForeignPending(pending_what.clone()))
                }
                Err(e) => Err(e.into()),
            }
        };
        retry_on_conflict(attempt, || SecretTargetError::Contended(self.what())).await
    }

    /// A pending record credseal wrote: `Opaque` and owned by the target Secret. Anything
    /// else under that name (a service-account token, another program's Secret) is refused.
    fn check_ours(&self, found: &Secret, owner: &Secret) -> Result<(), SecretTargetError> {
        let what = format!("{}/{}", self.spec.namespace, self.pending_name());
        let not_ours = |problem: String| SecretTargetError::NotOurs {
            what: what.clone(),
            problem,
        };
        let type_ = found.type_.as_deref().unwrap_or("Opaque");
        if type_ != "Opaque" {
            return Err(not_ours(format!("its type is {type_}, not Opaque")));
        }
        let owned = found
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Secret" && Some(&o.uid) == owner.metadata.uid.as_ref());
        if !owned {
            return Err(not_ours(format!(
                "it is not owned by secret {}",
                self.what()
            )));
        }
        Ok(())
    }

    /// Writes the new password (and username), bumps the generation and rotation time, with
    /// the resourceVersion read: a concurrent writer makes it retry on fresh data, never lose
    /// the other's change. A rerun finds the value set and changes nothing.
    pub async fn commit(&self, p: &Pending, now: &Timestamp) -> Result<(), SecretTargetError> {
        let attempt = async || {
            let mut s = self.get().await?;
            let data = s.data.get_or_insert_with(BTreeMap::new);
            let same = text(data, &self.spec.key).as_deref() == Some(p.password.expose())
                && match (&self.spec.username_key, &p.username) {
                    (Some(k), Some(u)) => text(data, k).as_deref() == Some(u.as_str()),
                    _ => true,
                };
            if same {
                return Ok(());
            }
            data.insert(
                self.spec.key.clone(),
                ByteString(p.password.expose().as_bytes().to_vec()),
            );
            if let (Some(k), Some(u)) = (&self.spec.username_key, &p.username) {
                data.insert(k.clone(), ByteString(u.as_bytes().to_vec()));
            }
            let annotations = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
            annotations.insert(GENERATION_ANNOTATION.to_owned(), p.generation.to_string());
            annotations.insert(ROTATED_AT_ANNOTATION.to_owned(), now.to_rfc3339());
            // What the deploy hook keeps from the cluster while git is behind.
            let rotated: Vec<&str> = std::iter::once(self.spec.key.as_str())
                .chain(self.spec.username_key.as_deref())
                .collect();
            annotations.insert(ROTATED_KEYS_ANNOTATION.to_owned(), rotated.join(","));
            s.metadata.managed_fields = None;
            self.secrets.replace(&s).await?;
            Ok(())
        };
        retry_on_conflict(attempt, || SecretTargetError::Contended(self.what())).await
    }

    pub async fn clear_pending(&self) -> Result<(), SecretTargetError> {
        Ok(self.secrets.delete(&self.pending_name()).await?)
    }
}
