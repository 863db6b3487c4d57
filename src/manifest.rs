//! Kubernetes Secret documents: recognising them and credseal's defaults for them.

use crate::sops::tree::{Map, Node, Tree};

/// What credseal encrypts in a Secret when no rule or flag says otherwise: the values only, so
/// `metadata` stays readable in reviews and diffs (and is still covered by the MAC).
pub const SECRET_ENCRYPTED_REGEX: &str = "^(data|stringData)$";

/// Whether a document is a Kubernetes Secret (`kind: Secret`, any apiVersion).
pub fn is_secret(doc: &Map) -> bool {
    matches!(doc.get("kind"), Some(Node::Str(k)) if k.expose() == "Secret")
}

/// Whether every document of a file is a Secret (then the Secret default applies).
pub fn all_secrets(tree: &Tree) -> bool {
    !tree.documents.is_empty() && tree.documents.iter().all(is_secret)
}
