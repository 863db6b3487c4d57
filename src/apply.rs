//! `apply`, the deploy hook: decrypt in memory and server-side-apply Secret objects. The one
//! place where the SOPS format meets Kubernetes Secret objects.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;

use crate::k8s::K8sError;
use crate::k8s::secrets::Secrets;
use crate::manifest::{self, ScopeError, SecretValues};
use crate::sops::keys::Keyring;
use crate::sops::store::Format;

/// Bumped by the rotator on every committed rotation; a file older than the live Secret must
/// not overwrite it.
pub const GENERATION_ANNOTATION: &str = "credseal.dev/generation";
/// The keys of a Secret the rotator sets (`password,username`): what `apply` keeps from the
/// cluster while git is behind.
pub const ROTATED_KEYS_ANNOTATION: &str = "credseal.dev/rotated-keys";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A file that does not decrypt, is not a Secret, or is bound to another namespace.
    #[error("{file}: {source}")]
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
    #[error("{0}")]
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
