//! The `sops` metadata block: read every layout from 3.7 to 3.13; written in the layout of the
//! release named by its `version` (so a rewrite does not churn a file sops 3.11 wrote).

use crate::master_key::{KeyKind, MasterKey};
use crate::rules::{RulesError, SELECTOR_KEYS, Selector};
use crate::tree::{Map, MapItem, Node, Seq, SeqItem, Timestamp};

/// The sops release whose format credseal writes.
pub const SOPS_VERSION: &str = "3.13.2";

/// Where the metadata block goes: the stores differ in how sops before 3.10 wrote an empty
/// key list (go-yaml `[]`, encoding/json `null`), and flattened stores sort every key anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataStore {
    Yaml,
    Json,
    Flat,
}

/// The top-level fields in the order of sops' `Metadata` struct, which releases before 3.13
/// write them in (3.13 sorts them).
const STRUCT_ORDER: [&str; 19] = [
    "shamir_threshold",
    "key_groups",
    "kms",
    "gcp_kms",
    "hckms",
    "azure_kv",
    "hc_vault",
    "age",
    "lastmodified",
    "mac",
    "pgp",
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "mac_only_encrypted",
    "version",
];

/// The key lists sops before 3.10 writes at the top level even when empty.
const ALWAYS_BEFORE_3_10: [&str; 6] = ["kms", "gcp_kms", "azure_kv", "hc_vault", "age", "pgp"];

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("no sops metadata: this is not a SOPS-encrypted file")]
    Missing,
    #[error("sops metadata")]
    Malformed(String),
    #[error("sops metadata: version {0:?} is not a semantic version (MAJOR.MINOR.PATCH)")]
    BadVersion(String),
    #[error("sops metadata: {0}")]
    Rules(#[from] RulesError),
}

/// One age recipient entry: the recipient string and the armored age file holding the data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeEntry {
    pub recipient: String,
    pub enc: String,
}

/// A key group: age entries we can use, other master keys preserved as they were.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyGroup {
    pub age: Vec<AgeEntry>,
    /// (type, entries) for pgp, kms, …: written back unchanged unless a key is added or
    /// removed.
    pub others: Vec<(KeyKind, Seq)>,
}

impl KeyGroup {
    /// Every key of the group: age recipients first, then the others in file order.
    pub fn keys(&self) -> Vec<MasterKey> {
        let age = self.age.iter().map(|e| MasterKey::age(&e.recipient));
        let others = self.others.iter().flat_map(|(kind, entries)| {
            entries
                .nodes()
                .map(|e| MasterKey::of_entry(*kind, e.as_map().unwrap_or(&Map::new())))
        });
        age.chain(others).collect()
    }

    /// Keeps only the entries whose key `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&MasterKey) -> bool) {
        self.age.retain(|e| keep(&MasterKey::age(&e.recipient)));
        for (kind, entries) in &mut self.others {
            entries.items.retain(|item| match item {
                SeqItem::Node(n) => keep(&MasterKey::of_entry(
                    *kind,
                    n.as_map().unwrap_or(&Map::new()),
                )),
                _ => true,
            });
        }
        self.others
            .retain(|(_, entries)| entries.nodes().next().is_some());
    }

    /// Adds an entry of a kind other than age (a mapping as sops writes it).
    pub fn push_other(&mut self, kind: KeyKind, entry: Node) {
        match self.others.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, entries)) => entries.items.push(SeqItem::Node(entry)),
            None => self.others.push((
                kind,
                Seq {
                    items: vec![SeqItem::Node(entry)],
                },
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// One group in the common case; several mean Shamir sharing of the data key.
    pub key_groups: Vec<KeyGroup>,
    pub shamir_threshold: u32,
    /// `lastmodified` as written (RFC 3339).
    pub lastmodified: String,
    pub mac: String,
    pub selector: Selector,
    pub mac_only_encrypted: bool,
    pub version: String,
}

impl Metadata {
    /// The AAD of the MAC: `lastmodified` re-formatted as Go's `time.RFC3339`.
    pub fn mac_aad(&self) -> Result<String, MetadataError> {
        Timestamp::parse_rfc3339(&self.lastmodified)
            .map(|t| t.to_rfc3339())
            .ok_or_else(|| {
                MetadataError::Malformed(format!(
                    "lastmodified {:?} is not an RFC 3339 time",
                    self.lastmodified
                ))
            })
    }

    /// All age recipients, in file order across groups.
    pub fn age_recipients(&self) -> impl Iterator<Item = &str> {
        self.key_groups
            .iter()
            .flat_map(|g| g.age.iter().map(|e| e.recipient.as_str()))
    }

    /// Reads the value of the top-level `sops` key.
    pub fn from_node(node: &Node) -> Result<Metadata, MetadataError> {
        let m = node.as_map().ok_or_else(|| {
            MetadataError::Malformed("the sops key does not hold a mapping".into())
        })?;
        let string = |key: &str| -> Result<Option<String>, MetadataError> {
            match m.get(key) {
                None | Some(Node::Null) => Ok(None),
                Some(Node::Str(s)) => Ok(Some(s.expose().to_owned())),
                Some(Node::Time(t)) => Ok(Some(t.to_rfc3339_nano())),
                Some(Node::Int(i)) => Ok(Some(i.to_string())),
                Some(_) => Err(MetadataError::Malformed(format!("{key} is not a string"))),
            }
        };
        let version = string("version")?.ok_or_else(|| MetadataError::BadVersion(String::new()))?;
        if !is_semver(&version) {
            return Err(MetadataError::BadVersion(version));
        }
        let lastmodified = string("lastmodified")?
            .ok_or_else(|| MetadataError::Malformed("lastmodified is missing".into()))?;
        let mac = string("mac")?.unwrap_or_default();
        let fields: Vec<Option<String>> = SELECTOR_KEYS
            .iter()
            .map(|k| string(k))
            .collect::<Result<_, _>>()?;
        let selector = Selector::from_fields(std::array::from_fn(|i| fields[i].as_deref()))?;
        let mac_only_encrypted = match m.get("mac_only_encrypted") {
            None | Some(Node::Null) => false,
            Some(Node::Bool(b)) => *b,
            // sops 3.13 decodes the block with weak typing.
            Some(Node::Str(s)) => matches!(s.expose(), "true" | "True" | "TRUE" | "1" | "t" | "T"),
            Some(_) => {
                return Err(MetadataError::Malformed(
                    "mac_only_encrypted is not a boolean".into(),
                ));
            }
        };
        let shamir_threshold = match m.get("shamir_threshold") {
            None | Some(Node::Null) => 0,
            Some(Node::Int(i)) if *i >= 0 => *i as u32,
            Some(Node::Str(s)) => s
                .expose()
                .parse()
                .map_err(|_| MetadataError::Malformed("shamir_threshold is not a number".into()))?,
            Some(_) => {
                return Err(MetadataError::Malformed(
                    "shamir_threshold is not a number".into(),
                ));
            }
        };
        let key_groups = match m.get("key_groups") {
            Some(Node::Seq(groups)) if groups.nodes().next().is_some() => groups
                .nodes()
                .enumerate()
                .map(|(i, g)| {
                    let g = g.as_map().ok_or_else(|| {
                        MetadataError::Malformed(format!("key_groups[{i}] is not a mapping"))
                    })?;
                    read_group(g)
                })
                .collect::<Result<_, _>>()?,
            _ => vec![read_group(m)?],
        };
        Ok(Metadata {
            key_groups,
            shamir_threshold,
            lastmodified,
            mac,
            selector,
            mac_only_encrypted,
            version,
        })
    }

    /// The block as the sops release named by `version` writes it, so a rewrite by credseal
    /// changes only what changed: 3.13 sorts every mapping's keys; 3.10 to 3.12 write the
    /// fields in their struct order and omit empty key lists; before 3.10 the top-level key
    /// lists are always written, empty ones as `[]` (YAML) or `null` (JSON).
    pub fn to_node(&self, store: MetadataStore) -> Node {
        let layout = Layout {
            sorted: store == MetadataStore::Flat || !version_older(&self.version, "3.13.0"),
            empty: match store {
                MetadataStore::Yaml => Node::Seq(Seq::default()),
                MetadataStore::Json => Node::Null,
                MetadataStore::Flat => Node::Seq(Seq::default()),
            },
        };
        let mut top: Vec<(String, Node)> = Vec::new();
        if self.key_groups.len() == 1 {
            group_fields(&self.key_groups[0], false, &layout, &mut top);
        } else {
            let groups = self
                .key_groups
                .iter()
                .map(|g| {
                    let mut fields = Vec::new();
                    group_fields(g, true, &layout, &mut fields);
                    SeqItem::Node(layout.map(fields, GROUP_ORDER))
                })
                .collect();
            top.push(("key_groups".into(), Node::Seq(Seq { items: groups })));
        }
        if !layout.sorted && store != MetadataStore::Flat && version_older(&self.version, "3.10.0")
        {
            for field in ALWAYS_BEFORE_3_10 {
                if !top.iter().any(|(k, _)| k == field) {
                    top.push((field.into(), layout.empty.clone()));
                }
            }
        }
        if self.shamir_threshold != 0 {
            top.push((
                "shamir_threshold".into(),
                Node::Int(self.shamir_threshold.into()),
            ));
        }
        top.push(("lastmodified".into(), Node::str(self.lastmodified.clone())));
        top.push(("mac".into(), Node::str(self.mac.clone())));
        if let Some(key) = self.selector.key() {
            top.push((key.into(), Node::str(self.selector.pattern())));
        }
        if self.mac_only_encrypted {
            top.push(("mac_only_encrypted".into(), Node::Bool(true)));
        }
        top.push(("version".into(), Node::str(self.version.clone())));
        layout.map(top, &STRUCT_ORDER)
    }

    /// Moves the file to our release's `version`, and so its layout (`updatekeys
    /// --upgrade-layout`). Without it a file written by an older sops keeps both, so a team
    /// that mixes tools sees only real changes in its diffs. Returns whether it changed.
    pub fn upgrade_version(&mut self) -> bool {
        let older = version_older(&self.version, SOPS_VERSION);
        if older {
            self.version = SOPS_VERSION.to_owned();
        }
        older
    }

    /// Every key of every group.
    pub fn keys(&self) -> Vec<MasterKey> {
        self.key_groups.iter().flat_map(KeyGroup::keys).collect()
    }
}

/// The fields of a key group in sops' `keygroup` struct order.
const GROUP_ORDER: &[&str] = &[
    "pgp", "kms", "gcp_kms", "hckms", "azure_kv", "hc_vault", "age",
];

struct Layout {
    /// 3.13: every mapping's keys in byte order. Before: struct order.
    sorted: bool,
    /// An empty key list that is written anyway.
    empty: Node,
}

impl Layout {
    /// A mapping of `fields` in this layout; `order` is the struct order, unknown fields
    /// after it in the order given.
    fn map(&self, mut fields: Vec<(String, Node)>, order: &[&str]) -> Node {
        if self.sorted {
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        } else {
            let rank = |k: &str| order.iter().position(|o| *o == k).unwrap_or(order.len());
            fields.sort_by_key(|(k, _)| rank(k));
        }
        Node::Map(Map {
            items: fields
                .into_iter()
                .map(|(k, v)| MapItem::Pair(k, v))
                .collect(),
        })
    }

    /// The entries of one key kind, each mapping laid out (nested ones sorted, as Go's
    /// encoders write maps, e.g. a KMS encryption context).
    fn entries(&self, kind: KeyKind, entries: &Seq) -> Node {
        Node::Seq(Seq {
            items: entries
                .nodes()
                .map(|e| {
                    SeqItem::Node(match e {
                        Node::Map(m) => self.map(
                            m.pairs()
                                .map(|(k, v)| (k.to_owned(), sort_deep(v)))
                                .collect(),
                            kind.entry_fields(),
                        ),
                        other => sort_deep(other),
                    })
                })
                .collect(),
        })
    }
}

fn read_group(m: &Map) -> Result<KeyGroup, MetadataError> {
    let mut group = KeyGroup::default();
    if let Some(age) = m.get("age") {
        match age {
            Node::Null => {}
            Node::Seq(entries) => {
                for (i, e) in entries.nodes().enumerate() {
                    let e = e.as_map().ok_or_else(|| {
                        MetadataError::Malformed(format!("age[{i}] is not a mapping"))
                    })?;
                    let field = |k: &str| {
                        e.get(k)
                            .and_then(Node::as_str)
                            .map(str::to_owned)
                            .ok_or_else(|| MetadataError::Malformed(format!("age[{i}] has no {k}")))
                    };
                    group.age.push(AgeEntry {
                        recipient: field("recipient")?,
                        enc: field("enc")?,
                    });
                }
            }
            _ => return Err(MetadataError::Malformed("age is not a list".into())),
        }
    }
    for kind in KeyKind::OTHERS {
        if let Some(Node::Seq(entries)) = m.get(kind.field()) {
            if entries.nodes().next().is_some() {
                group.others.push((kind, entries.clone()));
            }
        }
    }
    Ok(group)
}

fn group_fields(g: &KeyGroup, in_key_groups: bool, layout: &Layout, out: &mut Vec<(String, Node)>) {
    if !g.age.is_empty() || in_key_groups {
        let entries: Vec<SeqItem> = g
            .age
            .iter()
            .map(|e| {
                SeqItem::Node(layout.map(
                    vec![
                        ("recipient".into(), Node::str(e.recipient.clone())),
                        ("enc".into(), Node::str(e.enc.clone())),
                    ],
                    KeyKind::Age.entry_fields(),
                ))
            })
            .collect();
        // go-yaml writes an empty list as `[]`; encoding/json writes a nil one as `null`.
        let node = if entries.is_empty() && !layout.sorted {
            layout.empty.clone()
        } else {
            Node::Seq(Seq { items: entries })
        };
        out.push(("age".into(), node));
    }
    for (kind, entries) in &g.others {
        out.push((kind.field().into(), layout.entries(*kind, entries)));
    }
    if in_key_groups && !g.others.iter().any(|(k, _)| *k == KeyKind::HcVault) {
        let empty = if layout.sorted {
            Node::Seq(Seq::default())
        } else {
            layout.empty.clone()
        };
        out.push(("hc_vault".into(), empty));
    }
}

fn sort_deep(n: &Node) -> Node {
    match n {
        Node::Map(m) => {
            let mut fields: Vec<(String, Node)> = m
                .pairs()
                .map(|(k, v)| (k.to_owned(), sort_deep(v)))
                .collect();
            fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            Node::Map(Map {
                items: fields
                    .into_iter()
                    .map(|(k, v)| MapItem::Pair(k, v))
                    .collect(),
            })
        }
        Node::Seq(s) => Node::Seq(Seq {
            items: s.nodes().map(|v| SeqItem::Node(sort_deep(v))).collect(),
        }),
        other => other.clone(),
    }
}

/// blang/semver `Make` (what sops uses): optional `v`, MAJOR.MINOR.PATCH without leading
/// zeros, optional `-pre` and `+build` parts.
pub fn is_semver(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

/// Compares two semantic versions by their numeric core (for raising `version` on edit).
pub fn version_older(a: &str, b: &str) -> bool {
    let nums = |v: &str| -> Vec<u64> {
        let v = v.strip_prefix('v').unwrap_or(v);
        v.split(['-', '+'])
            .next()
            .unwrap_or("")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect()
    };
    nums(a) < nums(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_is_strict() {
        for ok in ["3.9.0", "v3.13.2", "1.0.0-rc.1", "3.10.2+build"] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["3.9", "3.09.0", "", "x.y.z", "3.9.0.1"] {
            assert!(!is_semver(bad), "{bad}");
        }
        assert!(version_older("3.9.0", "3.13.2"));
        assert!(!version_older("3.13.2", "3.13.2"));
    }
}
