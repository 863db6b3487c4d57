//! Which leaves are encrypted: the six selectors of docs/sops-format.md §6, with sops' evaluation order.

use regex::Regex;

/// sops' default when no selector is given; written to the metadata explicitly.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// The selector fields as they appear in the metadata and in `.sops.yaml`, by name.
pub const SELECTOR_KEYS: [&str; 6] = [
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    /// More than one selector is set; sops refuses the same.
    #[error("cannot use more than one of {0}")]
    Conflicting(String),
    /// A regex selector does not compile.
    #[error("invalid {key} {pattern:?}: {reason}")]
    BadRegex {
        key: &'static str,
        pattern: String,
        reason: String,
    },
}

/// The one active selector of a file.
#[derive(Clone, Debug)]
pub enum Selector {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
    UnencryptedCommentRegex(Regex),
    EncryptedCommentRegex(Regex),
    /// The binary store encrypts its one value whatever the metadata says (sops 3.11+).
    All,
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key() && self.pattern() == other.pattern()
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.to_owned())
    }
}

impl Selector {
    /// Builds the selector from the six optional fields (metadata, rule or flags). Empty strings
    /// count as unset, as in sops. None set gives the default suffix.
    pub fn from_fields(fields: [Option<&str>; 6]) -> Result<Selector, RulesError> {
        let set: Vec<(usize, &str)> = fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.filter(|s| !s.is_empty()).map(|s| (i, s)))
            .collect();
        match set.as_slice() {
            [] => Ok(Selector::default()),
            [(i, v)] => Selector::from_key(SELECTOR_KEYS[*i], v),
            _ => Err(RulesError::Conflicting(
                set.iter()
                    .map(|(i, _)| SELECTOR_KEYS[*i])
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Builds one selector from its metadata key and pattern.
    pub fn from_key(key: &str, pattern: &str) -> Result<Selector, RulesError> {
        let re = |key: &'static str| {
            Regex::new(pattern).map_err(|e| RulesError::BadRegex {
                key,
                pattern: pattern.to_owned(),
                reason: e.to_string(),
            })
        };
        Ok(match key {
            "unencrypted_suffix" => Selector::UnencryptedSuffix(pattern.to_owned()),
            "encrypted_suffix" => Selector::EncryptedSuffix(pattern.to_owned()),
            "unencrypted_regex" => Selector::UnencryptedRegex(re("unencrypted_regex")?),
            "encrypted_regex" => Selector::EncryptedRegex(re("encrypted_regex")?),
            "unencrypted_comment_regex" => {
                Selector::UnencryptedCommentRegex(re("unencrypted_comment_regex")?)
            }
            "encrypted_comment_regex" => {
                Selector::EncryptedCommentRegex(re("encrypted_comment_regex")?)
            }
            other => unreachable!("not a selector key: {other}"),
        })
    }

    /// The metadata key this selector is stored under (`None` for the binary store).
    pub fn key(&self) -> Option<&'static str> {
        Some(match self {
            Selector::UnencryptedSuffix(_) => "unencrypted_suffix",
            Selector::EncryptedSuffix(_) => "encrypted_suffix",
            Selector::UnencryptedRegex(_) => "unencrypted_regex",
            Selector::EncryptedRegex(_) => "encrypted_regex",
            Selector::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            Selector::EncryptedCommentRegex(_) => "encrypted_comment_regex",
            Selector::All => return None,
        })
    }

    /// The pattern as written in the metadata.
    pub fn pattern(&self) -> &str {
        match self {
            Selector::UnencryptedSuffix(s) | Selector::EncryptedSuffix(s) => s,
            Selector::UnencryptedRegex(r)
            | Selector::EncryptedRegex(r)
            | Selector::UnencryptedCommentRegex(r)
            | Selector::EncryptedCommentRegex(r) => r.as_str(),
            Selector::All => "",
        }
    }

    /// sops' `shouldBeEncrypted`: `path` is the keys from the root (no list indices);
    /// `comments` the active comment lines of every enclosing level; `is_comment` whether the
    /// leaf is itself the newest of those comments.
    pub fn should_encrypt(
        &self,
        path: &[String],
        comments: &[Vec<String>],
        is_comment: bool,
    ) -> bool {
        match self {
            Selector::All => true,
            Selector::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
            Selector::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
            Selector::UnencryptedRegex(r) => !path.iter().any(|p| r.is_match(p)),
            Selector::EncryptedRegex(r) => path.iter().any(|p| r.is_match(p)),
            Selector::UnencryptedCommentRegex(r) => {
                !comments.iter().flatten().any(|c| r.is_match(c))
            }
            Selector::EncryptedCommentRegex(r) => {
                let last_level = comments.len().saturating_sub(1);
                comments.iter().enumerate().any(|(i, level)| {
                    level.iter().enumerate().any(|(j, c)| {
                        // The marker comment itself stays readable.
                        let is_self = is_comment && i == last_level && j + 1 == level.len();
                        !is_self && r.is_match(c)
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn regexes_search_every_component_unanchored() {
        let sel = Selector::from_key("encrypted_regex", "data").unwrap();
        assert!(sel.should_encrypt(&path(&["metadata", "name"]), &[], false));
        let sel = Selector::from_key("encrypted_regex", "^(data|stringData)$").unwrap();
        assert!(!sel.should_encrypt(&path(&["metadata", "name"]), &[], false));
        assert!(sel.should_encrypt(&path(&["stringData", "x", "y"]), &[], false));
    }

    #[test]
    fn suffix_protects_whole_subtree() {
        let sel = Selector::default();
        assert!(!sel.should_encrypt(&path(&["nested_unencrypted", "this", "is"]), &[], false));
        assert!(sel.should_encrypt(&path(&["a", "b"]), &[], false));
        assert!(
            sel.should_encrypt(&[], &[], true),
            "top-level comments are encrypted by default"
        );
    }

    #[test]
    fn only_one_selector() {
        let err =
            Selector::from_fields([Some("_u"), None, None, Some("x"), None, None]).unwrap_err();
        assert_eq!(
            err,
            RulesError::Conflicting("unencrypted_suffix, encrypted_regex".into())
        );
        assert_eq!(
            Selector::from_fields([Some(""); 6]).unwrap(),
            Selector::default()
        );
    }

    #[test]
    fn encrypted_comment_regex_skips_its_own_marker() {
        let sel = Selector::from_key("encrypted_comment_regex", "sops:enc").unwrap();
        let stack = vec![vec![" sops:enc".to_string()]];
        assert!(!sel.should_encrypt(&[], &stack, true));
        assert!(sel.should_encrypt(&path(&["k"]), &stack, false));
        assert!(!sel.should_encrypt(&path(&["k"]), &[vec![]], false));
    }
}
