//! What changed between two versions of an encrypted file, for reviews: key paths with a keyed
//! fingerprint for every encrypted value (never the value), and clear values as they are (they
//! are readable in git anyway).

use std::collections::BTreeMap;
use std::fmt;

use crate::sops::file::Opened;
use crate::sops::tree::Node;
use crate::sops::walk;

/// How a value is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplayedValue {
    /// An encrypted value: its fingerprint.
    Fingerprint(String),
    /// A value the file keeps in clear, JSON-quoted.
    Clear(String),
}

impl fmt::Display for DisplayedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisplayedValue::Fingerprint(fp) => write!(f, "fp:{fp}"),
            DisplayedValue::Clear(v) => f.write_str(v),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String, DisplayedValue),
    Removed(String, DisplayedValue),
    Changed(String, DisplayedValue, DisplayedValue),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(p, v) => write!(f, "+ {p}: {v}"),
            Change::Removed(p, v) => write!(f, "- {p}: {v}"),
            Change::Changed(p, a, b) => write!(f, "~ {p}: {a} -> {b}"),
        }
    }
}

/// Every leaf of `file` by path (`document N: ` first in multi-document files), shown with
/// fingerprints from `keyed_by` so that two files can be compared under one key.
pub fn entries(file: &Opened, keyed_by: &Opened) -> Vec<(String, DisplayedValue)> {
    let many = file.tree.documents.len() > 1;
    let mut out = Vec::new();
    walk::for_each_leaf(&file.tree, &mut |leaf| {
        let path = if many {
            format!("document {}: {}", leaf.document + 1, leaf.display_path())
        } else {
            leaf.display_path()
        };
        let encrypted = file
            .metadata
            .selector
            .should_encrypt(leaf.keys, leaf.comments, false);
        let shown = if encrypted {
            DisplayedValue::Fingerprint(keyed_by.fingerprint(leaf.node).unwrap_or_default())
        } else {
            DisplayedValue::Clear(clear_text(leaf.node))
        };
        out.push((path, shown));
    });
    out
}

fn clear_text(n: &Node) -> String {
    let v = n.to_json();
    serde_json::to_string(&v).unwrap_or_default()
}

/// The changes from `old` to `new`, in `new`'s order then removals in `old`'s order.
/// Fingerprints of both sides are keyed by `new`'s data key, so equal values compare equal
/// even across a rekey.
pub fn compare(old: &Opened, new: &Opened) -> (Vec<Change>, usize) {
    let old_entries = entries(old, new);
    let before: BTreeMap<&String, &DisplayedValue> =
        old_entries.iter().map(|(p, s)| (p, s)).collect();
    let after = entries(new, new);
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (path, shown) in &after {
        match before.get(path) {
            None => changes.push(Change::Added(path.clone(), shown.clone())),
            Some(b) if *b != shown => {
                changes.push(Change::Changed(path.clone(), (*b).clone(), shown.clone()))
            }
            Some(_) => unchanged += 1,
        }
    }
    let now: std::collections::BTreeSet<&String> = after.iter().map(|(p, _)| p).collect();
    for (path, shown) in &old_entries {
        if !now.contains(path) {
            changes.push(Change::Removed(path.clone(), shown.clone()));
        }
    }
    (changes, unchanged)
}
