//! `cluster-key`: the cluster's age identities, kept in one Secret in Flux's `sops-age`
//! layout (every `*.agekey` entry an identity file), so Flux and credseal share it.
//!
//! Writes are replacements guarded by `resourceVersion`; a concurrent change is retried on
//! fresh data, never overwritten.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::k8s::K8sError;
use crate::k8s::error::{CONFLICT_ATTEMPTS, Conflict, retry_on_conflict};
use crate::k8s::secrets::Secrets;
use crate::secret::SecretString;
use crate::sops::keys::{KeyError, Keyring, generate_identity};

pub const DEFAULT_NAMESPACE: &str = "credseal";
/// Flux's conventional name, so `decryption.secretRef.name: sops-age` works unchanged.
pub const DEFAULT_NAME: &str = "sops-age";
const FIRST_KEY: &str = "age.agekey";

#[derive(Debug, thiserror::Error)]
pub enum ClusterKeyError {
    #[error(transparent)]
    Kube(#[from] K8sError),
    #[error("secret {0}: no such cluster key; create it with `credseal cluster-key init`")]
    Missing(String),
    #[error("secret {secret}, entry {entry}")]
    BadEntry {
        secret: String,
        entry: String,
        source: KeyError,
    },
    #[error("secret {secret}: no identity with recipient {recipient}")]
    UnknownRecipient { secret: String, recipient: String },
    #[error(
        "secret {0}: refusing to retire the last identity (files encrypted to it could no longer be decrypted)"
    )]
    LastIdentity(String),
    #[error("secret {0}: changed concurrently {CONFLICT_ATTEMPTS} times in a row; try again")]
    Contended(String),
}

/// One identity entry: its key in the Secret and its recipient (public key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub recipient: String,
}

pub struct ClusterKey {
    secrets: Secrets,
    namespace: String,
    name: String,
}

impl ClusterKey {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> ClusterKey {
        ClusterKey {
            secrets: Secrets::new(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn what(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Creates the Secret with one new identity unless it exists. Returns (created, entries).
    pub async fn init(&self, created_label: &str) -> Result<(bool, Vec<Entry>), ClusterKeyError> {
        if let Some(existing) = self.secrets.get(&self.name).await? {
            return Ok((false, self.entries(&existing)?));
        }
        let (identity, recipient) = generate_identity(created_label);
        let mut data = BTreeMap::new();
        data.insert(
            FIRST_KEY.to_owned(),
            ByteString(identity.expose().as_bytes().to_vec()),
        );
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "credseal".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Secret::default()
        };
        match self.secrets.create(&secret).await {
            Ok(_) => Ok((
                true,
                vec![Entry {
                    key: FIRST_KEY.into(),
                    recipient,
                }],
            )),
            // Someone else created it between our read and write: theirs stands.
            Err(e) if e.is_conflict() => {
                let existing = self
                    .secrets
                    .get(&self.name)
                    .await?
                    .ok_or_else(|| ClusterKeyError::Missing(self.what()))?;
                Ok((false, self.entries(&existing)?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The identities' recipients (never the private keys).
    pub async fn show(&self) -> Result<Vec<Entry>, ClusterKeyError> {
        let s = self
            .secrets
            .get(&self.name)
            .await?
            .ok_or_else(|| ClusterKeyError::Missing(self.what()))?;
        self.entries(&s)
    }

    /// Adds a new identity, keeping the old ones (decryption uses all). Returns the new entry.
    pub async fn add(
        &self,
        created_label: &str,
        entry_key: &str,
    ) -> Result<Entry, ClusterKeyError> {
        let (identity, recipient) = generate_identity(created_label);
        self.update(|data| {
            let mut key = entry_key.to_owned();
            let mut n = 2;
            while data.contains_key(&key) {
                key = format!("{}-{n}.agekey", entry_key.trim_end_matches(".agekey"));
                n += 1;
            }
            data.insert(
                key.clone(),
                ByteString(identity.expose().as_bytes().to_vec()),
            );
            Ok(Entry {
                key,
                recipient: recipient.clone(),
            })
        })
        .await
    }

    /// Removes the identity whose recipient is given, after files moved to another key.
    pub async fn retire(&self, recipient: &str) -> Result<Entry, ClusterKeyError> {
        let what = self.what();
        let entries_of =
            |data: &BTreeMap<String, ByteString>| -> Result<Vec<Entry>, ClusterKeyError> {
                entries_from(&what, data)
            };
        self.update(|data| {
            let entries = entries_of(data)?;
            let gone = entries
                .iter()
                .find(|e| e.recipient == recipient)
                .cloned()
                .ok_or_else(|| ClusterKeyError::UnknownRecipient {
                    secret: what.clone(),
                    recipient: recipient.to_owned(),
                })?;
            if entries.len() == 1 {
                return Err(ClusterKeyError::LastIdentity(what.clone()));
            }
            data.remove(&gone.key);
            Ok(gone)
        })
        .await
    }

    /// Read-modify-write guarded by `resourceVersion`, retried on conflicts.
    async fn update<T>(
        &self,
        mut change: impl FnMut(&mut BTreeMap<String, ByteString>) -> Result<T, ClusterKeyError>,
    ) -> Result<T, ClusterKeyError> {
        retry_on_conflict(
            async || {
                let mut s = self
                    .secrets
                    .get(&self.name)
                    .await?
                    .ok_or_else(|| ClusterKeyError::Missing(self.what()))?;
                let result = change(s.data.get_or_insert_with(BTreeMap::new))?;
                self.secrets.replace(&s).await?;
                Ok(result)
            },
            || ClusterKeyError::Contended(self.what()),
        )
        .await
    }

    fn entries(&self, s: &Secret) -> Result<Vec<Entry>, ClusterKeyError> {
        entries_from(&self.what(), s.data.as_ref().unwrap_or(&BTreeMap::new()))
    }
}

impl Conflict for ClusterKeyError {
    fn is_conflict(&self) -> bool {
        matches!(self, ClusterKeyError::Kube(k) if k.is_conflict())
    }
}

fn entries_from(
    secret: &str,
    data: &BTreeMap<String, ByteString>,
) -> Result<Vec<Entry>, ClusterKeyError> {
    let mut out = Vec::new();
    for (key, value) in data.iter().filter(|(k, _)| k.ends_with(".agekey")) {
        let bad = |source| ClusterKeyError::BadEntry {
            secret: secret.to_owned(),
            entry: key.clone(),
            source,
        };
        let text = SecretString::new(String::from_utf8(value.0.clone()).unwrap_or_default());
        let mut ring = Keyring::new();
        ring.add_identities(text.expose(), key).map_err(bad)?;
        for recipient in ring.recipients() {
            out.push(Entry {
                key: key.clone(),
                recipient,
            });
        }
    }
    Ok(out)
}
