//! `.sops.yaml`: creation rules and store settings (spec §12). Parsing and matching only;
//! finding the file is the caller's job (the format core does no I/O).

use regex::Regex;

use crate::sops::keys::{KeyError, Recipient};
use crate::sops::rules::{RulesError, SELECTOR_KEYS, Selector};
use crate::sops::tree::{Map, Node};
use crate::sops::yaml::{self, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid YAML: {0}")]
    Yaml(#[from] YamlError),
    #[error("{0}")]
    Invalid(String),
    #[error("creation rule {index}: {source}")]
    Rules { index: usize, source: RulesError },
    #[error("creation rule {index}: {source}")]
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
    /// age recipients of each key group (one group without `key_groups`).
    pub key_groups: Vec<Vec<Recipient>>,
    /// Whether the rule names key types other than age (credseal cannot use them).
    pub other_key_types: Vec<String>,
    pub shamir_threshold: u32,
    /// The six selector fields as written (at most one set).
    pub selector_fields: [Option<String>; 6],
    pub mac_only_encrypted: bool,
}

impl CreationRule {
    /// The rule's recipients when it has one key group.
    pub fn recipients(&self) -> Result<&[Recipient], KeyError> {
        match self.key_groups.as_slice() {
            [one] => Ok(one),
            [] => Ok(&[]),
            _ => Err(KeyError::ShamirWriteUnsupported),
        }
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
}

const OTHER_KEY_FIELDS: [&str; 7] = [
    "pgp",
    "kms",
    "gcp_kms",
    "azure_keyvault",
    "hc_vault_transit_uri",
    "hckms",
    "hc_vault",
];

impl Config {
    pub fn parse(text: &[u8]) -> Result<Config, ConfigError> {
        let tree = yaml::parse(text)?;
        let Some(doc) = tree.documents.first() else {
            return Ok(Config::default());
        };
        let mut config = Config::default();
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
    // Errors name the field and the position, never the text (it may be a private key).
    let recipients = |list: Vec<String>, field: &str| -> Result<Vec<Recipient>, ConfigError> {
        Recipient::parse_each(&list, field).map_err(|source| ConfigError::Keys { index, source })
    };
    let mut other_key_types = Vec::new();
    let key_groups = match rule.get("key_groups") {
        Some(Node::Seq(groups)) => {
            let mut out = Vec::new();
            for (g, group) in groups.nodes().enumerate() {
                let group = group
                    .as_map()
                    .ok_or_else(|| invalid(format!("key_groups[{g}] is not a mapping")))?;
                out.push(recipients(
                    string_or_list(group.get("age")).map_err(invalid)?,
                    &format!("key_groups[{g}].age"),
                )?);
                for t in OTHER_KEY_FIELDS {
                    if group.get(t).is_some_and(|n| !matches!(n, Node::Null)) {
                        other_key_types.push(t.to_owned());
                    }
                }
            }
            out
        }
        _ => {
            for t in OTHER_KEY_FIELDS {
                if !string_or_list(rule.get(t)).unwrap_or_default().is_empty() {
                    other_key_types.push(t.to_owned());
                }
            }
            vec![recipients(
                string_or_list(rule.get("age")).map_err(invalid)?,
                "age",
            )?]
        }
    };
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
        other_key_types,
        shamir_threshold,
        selector_fields,
        mac_only_encrypted,
    })
}
