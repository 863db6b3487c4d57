//! `.sops.yaml`: creation rules and store settings (docs/sops-format.md §12). Parsing and matching only;
//! finding the file is the caller's job (the format core does no I/O).

use regex::Regex;

use crate::keys::{KeyError, Recipient};
use crate::master_key::{KeyKind, MasterKey};
use crate::rules::{RulesError, SELECTOR_KEYS, Selector};
use crate::tree::{Map, Node};
use crate::yaml::{self, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid YAML")]
    Yaml(#[from] YamlError),
    #[error("{0}")]
    Invalid(String),
    #[error("creation rule {index}")]
    Rules { index: usize, source: RulesError },
    #[error("creation rule {index}")]
    Keys { index: usize, source: KeyError },
    #[error("creation rule {index}: path_regex {pattern:?} does not compile: {reason}")]
    BadPathRegex {
        index: usize,
        pattern: String,
        reason: String,
    },
    #[error("no matching creation rules found for {0}")]
    NoMatchingRule(String),
}

/// One `creation_rules` entry, validated.
#[derive(Debug)]
pub struct CreationRule {
    pub index: usize,
    pub path_regex: Option<Regex>,
    /// The master keys of each key group (one group without `key_groups`), as written: age
    /// recipients are checked when the rule is used, so one bad rule does not break the
    /// files that match the others.
    pub key_groups: Vec<Vec<MasterKey>>,
    /// Whether the keys were given as `key_groups` (errors name the field as written).
    pub grouped: bool,
    /// Files holding the public keys of the rule's PGP keys (`pgp_public_keys:`, a credseal
    /// field sops ignores), relative to the `.sops.yaml`.
    pub pgp_public_keys: Vec<String>,
    pub shamir_threshold: u32,
    /// The six selector fields as written (at most one set).
    pub selector_fields: [Option<String>; 6],
    pub mac_only_encrypted: bool,
}

impl CreationRule {
    /// The rule's keys when it has one key group, its age recipients checked.
    pub fn keys(&self) -> Result<&[MasterKey], ConfigError> {
        let keys = match self.key_groups.as_slice() {
            [one] => one.as_slice(),
            [] => &[],
            _ => {
                return Err(ConfigError::Keys {
                    index: self.index,
                    source: KeyError::ShamirWriteUnsupported,
                });
            }
        };
        let age: Vec<&str> = keys
            .iter()
            .filter(|k| k.kind == KeyKind::Age)
            .map(|k| k.id.as_str())
            .collect();
        let field = if self.grouped {
            "key_groups[0].age"
        } else {
            "age"
        };
        Recipient::parse_each(&age, field).map_err(|source| ConfigError::Keys {
            index: self.index,
            source,
        })?;
        Ok(keys)
    }

    /// Every key of every group, unchecked (for comparing with a file's).
    pub fn all_keys(&self) -> impl Iterator<Item = &MasterKey> {
        self.key_groups.iter().flatten()
    }
}

/// Output settings from `stores:`.
#[derive(Debug, Default, Clone)]
pub struct StoreSettings {
    pub yaml_indent: Option<usize>,
    pub json_indent: Option<i64>,
    pub json_binary_indent: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Config {
    pub creation_rules: Vec<CreationRule>,
    pub stores: StoreSettings,
    /// `pgp_public_keys:` at the top level (credseal's; sops ignores it).
    pub pgp_public_keys: Vec<String>,
}

/// The key fields of a rule without `key_groups`, after `age`.
const RULE_KEY_FIELDS: [&str; 6] = [
    "pgp",
    "kms",
    "gcp_kms",
    "azure_keyvault",
    "hc_vault_transit_uri",
    "hckms",
];

/// The key fields of a `key_groups` entry, after `age`.
const GROUP_KEY_FIELDS: [&str; 6] = [
    "pgp",
    "kms",
    "gcp_kms",
    "azure_keyvault",
    "hc_vault",
    "hckms",
];

impl Config {
    pub fn parse(text: &[u8]) -> Result<Config, ConfigError> {
        let tree = yaml::parse(text)?;
        let Some(doc) = tree.documents.first() else {
            return Ok(Config::default());
        };
        let mut config = Config {
            pgp_public_keys: string_or_list(doc.get("pgp_public_keys"))
                .map_err(|e| ConfigError::Invalid(format!("pgp_public_keys: {e}")))?,
            ..Config::default()
        };
        if let Some(stores) = doc.get("stores").and_then(Node::as_map) {
            let indent = |m: Option<&Map>| match m.and_then(|m| m.get("indent")) {
                Some(Node::Int(i)) => Some(*i),
                _ => None,
            };
            config.stores.yaml_indent =
                indent(stores.get("yaml").and_then(Node::as_map)).map(|i| i.max(0) as usize);
            config.stores.json_indent = indent(stores.get("json").and_then(Node::as_map));
            config.stores.json_binary_indent =
                indent(stores.get("json_binary").and_then(Node::as_map));
        }
        match doc.get("creation_rules") {
            None | Some(Node::Null) => {}
            Some(Node::Seq(rules)) => {
                for (index, rule) in rules.nodes().enumerate() {
                    let rule = rule.as_map().ok_or_else(|| {
                        ConfigError::Invalid(format!("creation rule {index} is not a mapping"))
                    })?;
                    config.creation_rules.push(parse_rule(index, rule)?);
                }
            }
            Some(_) => return Err(ConfigError::Invalid("creation_rules is not a list".into())),
        }
        Ok(config)
    }

    /// The first rule whose `path_regex` matches `path` (relative to the config's directory
    /// when the file lies below it), or that has none.
    pub fn rule_for(&self, path: &str) -> Result<&CreationRule, ConfigError> {
        self.rule_index_for(path)
            .map(|i| &self.creation_rules[i])
            .ok_or_else(|| ConfigError::NoMatchingRule(path.to_owned()))
    }

    /// The index of the rule `rule_for` picks.
    pub fn rule_index_for(&self, path: &str) -> Option<usize> {
        self.creation_rules
            .iter()
            .position(|r| r.path_regex.as_ref().is_none_or(|re| re.is_match(path)))
    }
}

fn string_or_list(node: Option<&Node>) -> Result<Vec<String>, String> {
    match node {
        None | Some(Node::Null) => Ok(Vec::new()),
        Some(Node::Str(s)) => Ok(s
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Some(Node::Seq(items)) => items
            .nodes()
            .map(|n| {
                n.as_str()
                    .map(|s| s.trim().to_owned())
                    .ok_or_else(|| "list entries must be strings".to_owned())
            })
            .collect(),
        Some(_) => Err("expected a string or a list of strings".into()),
    }
}

/// The keys a rule or key group names: `age` first, then the other fields in `fields` order;
/// each field a comma-separated string or a list (of strings, or of mappings for the cloud
/// kinds in a key group). Errors name the field, never a value.
fn group_keys(m: &Map, fields: &[&str]) -> Result<Vec<MasterKey>, String> {
    let mut keys = Vec::new();
    for field in std::iter::once("age").chain(fields.iter().copied()) {
        match m.get(field) {
            Some(Node::Seq(items)) if items.nodes().any(|n| n.as_map().is_some()) => {
                for (i, item) in items.nodes().enumerate() {
                    let key = match item {
                        Node::Map(entry) => MasterKey::from_rule_map(field, entry),
                        Node::Str(s) => MasterKey::from_rule(field, s.expose()),
                        _ => None,
                    }
                    .ok_or_else(|| format!("{field}[{i}] is not a key"))?;
                    keys.push(key);
                }
            }
            node => {
                for text in string_or_list(node).map_err(|e| format!("{field}: {e}"))? {
                    keys.extend(MasterKey::from_rule(field, &text));
                }
            }
        }
    }
    Ok(keys)
}

fn parse_rule(index: usize, rule: &Map) -> Result<CreationRule, ConfigError> {
    let invalid = |msg: String| ConfigError::Invalid(format!("creation rule {index}: {msg}"));
    let path_regex = match rule.get("path_regex") {
        None | Some(Node::Null) => None,
        Some(Node::Str(s)) if s.expose().is_empty() => None,
        Some(Node::Str(s)) => {
            Some(
                Regex::new(s.expose()).map_err(|e| ConfigError::BadPathRegex {
                    index,
                    pattern: s.expose().to_owned(),
                    reason: e.to_string(),
                })?,
            )
        }
        Some(_) => return Err(invalid("path_regex is not a string".into())),
    };
    let grouped = matches!(rule.get("key_groups"), Some(Node::Seq(_)));
    let key_groups = match rule.get("key_groups") {
        Some(Node::Seq(groups)) => {
            let mut out = Vec::new();
            for (g, group) in groups.nodes().enumerate() {
                let group = group
                    .as_map()
                    .ok_or_else(|| invalid(format!("key_groups[{g}] is not a mapping")))?;
                out.push(
                    group_keys(group, &GROUP_KEY_FIELDS)
                        .map_err(|e| invalid(format!("key_groups[{g}].{e}")))?,
                );
            }
            out
        }
        _ => vec![group_keys(rule, &RULE_KEY_FIELDS).map_err(invalid)?],
    };
    let pgp_public_keys = string_or_list(rule.get("pgp_public_keys"))
        .map_err(|e| invalid(format!("pgp_public_keys: {e}")))?;
    let mut selector_fields: [Option<String>; 6] = Default::default();
    for (i, key) in SELECTOR_KEYS.iter().enumerate() {
        selector_fields[i] = match rule.get(key) {
            None | Some(Node::Null) => None,
            Some(Node::Str(s)) => Some(s.expose().to_owned()),
            Some(_) => return Err(invalid(format!("{key} is not a string"))),
        };
    }
    // Reject two selectors (and bad regexes) when the config is read, as sops does.
    Selector::from_fields(std::array::from_fn(|i| selector_fields[i].as_deref()))
        .map_err(|source| ConfigError::Rules { index, source })?;
    let mac_only_encrypted = matches!(rule.get("mac_only_encrypted"), Some(Node::Bool(true)));
    let shamir_threshold = match rule.get("shamir_threshold") {
        Some(Node::Int(i)) if *i > 0 => *i as u32,
        _ => 0,
    };
    Ok(CreationRule {
        index,
        path_regex,
        key_groups,
        grouped,
        pgp_public_keys,
        shamir_threshold,
        selector_fields,
        mac_only_encrypted,
    })
}
