//! `apply`, the deploy hook: decrypt in memory and server-side-apply Secret objects. The one
//! place where the SOPS format meets Kubernetes Secret objects.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::k8s::K8sError;
use crate::k8s::secrets::Secrets;
use crate::manifest::{
    self, GENERATION_ANNOTATION, ROTATED_AT_ANNOTATION, ROTATED_KEYS_ANNOTATION, ScopeError,
    SecretValues,
};
use crate::sops::keys::Keyring;
use crate::sops::store::Format;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A file that does not decrypt, is not a Secret, or is bound to another namespace.
    #[error("{file}")]
    Scope { file: PathBuf, source: ScopeError },
    #[error("{file}: annotation {GENERATION_ANNOTATION} is not a number")]
    BadGeneration { file: PathBuf },
    /// The live Secret was rotated after the file was encrypted, by a rotator that did not say
    /// which keys it owns (older than `credseal.dev/rotated-keys`).
    #[error(
        "secret {namespace}/{name}: the cluster has generation {live} (rotated after this file was encrypted, generation {file_generation}); \
         refusing to downgrade. Bring {file} up to date: run the rotation with a file target, or \
         `credseal set` the current value and set metadata.annotations[\"{GENERATION_ANNOTATION}\"] to \"{live}\""
    )]
    Downgrade {
        file: PathBuf,
        namespace: String,
        name: String,
        live: u64,
        file_generation: u64,
    },
    #[error(transparent)]
    Kube(#[from] K8sError),
}

/// One Secret to apply, decrypted in memory.
pub struct Item {
    pub file: PathBuf,
    pub values: SecretValues,
    pub generation: u64,
}

/// Decrypts a file (MAC verified) and returns its Secrets, all bound to `namespace`.
pub fn decrypt_file(
    file: PathBuf,
    bytes: &[u8],
    ring: &Keyring,
    namespace: &str,
) -> Result<Vec<Item>, ApplyError> {
    let found = manifest::open_scoped(bytes, Format::from_path(&file), ring, namespace).map_err(
        |source| ApplyError::Scope {
            file: file.clone(),
            source,
        },
    )?;
    let mut items = Vec::new();
    for values in found {
        let generation = match values
            .annotations
            .iter()
            .find(|(k, _)| k == GENERATION_ANNOTATION)
        {
            None => 0,
            Some((_, v)) => v
                .parse()
                .map_err(|_| ApplyError::BadGeneration { file: file.clone() })?,
        };
        items.push(Item {
            file: file.clone(),
            values,
            generation,
        });
    }
    Ok(items)
}

/// The generation recorded on a live Secret (0 when absent or unreadable).
pub fn live_generation(secret: &Secret) -> u64 {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GENERATION_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The Secret object for server-side apply: identity, labels, annotations, type, and every
/// value under `data`.
pub fn to_object(v: &SecretValues) -> Secret {
    let map = |pairs: &[(String, String)]| -> Option<BTreeMap<String, String>> {
        (!pairs.is_empty()).then(|| pairs.iter().cloned().collect())
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(v.name.clone()),
            namespace: Some(v.namespace.clone()),
            labels: map(&v.labels),
            annotations: map(&v.annotations),
            ..ObjectMeta::default()
        },
        type_: v.secret_type.clone(),
        data: Some(
            v.values
                .iter()
                .map(|(k, b)| (k.clone(), ByteString(b.expose().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// What happened to one Secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// Applied, keeping the values a later rotation set (the file is older than the cluster).
    KeptRotated {
        keys: Vec<String>,
        generation: u64,
    },
}

/// The Secret to apply for `item` when the cluster holds a later rotation: the file's values,
/// except the rotated keys, whose live values stay; the live generation. `None` when the live
/// Secret does not say which keys were rotated.
fn keeping_rotated(item: &Item, live: &Secret, generation: u64) -> Option<(Secret, Vec<String>)> {
    let annotations = live.metadata.annotations.as_ref()?;
    let keys: Vec<String> = annotations
        .get(ROTATED_KEYS_ANNOTATION)?
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let live_data = live.data.clone().unwrap_or_default();
    let mut object = to_object(&item.values);
    let data = object.data.get_or_insert_with(BTreeMap::new);
    let mut kept = Vec::new();
    for k in &keys {
        if let Some(v) = live_data.get(k) {
            data.insert(k.clone(), v.clone());
            kept.push(k.clone());
        }
    }
    let a = object
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    a.insert(GENERATION_ANNOTATION.to_owned(), generation.to_string());
    Some((object, kept))
}

/// Plans every item against the cluster first, then applies them in order; nothing is written
/// when any check fails. A Secret rotated after its file was encrypted keeps the rotated values
/// (everything else is applied), unless `force`. Every apply of an existing Secret is
/// conditional on the resourceVersion read, so a rotation committed in between is a conflict
/// (rerun), never overwritten by the stale file.
pub async fn apply_all(
    client: &kube::Client,
    items: &[Item],
    dry_run: bool,
    force: bool,
) -> Result<Vec<Outcome>, ApplyError> {
    let mut planned = Vec::new();
    for item in items {
        let api = Secrets::new(client.clone(), &item.values.namespace);
        let current = api.get(&item.values.name).await?;
        let mut object = to_object(&item.values);
        let mut kept = None;
        if let Some(live) = &current {
            let g = live_generation(live);
            if g > item.generation && !force {
                let Some((keeping, keys)) = keeping_rotated(item, live, g) else {
                    return Err(ApplyError::Downgrade {
                        file: item.file.clone(),
                        namespace: item.values.namespace.clone(),
                        name: item.values.name.clone(),
                        live: g,
                        file_generation: item.generation,
                    });
                };
                object = keeping;
                kept = Some((keys, g));
            }
            object.metadata.resource_version = live.metadata.resource_version.clone();
        }
        planned.push((object, current, kept));
    }
    let mut outcomes = Vec::new();
    for (item, (object, current, kept)) in items.iter().zip(planned) {
        let api = Secrets::new(client.clone(), &item.values.namespace);
        let applied = api.apply(&object, dry_run).await?;
        outcomes.push(match (current, kept) {
            (_, Some((keys, generation))) => Outcome::KeptRotated { keys, generation },
            (None, None) => Outcome::Created,
            (Some(c), None) if c.metadata.resource_version == applied.metadata.resource_version => {
                Outcome::Unchanged
            }
            (Some(_), None) => Outcome::Updated,
        });
    }
    Ok(outcomes)
}

/// What `pull` changed in one Secret document.
#[derive(Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The file is at the cluster's generation (or ahead of it).
    UpToDate,
    /// The rotated keys now hold the cluster's values, and the generation annotation follows.
    Updated { keys: Vec<String>, generation: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(
        "secret {0}: rotated, but it does not name its rotated keys ({ROTATED_KEYS_ANNOTATION}); rotate it once more with this credseal, or set the values by hand"
    )]
    NoRotatedKeys(String),
    #[error("secret {secret}")]
    Path {
        secret: String,
        source: crate::sops::path::PathError,
    },
}

/// Brings the values a rotation set on `live` into the Secret document `doc` (decrypted), so
/// git catches up with the cluster: only the rotated keys and the generation and rotated-at
/// annotations change, so every other value keeps its ciphertext when the file is written back. A value
/// lands where the file keeps it: `stringData` as text, `data` as base64.
pub fn pull_values(doc: &mut crate::sops::tree::Map, live: &Secret) -> Result<Pulled, PullError> {
    use crate::sops::path::{self, Step};
    use crate::sops::tree::Node;
    use base64::Engine as _;
    let what = format!(
        "{}/{}",
        live.metadata.namespace.clone().unwrap_or_default(),
        live.metadata.name.clone().unwrap_or_default()
    );
    let file_generation = doc
        .get("metadata")
        .and_then(Node::as_map)
        .and_then(|m| m.get("annotations"))
        .and_then(Node::as_map)
        .and_then(|a| a.get(GENERATION_ANNOTATION))
        .and_then(Node::as_str)
        .and_then(|g| g.parse::<u64>().ok())
        .unwrap_or(0);
    let generation = live_generation(live);
    if generation <= file_generation {
        return Ok(Pulled::UpToDate);
    }
    let keys: Vec<String> = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_KEYS_ANNOTATION))
        .ok_or_else(|| PullError::NoRotatedKeys(what.clone()))?
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    let data = live.data.clone().unwrap_or_default();
    fn in_field(doc: &crate::sops::tree::Map, field: &str, key: &str) -> bool {
        doc.get(field)
            .and_then(Node::as_map)
            .is_some_and(|m| m.get(key).is_some())
    }
    let mut pulled = Vec::new();
    let path_err = |source| PullError::Path {
        secret: what.clone(),
        source,
    };
    for key in keys {
        let Some(bytes) = data.get(&key) else {
            continue;
        };
        let text = std::str::from_utf8(&bytes.0).ok();
        let (field, value) = match text {
            Some(t) if in_field(doc, "stringData", &key) || !in_field(doc, "data", &key) => {
                ("stringData", t.to_owned())
            }
            _ => (
                "data",
                base64::engine::general_purpose::STANDARD.encode(&bytes.0),
            ),
        };
        let steps = [Step::Key(field.to_owned()), Step::Key(key.clone())];
        let value = Node::Str(crate::secret::SecretString::new(value));
        path::set(doc, &steps, value).map_err(path_err)?;
        pulled.push(key);
    }
    let steps = [
        Step::Key("metadata".into()),
        Step::Key("annotations".into()),
        Step::Key(GENERATION_ANNOTATION.into()),
    ];
    let value = Node::Str(crate::secret::SecretString::new(generation.to_string()));
    path::set(doc, &steps, value).map_err(path_err)?;
    // When it was rotated follows too: the sidecar exports it as the rotation time an alert on
    // the credential's age reads.
    if let Some(at) = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROTATED_AT_ANNOTATION))
    {
        let steps = [
            Step::Key("metadata".into()),
            Step::Key("annotations".into()),
            Step::Key(ROTATED_AT_ANNOTATION.into()),
        ];
        let value = Node::Str(crate::secret::SecretString::new(at.clone()));
        path::set(doc, &steps, value).map_err(path_err)?;
    }
    Ok(Pulled::Updated {
        keys: pulled,
        generation,
    })
}
