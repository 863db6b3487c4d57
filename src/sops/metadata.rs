//! The `sops` metadata block (spec §9): read every layout from 3.7 to 3.13, write the 3.13 one.

use crate::sops::rules::{RulesError, SELECTOR_KEYS, Selector};
use crate::sops::tree::{Map, MapItem, Node, Seq, SeqItem, Timestamp};

/// The sops release whose format credseal writes.
pub const SOPS_VERSION: &str = "3.13.2";

/// Master key types other than age, kept opaque so a rewrite does not drop them.
const OTHER_KEY_TYPES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("no sops metadata: this is not a SOPS-encrypted file")]
    Missing,
    #[error("sops metadata: {0}")]
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
    /// (type, entries) for pgp, kms, …: not usable by credseal, written back unchanged.
    pub others: Vec<(String, Seq)>,
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

    /// The 3.13 layout: every mapping's keys in byte order, empty key lists omitted (except
    /// `age` and `hc_vault` inside `key_groups`, which sops always writes).
    pub fn to_node(&self) -> Node {
        let mut top: Vec<(String, Node)> = Vec::new();
        if self.key_groups.len() == 1 {
            group_fields(&self.key_groups[0], false, &mut top);
        } else {
            let groups = self
                .key_groups
                .iter()
                .map(|g| {
                    let mut fields = Vec::new();
                    group_fields(g, true, &mut fields);
                    SeqItem::Node(sorted_map(fields))
                })
                .collect();
            top.push(("key_groups".into(), Node::Seq(Seq { items: groups })));
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
        sorted_map(top)
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
    for ty in OTHER_KEY_TYPES {
        if let Some(Node::Seq(entries)) = m.get(ty) {
            if entries.nodes().next().is_some() {
                group.others.push((ty.to_owned(), entries.clone()));
            }
        }
    }
    Ok(group)
}

fn group_fields(g: &KeyGroup, in_key_groups: bool, out: &mut Vec<(String, Node)>) {
    if !g.age.is_empty() || in_key_groups {
        let entries = g
            .age
            .iter()
            .map(|e| {
                SeqItem::Node(sorted_map(vec![
                    ("recipient".into(), Node::str(e.recipient.clone())),
                    ("enc".into(), Node::str(e.enc.clone())),
                ]))
            })
            .collect();
        out.push(("age".into(), Node::Seq(Seq { items: entries })));
    }
    for (ty, entries) in &g.others {
        out.push((ty.clone(), sort_deep(&Node::Seq(entries.clone()))));
    }
    if in_key_groups && !g.others.iter().any(|(ty, _)| ty == "hc_vault") {
        out.push(("hc_vault".into(), Node::Seq(Seq::default())));
    }
}

fn sorted_map(mut fields: Vec<(String, Node)>) -> Node {
    fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Node::Map(Map {
        items: fields
            .into_iter()
            .map(|(k, v)| MapItem::Pair(k, v))
            .collect(),
    })
}

fn sort_deep(n: &Node) -> Node {
    match n {
        Node::Map(m) => sorted_map(
            m.pairs()
                .map(|(k, v)| (k.to_owned(), sort_deep(v)))
                .collect(),
        ),
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
