//! Repository guardrails: what `credseal check` finds in one file's bytes. Findings name the
//! file, the document or key path, and the problem; never a value, not even a prefix.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::sops::cipher::Encrypted;
use crate::sops::file::{EncryptedFile, SopsError};
use crate::sops::keys::Keyring;
use crate::sops::store::{self, Format, METADATA_KEY};
use crate::sops::tree::{Map, Node};
use crate::sops::{value, walk};

/// What kind of problem a finding is; the names are the JSON `check` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A Kubernetes Secret whose `data`/`stringData` is not SOPS-encrypted.
    PlaintextSecret,
    /// A value of a SOPS file that its own selection rules say is encrypted, in clear.
    ClearValue,
    /// Age recipients that differ from what the matching `.sops.yaml` rule requires.
    Recipients,
    /// A SOPS file that cannot be read: bad `ENC[...]`, bad metadata, unknown version.
    Structure,
    /// The MAC does not verify, or a value does not decrypt (with an identity available).
    Mac,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub check: Check,
    /// `document N` or a key path such as `["data"]["password"]`; empty for the whole file.
    pub location: String,
    pub message: String,
}

/// What one file is checked against.
pub struct Expect<'a> {
    /// The age recipients of the matching `.sops.yaml` creation rule, if there is one.
    pub recipients: Option<&'a [String]>,
    /// Identities for MAC verification; files it cannot open are reported as unverified.
    pub keyring: Option<&'a Keyring>,
}

/// The outcome for one file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub findings: Vec<Finding>,
    /// The file was neither YAML nor JSON, or did not parse: nothing to check.
    pub skipped: bool,
    pub encrypted: bool,
    pub mac_verified: bool,
}

/// The format `check` reads a path as, or `None` for files it skips.
pub fn format_of(path: &str) -> Option<Format> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        Some(Format::Yaml)
    } else if lower.ends_with(".json") {
        Some(Format::Json)
    } else {
        None
    }
}

pub fn check_file(name: &str, bytes: &[u8], expect: &Expect<'_>) -> FileReport {
    let mut report = FileReport::default();
    let Some(format) = format_of(name) else {
        report.skipped = true;
        return report;
    };
    // Files that are not YAML/JSON at all (templates, fragments) are not ours to judge; a file
    // past a parser limit is, and may hide a plaintext Secret.
    let tree = match store::parse(bytes, format) {
        Ok(tree) => tree,
        Err(e) if e.exceeds_limit() => {
            report.findings.push(Finding {
                file: name.to_owned(),
                check: Check::Structure,
                location: String::new(),
                message: e.to_string(),
            });
            return report;
        }
        Err(_) => {
            report.skipped = true;
            return report;
        }
    };
    let mut found = Findings {
        file: name,
        list: Vec::new(),
    };
    for (i, doc) in tree.documents.iter().enumerate() {
        plaintext_secrets(doc, &format!("document {}", i + 1), &mut found);
    }
    let is_sops = tree
        .documents
        .first()
        .is_some_and(|d| d.get(METADATA_KEY).is_some());
    if is_sops {
        report.encrypted = true;
        report.mac_verified = check_sops(bytes, format, expect, &mut found);
    }
    report.findings = found.list;
    report
}

struct Findings<'a> {
    file: &'a str,
    list: Vec<Finding>,
}

impl Findings<'_> {
    fn add(&mut self, check: Check, location: String, message: String) {
        self.list.push(Finding {
            file: self.file.to_owned(),
            check,
            location,
            message,
        });
    }
}

/// A `kind: Secret` document, or one inside a `kind: List`, with any value under `data` or
/// `stringData` that is not an `ENC[...]` string.
fn plaintext_secrets(doc: &Map, location: &str, found: &mut Findings<'_>) {
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
    if kind.ends_with("List") {
        if let Some(Node::Seq(items)) = doc.get("items") {
            for (j, item) in items.nodes().enumerate() {
                if let Some(m) = item.as_map() {
                    plaintext_secrets(m, &format!("{location}, items[{j}]"), found);
                }
            }
        }
        return;
    }
    if kind != "Secret" {
        return;
    }
    let meta = doc.get("metadata").and_then(Node::as_map);
    let field = |k: &str| meta.and_then(|m| m.get(k)).and_then(Node::as_str);
    let name = match (field("namespace"), field("name")) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_owned(),
        _ => "(unnamed)".to_owned(),
    };
    for section in ["data", "stringData"] {
        let Some(Node::Map(values)) = doc.get(section) else {
            continue;
        };
        let clear: Vec<&str> = values
            .pairs()
            .filter(|(_, v)| !is_empty(v) && !v.as_str().is_some_and(is_enc))
            .map(|(k, _)| k)
            .collect();
        if !clear.is_empty() {
            found.add(
                Check::PlaintextSecret,
                location.to_owned(),
                format!(
                    "Secret {name} has {} {section} value(s) in plain text ({}); encrypt it with `credseal encrypt`",
                    clear.len(),
                    clear.join(", ")
                ),
            );
        }
    }
}

fn is_empty(leaf: &Node) -> bool {
    value::to_bytes(leaf).is_some_and(|(b, _)| b.expose().is_empty())
}

fn is_enc(s: &str) -> bool {
    s.starts_with("ENC[") && Encrypted::parse(s).is_ok()
}

/// Metadata, values, recipients and (with an identity) the MAC. Returns whether the MAC was
/// verified.
fn check_sops(bytes: &[u8], format: Format, expect: &Expect<'_>, found: &mut Findings<'_>) -> bool {
    let file = match EncryptedFile::parse(bytes, format) {
        Ok(f) => f,
        Err(e) => {
            found.add(Check::Structure, String::new(), e.to_string());
            return false;
        }
    };
    // A Secret already reported as plaintext is not reported again value by value.
    let secret_reported = !found.list.is_empty();
    let mut clear = Vec::new();
    let mut malformed = Vec::new();
    walk::for_each_leaf(&file.tree, &mut |leaf| {
        // sops leaves empty values empty: there is nothing to hide.
        if is_empty(leaf.node)
            || !file
                .metadata
                .selector
                .should_encrypt(leaf.keys, leaf.comments, false)
        {
            return;
        }
        match leaf.node.as_str() {
            Some(s) if s.starts_with("ENC[") => {
                if Encrypted::parse(s).is_err() {
                    malformed.push(leaf.display_path());
                }
            }
            _ => clear.push(leaf.display_path()),
        }
    });
    let secret_data = |p: &str| p.starts_with("[\"data\"]") || p.starts_with("[\"stringData\"]");
    for p in clear {
        if secret_reported && secret_data(&p) {
            continue;
        }
        found.add(
            Check::ClearValue,
            p,
            "value in clear where the file's own rules require it encrypted (hand-edited?)".into(),
        );
    }
    for p in malformed {
        found.add(Check::Structure, p, "malformed ENC[...] value".into());
    }
    if let Some(want) = expect.recipients {
        let have: BTreeSet<&str> = file.metadata.age_recipients().collect();
        let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
        for r in have.difference(&want) {
            found.add(
                Check::Recipients,
                String::new(),
                format!(
                    "recipient {r} is not in the .sops.yaml rule (stale); run `credseal updatekeys`"
                ),
            );
        }
        for r in want.difference(&have) {
            found.add(
                Check::Recipients,
                String::new(),
                format!(
                    "recipient {r} required by .sops.yaml is missing; run `credseal updatekeys`"
                ),
            );
        }
    }
    let Some(ring) = expect.keyring else {
        return false;
    };
    let Ok(key) = file.data_key(ring) else {
        return false;
    };
    match file.open_with_key(key, false) {
        Ok(_) => true,
        Err(e @ (SopsError::MacMismatch | SopsError::MacUndecryptable | SopsError::Walk(_))) => {
            found.add(Check::Mac, String::new(), e.to_string());
            false
        }
        Err(e) => {
            found.add(Check::Structure, String::new(), e.to_string());
            false
        }
    }
}
