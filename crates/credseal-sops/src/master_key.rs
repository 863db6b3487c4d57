//! What names a master key a file's data key is wrapped for, whatever its type: the one
//! comparison between a file's keys and a creation rule's, so that removing a key from the
//! rules revokes it, adding one wraps for it, and no command drops a key it cannot use.

use std::fmt;

use crate::tree::{Map, Node};

/// The master key types sops knows, by the metadata field that holds their entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyKind {
    Age,
    Pgp,
    Kms,
    GcpKms,
    AzureKv,
    HcVault,
    HcKms,
}

impl KeyKind {
    /// Every kind but age, in the order sops 3.11 writes them inside a key group.
    pub const OTHERS: [KeyKind; 6] = [
        KeyKind::Pgp,
        KeyKind::Kms,
        KeyKind::GcpKms,
        KeyKind::HcKms,
        KeyKind::AzureKv,
        KeyKind::HcVault,
    ];

    /// The field of the `sops` metadata that lists entries of this kind.
    pub fn field(self) -> &'static str {
        match self {
            KeyKind::Age => "age",
            KeyKind::Pgp => "pgp",
            KeyKind::Kms => "kms",
            KeyKind::GcpKms => "gcp_kms",
            KeyKind::AzureKv => "azure_kv",
            KeyKind::HcVault => "hc_vault",
            KeyKind::HcKms => "hckms",
        }
    }

    pub fn from_field(field: &str) -> Option<KeyKind> {
        std::iter::once(KeyKind::Age)
            .chain(KeyKind::OTHERS)
            .find(|k| k.field() == field)
    }

    /// The fields of one entry, in the order of sops' structs before 3.13 (which sorts them).
    pub fn entry_fields(self) -> &'static [&'static str] {
        match self {
            KeyKind::Age => &["recipient", "enc"],
            KeyKind::Pgp => &["created_at", "enc", "fp"],
            KeyKind::Kms => &["arn", "role", "context", "created_at", "enc", "aws_profile"],
            KeyKind::GcpKms => &["resource_id", "created_at", "enc"],
            KeyKind::AzureKv => &["vault_url", "name", "version", "created_at", "enc"],
            KeyKind::HcVault => &[
                "vault_address",
                "engine_path",
                "key_name",
                "created_at",
                "enc",
            ],
            KeyKind::HcKms => &["key_id", "created_at", "enc"],
        }
    }

    /// Whether credseal can wrap a data key for this kind without a cloud service: age, and
    /// PGP from a public key (with the `pgp` feature).
    pub fn wrappable_offline(self) -> bool {
        self == KeyKind::Age || (self == KeyKind::Pgp && cfg!(feature = "pgp"))
    }
}

/// One master key by its identity: an age recipient, a PGP fingerprint, a KMS ARN, …, as a
/// `.sops.yaml` rule names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MasterKey {
    pub kind: KeyKind,
    /// The canonical identifier: age recipient, upper-case PGP fingerprint, `arn[+role]`,
    /// GCP resource id, `VAULT_URL/keys/NAME[/VERSION]`, `ADDRESS/v1/ENGINE/keys/NAME`, HCKMS key id.
    pub id: String,
}

impl fmt::Display for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.field(), self.id)
    }
}

impl MasterKey {
    pub fn age(recipient: &str) -> MasterKey {
        MasterKey {
            kind: KeyKind::Age,
            id: recipient.trim().to_owned(),
        }
    }

    pub fn pgp(fingerprint: &str) -> MasterKey {
        MasterKey {
            kind: KeyKind::Pgp,
            id: normalize_fingerprint(fingerprint),
        }
    }

    /// A key as a creation rule's field names it (`pgp: FP`, `kms: ARN+ROLE`,
    /// `azure_keyvault: URL`, `hc_vault_transit_uri: URI`, …); None for an unknown field.
    pub fn from_rule(field: &str, text: &str) -> Option<MasterKey> {
        let text = text.trim();
        let kind = match field {
            "age" => KeyKind::Age,
            "pgp" => return Some(MasterKey::pgp(text)),
            "kms" => KeyKind::Kms,
            "gcp_kms" => KeyKind::GcpKms,
            "azure_keyvault" => KeyKind::AzureKv,
            "hc_vault_transit_uri" | "hc_vault" => KeyKind::HcVault,
            "hckms" => KeyKind::HcKms,
            _ => return None,
        };
        Some(MasterKey {
            kind,
            id: text.trim_end_matches('/').to_owned(),
        })
    }

    /// A key from a `key_groups` entry that sops writes as a mapping (kms, gcp_kms,
    /// azure_keyvault, hckms in a rule's key group).
    pub fn from_rule_map(field: &str, m: &Map) -> Option<MasterKey> {
        let s = |k: &str| m.get(k).and_then(Node::as_str).unwrap_or("").trim();
        let id = match field {
            "kms" => kms_id(s("arn"), s("role")),
            "gcp_kms" => s("resource_id").to_owned(),
            "azure_keyvault" => azure_id(s("vaultUrl"), s("key"), s("version")),
            "hckms" => s("key_id").to_owned(),
            _ => return None,
        };
        Some(MasterKey {
            kind: KeyKind::from_field(match field {
                "azure_keyvault" => "azure_kv",
                f => f,
            })?,
            id,
        })
    }

    /// The key an entry of the file's metadata was wrapped for (`kind` is its field).
    pub fn of_entry(kind: KeyKind, entry: &Map) -> MasterKey {
        let s = |k: &str| entry.get(k).and_then(Node::as_str).unwrap_or("").trim();
        let id = match kind {
            KeyKind::Age => s("recipient").to_owned(),
            KeyKind::Pgp => normalize_fingerprint(s("fp")),
            KeyKind::Kms => kms_id(s("arn"), s("role")),
            KeyKind::GcpKms => s("resource_id").to_owned(),
            KeyKind::AzureKv => azure_id(s("vault_url"), s("name"), s("version")),
            KeyKind::HcVault => format!(
                "{}/v1/{}/keys/{}",
                s("vault_address").trim_end_matches('/'),
                s("engine_path").trim_matches('/'),
                s("key_name")
            ),
            KeyKind::HcKms => s("key_id").to_owned(),
        };
        MasterKey { kind, id }
    }
}

fn kms_id(arn: &str, role: &str) -> String {
    if role.is_empty() {
        arn.to_owned()
    } else {
        format!("{arn}+{role}")
    }
}

fn azure_id(vault_url: &str, name: &str, version: &str) -> String {
    let base = format!("{}/keys/{name}", vault_url.trim_end_matches('/'));
    if version.is_empty() {
        base
    } else {
        format!("{base}/{version}")
    }
}

/// gpg prints fingerprints in groups and either case; sops compares them as given, and
/// writes what the rule says. Compare without spaces, upper-case.
pub fn normalize_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_start_matches("0x")
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_and_file_name_the_same_key() {
        let mut kms = Map::new();
        kms.insert("arn", Node::str("arn:aws:kms:eu-west-1:1:key/k"));
        kms.insert("role", Node::str("arn:aws:iam::1:role/r"));
        assert_eq!(
            MasterKey::of_entry(KeyKind::Kms, &kms),
            MasterKey::from_rule("kms", "arn:aws:kms:eu-west-1:1:key/k+arn:aws:iam::1:role/r")
                .unwrap()
        );
        let mut vault = Map::new();
        vault.insert("vault_address", Node::str("https://vault:8200"));
        vault.insert("engine_path", Node::str("transit"));
        vault.insert("key_name", Node::str("sops"));
        assert_eq!(
            MasterKey::of_entry(KeyKind::HcVault, &vault),
            MasterKey::from_rule(
                "hc_vault_transit_uri",
                "https://vault:8200/v1/transit/keys/sops/"
            )
            .unwrap()
        );
        let mut az = Map::new();
        az.insert("vault_url", Node::str("https://v.vault.azure.net"));
        az.insert("name", Node::str("sops"));
        az.insert("version", Node::str("abc"));
        assert_eq!(
            MasterKey::of_entry(KeyKind::AzureKv, &az),
            MasterKey::from_rule("azure_keyvault", "https://v.vault.azure.net/keys/sops/abc")
                .unwrap()
        );
        assert_eq!(
            MasterKey::pgp("7442 b792 de57"),
            MasterKey::pgp("7442B792DE57")
        );
    }
}
