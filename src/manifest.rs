//! Kubernetes Secret documents: recognising them, reading their values, and credseal's
//! defaults for them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::secret::SecretBytes;
use crate::sops::file::{EncryptedFile, SopsError};
use crate::sops::keys::Keyring;
use crate::sops::store::Format;
use crate::sops::tree::{Map, Node, Tree};

/// What credseal encrypts in a Secret when no rule or flag says otherwise: the values only, so
/// `metadata` stays readable in reviews and diffs (and is still covered by the MAC).
pub const SECRET_ENCRYPTED_REGEX: &str = "^(data|stringData)$";

/// Bumped by `rotate` on every committed rotation (no annotation: never rotated, generation 0).
/// `apply` keeps what a newer generation in the cluster owns, `pull` brings a file up to it,
/// and the sidecar's `/metrics` exports it.
pub const GENERATION_ANNOTATION: &str = "credseal.dev/generation";
/// When the rotation of that generation was committed, RFC 3339.
pub const ROTATED_AT_ANNOTATION: &str = "credseal.dev/rotated-at";
/// The keys of a Secret the rotator sets (`password,username`): what `apply` keeps from the
/// cluster while git is behind, and what `pull` copies back.
pub const ROTATED_KEYS_ANNOTATION: &str = "credseal.dev/rotated-keys";

/// Whether a document is a Kubernetes Secret (`kind: Secret`, any apiVersion).
pub fn is_secret(doc: &Map) -> bool {
    matches!(doc.get("kind"), Some(Node::Str(k)) if k.expose() == "Secret")
}

/// Whether a document is a list of objects under `items` (`kind: List`, `SecretList`, …), as
/// `kubectl get -o yaml` writes them: Secrets inside one are Secrets all the same.
pub fn is_list(doc: &Map) -> bool {
    matches!(doc.get("kind"), Some(Node::Str(k)) if k.expose().ends_with("List"))
}

/// Whether every document of a file is a Secret (then the Secret default applies).
pub fn all_secrets(tree: &Tree) -> bool {
    !tree.documents.is_empty() && tree.documents.iter().all(is_secret)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("document {0} is not a Kubernetes Secret (kind: Secret)")]
    NotASecret(usize),
    #[error("document {0} has no metadata.name")]
    NoName(usize),
    /// The API server would refuse the name, and materialize uses it as a directory name.
    #[error(
        "document {index}: metadata.name {name:?} is not a valid Secret name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
    )]
    BadName { index: usize, name: String },
    #[error(
        "Secret {name:?}: metadata.namespace {namespace:?} is not a valid namespace (lowercase letters, digits and '-', at most 63 characters)"
    )]
    BadNamespace { name: String, namespace: String },
    #[error("Secret {0:?} has no metadata.namespace; set it so the file is bound to one namespace")]
    NoNamespace(String),
    #[error("Secret {name:?}: {field} is not a mapping of strings")]
    BadValues { name: String, field: &'static str },
    #[error("Secret {name:?}: data[{key:?}] is not valid base64")]
    BadBase64 { name: String, key: String },
    #[error(
        "Secret {name:?}: key {key:?} is not a valid Secret key (letters, digits, '-', '_', '.')"
    )]
    BadKey { name: String, key: String },
}

/// A decrypted Secret's identity and values (`data` base64-decoded, `stringData` as bytes;
/// `stringData` wins over `data` for the same key, as the API server merges them).
#[derive(Debug)]
pub struct SecretValues {
    pub name: String,
    pub namespace: String,
    /// `type` (e.g. `Opaque`, `kubernetes.io/basic-auth`), if set.
    pub secret_type: Option<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    pub values: Vec<(String, SecretBytes)>,
}

impl SecretValues {
    pub fn get(&self, key: &str) -> Option<&SecretBytes> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

fn metadata_field<'a>(doc: &'a Map, field: &str) -> Option<&'a str> {
    doc.get("metadata")?.as_map()?.get(field)?.as_str()
}

/// Reads the document at `index` as a Secret.
pub fn secret_values(doc: &Map, index: usize) -> Result<SecretValues, ManifestError> {
    if !is_secret(doc) {
        return Err(ManifestError::NotASecret(index));
    }
    let name = metadata_field(doc, "name")
        .ok_or(ManifestError::NoName(index))?
        .to_owned();
    if !valid_secret_name(&name) {
        return Err(ManifestError::BadName { index, name });
    }
    let namespace = metadata_field(doc, "namespace")
        .ok_or_else(|| ManifestError::NoNamespace(name.clone()))?
        .to_owned();
    if !valid_namespace(&namespace) {
        return Err(ManifestError::BadNamespace { name, namespace });
    }
    let mut values: Vec<(String, SecretBytes)> = Vec::new();
    for (field, decode) in [("data", true), ("stringData", false)] {
        let Some(node) = doc.get(field) else { continue };
        let map = match node {
            Node::Null => continue,
            Node::Map(m) => m,
            _ => return Err(ManifestError::BadValues { name, field }),
        };
        for (key, value) in map.pairs() {
            if !valid_key(key) {
                return Err(ManifestError::BadKey {
                    name,
                    key: key.to_owned(),
                });
            }
            let text = match value {
                Node::Str(s) => s.expose(),
                _ => return Err(ManifestError::BadValues { name, field }),
            };
            let bytes = if decode {
                SecretBytes::new(
                    B64.decode(text.trim())
                        .map_err(|_| ManifestError::BadBase64 {
                            name: name.clone(),
                            key: key.to_owned(),
                        })?,
                )
            } else {
                SecretBytes::new(text.as_bytes().to_vec())
            };
            values.retain(|(k, _)| k != key);
            values.push((key.to_owned(), bytes));
        }
    }
    let string_map = |field: &str| -> Vec<(String, String)> {
        doc.get("metadata")
            .and_then(Node::as_map)
            .and_then(|m| m.get(field))
            .and_then(Node::as_map)
            .map(|m| {
                m.pairs()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.to_owned(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(SecretValues {
        secret_type: doc.get("type").and_then(Node::as_str).map(str::to_owned),
        labels: string_map("labels"),
        annotations: string_map("annotations"),
        name,
        namespace,
        values,
    })
}

/// Why an encrypted Secret file may not be used in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(transparent)]
    Decrypt(#[from] SopsError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Bound to another namespace: copying an encrypted Secret elsewhere does not make it
    /// decrypt there.
    #[error("Secret {secret:?} belongs to namespace {found:?}, not {expected:?}; refused")]
    WrongNamespace {
        secret: String,
        found: String,
        expected: String,
    },
    /// With `mac_only_encrypted` the clear metadata (and so the namespace) is not authenticated.
    #[error(
        "mac_only_encrypted files do not authenticate metadata.namespace; re-encrypt without it"
    )]
    NamespaceNotAuthenticated,
}

/// Decrypts a file of Secret documents (MAC verified) and returns them, each bound by its
/// authenticated `metadata.namespace` to `namespace`: the check `materialize` and `apply` share.
pub fn open_scoped(
    bytes: &[u8],
    format: Format,
    ring: &Keyring,
    namespace: &str,
) -> Result<Vec<SecretValues>, ScopeError> {
    let file = EncryptedFile::parse(bytes, format)?;
    if file.metadata.mac_only_encrypted {
        return Err(ScopeError::NamespaceNotAuthenticated);
    }
    let opened = file.open(ring, false)?;
    let mut out = Vec::new();
    for (i, doc) in opened.tree.documents.iter().enumerate() {
        let values = secret_values(doc, i)?;
        if values.namespace != namespace {
            return Err(ScopeError::WrongNamespace {
                secret: values.name,
                found: values.namespace,
                expected: namespace.to_owned(),
            });
        }
        out.push(values);
    }
    Ok(out)
}

/// The API server's rule for Secret keys (`IsConfigMapKey`): `[-._a-zA-Z0-9]+`, at most 253
/// bytes, not `.` or `..`, no `..` prefix. That also makes a key a safe file name: no `/`, and
/// never one of the `..`-names of an atomically projected volume.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The API server's rule for object names such as a Secret's (`IsDNS1123Subdomain`): dot-separated
/// labels of lowercase letters, digits and `-`, each starting and ending with a letter or digit;
/// at most 253 bytes. Never a path: no `/`, never `.`, `..` or a `..` prefix.
pub fn valid_secret_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(|label| dns_label(label, 253))
}

/// The API server's rule for namespaces (`IsDNS1123Label`): at most 63 bytes.
pub fn valid_namespace(namespace: &str) -> bool {
    dns_label(namespace, 63)
}

fn dns_label(label: &str, max: usize) -> bool {
    let b = label.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= max
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, ns: Option<&str>) -> Map {
        let mut meta = Map::new();
        meta.insert("name", Node::str(name));
        if let Some(ns) = ns {
            meta.insert("namespace", Node::str(ns));
        }
        let mut data = Map::new();
        data.insert("token", Node::str("c2VjcmV0"));
        data.insert("user", Node::str("b2xk"));
        let mut string_data = Map::new();
        string_data.insert("user", Node::str("new"));
        let mut doc = Map::new();
        doc.insert("kind", Node::str("Secret"));
        doc.insert("metadata", Node::Map(meta));
        doc.insert("data", Node::Map(data));
        doc.insert("stringData", Node::Map(string_data));
        doc
    }

    #[test]
    fn reads_data_and_string_data() {
        let v = secret_values(&secret("db", Some("ns")), 0).unwrap();
        assert_eq!((v.name.as_str(), v.namespace.as_str()), ("db", "ns"));
        assert_eq!(v.get("token").unwrap().expose(), b"secret");
        assert_eq!(v.get("user").unwrap().expose(), b"new", "stringData wins");
        assert_eq!(
            secret_values(&secret("db", None), 0).unwrap_err(),
            ManifestError::NoNamespace("db".into())
        );
    }

    #[test]
    fn keys_must_be_file_safe() {
        assert!(valid_key("tls.crt") && valid_key("DATABASE_URL"));
        assert!(!valid_key("../x") && !valid_key("a/b") && !valid_key("..") && !valid_key(""));
        assert!(!valid_key("..data") && !valid_key("..2026_01_01") && valid_key(".env"));
    }

    #[test]
    fn names_follow_the_api_server() {
        for good in ["db", "app-db", "db.example", "a", "0db", &"a".repeat(253)] {
            assert!(valid_secret_name(good), "{good}");
        }
        let long = "a".repeat(254);
        for bad in [
            "",
            ".",
            "..",
            "..data",
            "../../escaped",
            "/etc/x",
            "a/b",
            "Db",
            "-db",
            "db-",
            "a..b",
            ".db",
            "db.",
            "db_x",
            &long,
        ] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
        assert!(
            valid_namespace("ns1") && !valid_namespace("a.b") && !valid_namespace(&"a".repeat(64))
        );
    }
}
