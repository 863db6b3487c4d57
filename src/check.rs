//! Repository guardrails: what `credseal check` finds in one file's bytes. Findings name the
//! file, the document or key path, and the problem; never a value, not even a prefix.

mod ignore_file;
mod lenient;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::manifest;

pub use ignore_file::{IGNORE_FILE, IgnoreList, IgnorePatternError};

use crate::sops::cipher::Encrypted;
use crate::sops::error_text::with_causes;
use crate::sops::file::{EncryptedFile, SopsError};
use crate::sops::keys::Keyring;
use crate::sops::master_key::{KeyKind, MasterKey};
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
    /// Keys (of any type) that differ from what the matching `.sops.yaml` rule requires, or a
    /// matching rule whose keys are invalid.
    Recipients,
    /// A SOPS file that cannot be read: bad `ENC[...]`, bad metadata, unknown version.
    Structure,
    /// The MAC does not verify, or a value does not decrypt (with an identity available).
    Mac,
    /// A file that looks like a Secret but cannot be read even leniently: its values cannot be
    /// judged, so it is refused rather than passed.
    UnparsableSecret,
    /// A Secret's name, namespace or data key that the API server refuses (and that
    /// `materialize` would otherwise turn into a path).
    InvalidName,
    /// A Secret encrypted to another namespace's key: a pod holding that key (in the other
    /// namespace) could decrypt it. See [`custody`].
    ForeignNamespaceKey,
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
pub struct CheckAgainst<'a> {
    /// The keys of the matching `.sops.yaml` creation rule (every type), if there is one.
    pub keys: Option<&'a [MasterKey]>,
    /// Identities for MAC verification; files it cannot open are reported as unverified.
    pub keyring: Option<&'a Keyring>,
}

/// The outcome for one file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub findings: Vec<Finding>,
    /// Nothing to check: a YAML/JSON file that did not parse and does not look like a Secret,
    /// or a file of another kind that holds no Secret, List or SOPS metadata.
    pub skipped: bool,
    pub encrypted: bool,
    pub mac_verified: bool,
    /// The `metadata.namespace` of every Secret in the file (for [`custody`]).
    pub namespaces: BTreeSet<String>,
    /// The age recipients of a SOPS file (for [`custody`]).
    pub recipients: Vec<String>,
}

/// The format a path's extension says, or `None` for files that `check` reads by content.
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

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Checks one file. A file whose extension is not YAML or JSON is read by content: a plaintext
/// Secret leaks whatever its name (a temp file, `secret`, `db.txt`).
pub fn check_file(name: &str, bytes: &[u8], expect: &CheckAgainst<'_>) -> FileReport {
    let by_extension = format_of(name);
    // A BOM is invisible in an editor; it must not hide what follows.
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let format = by_extension.unwrap_or_else(|| Format::sniff(bytes));
    let mut found = Findings {
        file: name,
        list: Vec::new(),
    };
    let mut report = FileReport::default();
    match store::parse(bytes, format) {
        Ok(tree) => {
            if by_extension.is_none() && !tree.documents.iter().any(worth_judging) {
                report.skipped = true;
                return report;
            }
            for (i, doc) in tree.documents.iter().enumerate() {
                judge_secrets(doc, &format!("document {}", i + 1), &mut found);
                secret_namespaces(doc, &mut report.namespaces);
            }
            let is_sops = tree
                .documents
                .first()
                .is_some_and(|d| d.get(METADATA_KEY).is_some());
            if is_sops {
                report.encrypted = true;
                if let Ok(file) = EncryptedFile::parse(bytes, format) {
                    report.recipients = file.metadata.age_recipients().map(str::to_owned).collect();
                }
                report.mac_verified = check_sops(bytes, format, expect, &mut found);
            }
        }
        // Past a parser limit (nesting, aliases): never skipped like a template, since it may
        // hide a plaintext Secret, and not handed to the lenient reader either.
        Err(strict) if strict.exceeds_limit() => {
            found.add(Check::Structure, String::new(), with_causes(&strict));
        }
        Err(strict) => {
            if !judge_leniently(bytes, &strict, &mut found) {
                report.skipped = true;
            }
        }
    }
    report.findings = found.list;
    report
}

/// What makes a file read by content worth counting: something `check` judges.
fn worth_judging(doc: &Map) -> bool {
    manifest::is_secret(doc) || manifest::is_list(doc) || doc.get(METADATA_KEY).is_some()
}

/// A file the SOPS store cannot read (a list or scalar document beside the mappings, a
/// non-string key, not YAML at all): its mapping documents are judged as read by the lenient
/// reader, and one that is not YAML even so is refused if it looks like a Secret. Returns
/// whether the file was judged.
fn judge_leniently(bytes: &[u8], strict: &store::StoreError, found: &mut Findings<'_>) -> bool {
    // A stray Latin-1 byte in a comment must not hide the Secret around it.
    let text = String::from_utf8_lossy(bytes);
    let text = text.as_ref();
    let docs = match lenient::documents(text) {
        Ok(docs) => docs,
        Err(e) if looks_like_secret(text) => {
            found.add(
                Check::UnparsableSecret,
                String::new(),
                format!(
                    "looks like a Kubernetes Secret but cannot be read as YAML or JSON ({e}), so its values cannot be judged; fix it, encrypt it with `credseal encrypt`, or list it in {IGNORE_FILE} if its values are not real"
                ),
            );
            return true;
        }
        Err(_) => return false,
    };
    let mut judged = false;
    for (i, doc) in docs.iter().enumerate() {
        let location = format!("document {}", i + 1);
        match doc {
            Node::Map(m) => {
                judged |= worth_judging(m);
                judge_secrets(m, &location, found);
                if i == 0 && m.get(METADATA_KEY).is_some() {
                    found.add(
                        Check::Structure,
                        String::new(),
                        format!("a SOPS file that sops cannot read: {}", with_causes(strict)),
                    );
                }
            }
            // Not a manifest kubectl takes, but Secrets in it leak all the same.
            Node::Seq(items) => {
                for (j, item) in items.nodes().enumerate() {
                    if let Some(m) = item.as_map() {
                        judged |= worth_judging(m);
                        judge_secrets(m, &format!("{location}, [{j}]"), found);
                    }
                }
            }
            _ => {}
        }
    }
    judged || !found.list.is_empty()
}

/// `kind: Secret` (YAML, block or flow, quoted or not) or `"kind":"Secret"` (JSON), with a
/// `data` or `stringData` key beside it: the only places a Secret holds values.
fn looks_like_secret(text: &str) -> bool {
    static KIND: OnceLock<Regex> = OnceLock::new();
    static VALUES: OnceLock<Regex> = OnceLock::new();
    let kind = KIND.get_or_init(|| {
        Regex::new(r#"(?m)["']?\bkind["']?\s*:\s*["']?Secret["']?[ \t]*([,}\]#]|$)"#)
            .expect("valid regex")
    });
    let values = VALUES.get_or_init(|| {
        Regex::new(r#"["']?\b(data|stringData)["']?[ \t]*:"#).expect("valid regex")
    });
    kind.is_match(text) && values.is_match(text)
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

/// A `kind: Secret` document, or one inside a `kind: List`: any value under `data` or
/// `stringData` that is not an `ENC[...]` string, and names the API server refuses.
fn judge_secrets(doc: &Map, location: &str, found: &mut Findings<'_>) {
    if manifest::is_list(doc) {
        if let Some(Node::Seq(items)) = doc.get("items") {
            for (j, item) in items.nodes().enumerate() {
                if let Some(m) = item.as_map() {
                    judge_secrets(m, &format!("{location}, items[{j}]"), found);
                }
            }
        }
        return;
    }
    if !manifest::is_secret(doc) {
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
    judge_names(doc, location, found);
}

/// Names the API server would refuse. Metadata is usually in clear even in an encrypted file;
/// an encrypted name cannot be judged and is left alone.
fn judge_names(doc: &Map, location: &str, found: &mut Findings<'_>) {
    let refused = "the API server refuses it";
    let meta = doc.get("metadata").and_then(Node::as_map);
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Node::as_str)
            .filter(|v| !v.starts_with("ENC["))
    };
    if let Some(name) = field("name").filter(|n| !manifest::valid_secret_name(n)) {
        found.add(
            Check::InvalidName,
            location.to_owned(),
            format!(
                "metadata.name {name:?} is not a valid Secret name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); {refused}"
            ),
        );
    }
    if let Some(ns) = field("namespace").filter(|n| !manifest::valid_namespace(n)) {
        found.add(
            Check::InvalidName,
            location.to_owned(),
            format!(
                "metadata.namespace {ns:?} is not a valid namespace (lowercase letters, digits and '-', at most 63 characters); {refused}"
            ),
        );
    }
    for section in ["data", "stringData"] {
        let Some(Node::Map(values)) = doc.get(section) else {
            continue;
        };
        for (key, _) in values.pairs().filter(|(k, _)| !manifest::valid_key(k)) {
            found.add(
                Check::InvalidName,
                location.to_owned(),
                format!(
                    "{section} key {key:?} is not a valid Secret key (letters, digits, '-', '_' and '.', not starting with '..'); {refused}"
                ),
            );
        }
    }
}

/// The namespaces named in clear by the Secrets of a document (also inside a `kind: List`).
fn secret_namespaces(doc: &Map, out: &mut BTreeSet<String>) {
    if manifest::is_list(doc) {
        if let Some(Node::Seq(items)) = doc.get("items") {
            for item in items.nodes().filter_map(Node::as_map) {
                secret_namespaces(item, out);
            }
        }
        return;
    }
    let namespace = doc
        .get("metadata")
        .and_then(Node::as_map)
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .filter(|n| !n.starts_with("ENC["));
    if let (true, Some(ns)) = (manifest::is_secret(doc), namespace) {
        out.insert(ns.to_owned());
    }
}

/// One checked file as key custody sees it.
pub struct Placed<'a> {
    pub file: &'a str,
    /// The index of the `.sops.yaml` creation rule its path matches.
    pub rule: Option<usize>,
    /// The namespaces of its Secrets.
    pub namespaces: &'a BTreeSet<String>,
    /// Its age recipients (empty when it is not a SOPS file).
    pub recipients: &'a [String],
}

/// Key custody across the files checked: no pod may hold a key that opens another namespace's
/// Secrets. `rules` are the age recipients of each `.sops.yaml` creation rule. A recipient in
/// every rule that has any is an admin's key; any other is a namespace key, and the namespaces
/// it serves are those of the Secrets in the files its rules cover. A file encrypted to a
/// namespace key that also serves another namespace than the file's Secret is a
/// `foreign-namespace-key` finding: the pods holding that key there could decrypt it. With one
/// rule (or rules that all list the same keys) there are no namespace keys and nothing to find.
pub fn custody(rules: &[Vec<String>], files: &[Placed<'_>]) -> Vec<Finding> {
    let with_keys: Vec<(usize, &Vec<String>)> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .collect();
    if with_keys.len() < 2 {
        return Vec::new();
    }
    let admin: BTreeSet<&str> = with_keys[0]
        .1
        .iter()
        .map(String::as_str)
        .filter(|r| {
            with_keys
                .iter()
                .all(|(_, rule)| rule.iter().any(|x| x == r))
        })
        .collect();
    // The namespaces each rule's files hold Secrets of.
    let mut served: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); rules.len()];
    for f in files {
        if let Some(i) = f.rule.filter(|i| *i < rules.len()) {
            served[i].extend(f.namespaces.iter().map(String::as_str));
        }
    }
    let mut findings = Vec::new();
    for f in files {
        for r in f.recipients.iter().filter(|r| !admin.contains(r.as_str())) {
            let owning: Vec<usize> = (0..rules.len())
                .filter(|i| rules[*i].iter().any(|x| x == r))
                .collect();
            let owners: BTreeSet<&str> = owning
                .iter()
                .flat_map(|i| served[*i].iter().copied())
                .collect();
            for ns in f.namespaces {
                let foreign: Vec<&str> = owners
                    .iter()
                    .copied()
                    .filter(|o| *o != ns.as_str())
                    .collect();
                if foreign.is_empty() {
                    continue;
                }
                let rules_text: Vec<String> = owning.iter().map(|i| (i + 1).to_string()).collect();
                findings.push(Finding {
                    file: f.file.to_owned(),
                    check: Check::ForeignNamespaceKey,
                    location: String::new(),
                    message: format!(
                        "a Secret of namespace {ns} is encrypted to {r}, the key of namespace {} (.sops.yaml creation rule {}): pods holding that key could decrypt it; encrypt each namespace's Secrets only to its own key and the admins' (a rule per namespace path), then `credseal updatekeys` and `credseal rekey` this file",
                        foreign.join(", "),
                        rules_text.join(", ")
                    ),
                });
            }
        }
    }
    findings
}

fn is_empty(leaf: &Node) -> bool {
    value::to_bytes(leaf).is_some_and(|(b, _)| b.expose().is_empty())
}

fn is_enc(s: &str) -> bool {
    s.starts_with("ENC[") && Encrypted::parse(s).is_ok()
}

/// Metadata, values, recipients and (with an identity) the MAC. Returns whether the MAC was
/// verified.
fn check_sops(
    bytes: &[u8],
    format: Format,
    expect: &CheckAgainst<'_>,
    found: &mut Findings<'_>,
) -> bool {
    let file = match EncryptedFile::parse(bytes, format) {
        Ok(f) => f,
        Err(e) => {
            found.add(Check::Structure, String::new(), with_causes(&e));
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
    if let Some(want) = expect.keys {
        let have: BTreeSet<MasterKey> = file.metadata.keys().into_iter().collect();
        let want: BTreeSet<&MasterKey> = want.iter().collect();
        // An age key is named as before ("recipient age1…"), other kinds by type.
        let named = |k: &MasterKey| match k.kind {
            KeyKind::Age => format!("recipient {}", k.id),
            _ => format!("{} key {}", k.kind.field(), k.id),
        };
        for k in have.iter().filter(|k| !want.contains(k)) {
            found.add(
                Check::Recipients,
                String::new(),
                format!(
                    "{} is not in the .sops.yaml rule (stale); run `credseal updatekeys`",
                    named(k)
                ),
            );
        }
        for k in want.iter().filter(|k| !have.contains(**k)) {
            found.add(
                Check::Recipients,
                String::new(),
                format!(
                    "{} required by .sops.yaml is missing; run `credseal updatekeys`",
                    named(k)
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
            found.add(Check::Mac, String::new(), with_causes(&e));
            false
        }
        Err(e) => {
            found.add(Check::Structure, String::new(), with_causes(&e));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spelled apart so that this source file does not look like a Secret itself.
    const SECRET: &str = "Secret";

    #[test]
    fn what_looks_like_a_secret() {
        for text in [
            "kind: Secret\nstringData:\n  password: x\n  broken: [\n",
            "  - kind: \"Secret\"  # a list item\n    data: {",
            "{\"kind\":\"Secret\",\"data\":{\"p\":\"x\"}",
            &format!("{{apiVersion: v1, kind: {SECRET}, stringData: {{p: x}}"),
            "{\"kind\" :\n  \"Secret\", \"data\" : {",
        ] {
            assert!(looks_like_secret(text), "{text}");
        }
        for text in [
            // No place for values: nothing can leak.
            "kind: Secret\nmetadata: {name: x}\n[",
            // Escaped inside a string literal of some source file.
            r#"let s = "kind: Secret\ndata:\n  a: b";"#,
            "kind: SecretProviderClass\ndata: [",
            "# kind: Secret is what this chart does not make\ndata: [",
        ] {
            assert!(!looks_like_secret(text), "{text}");
        }
    }

    #[test]
    fn custody_tells_namespace_keys_from_admin_keys() {
        let rules = vec![
            vec!["age1a".to_owned(), "age1admin".to_owned()],
            vec!["age1b".to_owned(), "age1admin".to_owned()],
            // A catch-all rule with the admin key only, and one without age recipients.
            vec!["age1admin".to_owned()],
            vec![],
        ];
        let ns = |n: &str| BTreeSet::from([n.to_owned()]);
        let (a, b, c) = (ns("a"), ns("b"), ns("c"));
        let own_a = ["age1a".to_owned(), "age1admin".to_owned()];
        let own_b = ["age1b".to_owned(), "age1admin".to_owned()];
        let admin_only = ["age1admin".to_owned()];
        let files = [
            Placed {
                file: "a/s",
                rule: Some(0),
                namespaces: &a,
                recipients: &own_a,
            },
            Placed {
                file: "b/s",
                rule: Some(1),
                namespaces: &b,
                recipients: &own_b,
            },
            // Admin-only files of any namespace are fine.
            Placed {
                file: "c/s",
                rule: Some(2),
                namespaces: &c,
                recipients: &admin_only,
            },
            // Namespace c's Secret encrypted to b's key.
            Placed {
                file: "c/t",
                rule: Some(2),
                namespaces: &c,
                recipients: &own_b,
            },
        ];
        let found = custody(&rules, &files);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, "c/t");
        assert_eq!(found[0].check, Check::ForeignNamespaceKey);
        assert!(
            found[0].message.contains("the key of namespace b"),
            "{}",
            found[0].message
        );
        // One rule: nothing to tell apart.
        assert!(custody(&rules[..1], &files).is_empty());
    }

    #[test]
    fn a_file_without_a_manifest_is_not_counted() {
        let expect = CheckAgainst {
            keys: None,
            keyring: None,
        };
        assert!(check_file("NOTES", b"password: x\n", &expect).skipped);
        assert!(check_file("run.sh", b"#!/bin/sh\necho hi\n", &expect).skipped);
        assert!(check_file("blob", &[0xff, 0xfe, 0], &expect).skipped);
        let r = check_file("s", b"kind: Secret\nstringData: {p: x}\n", &expect);
        assert!(!r.skipped);
        assert_eq!(r.findings[0].check, Check::PlaintextSecret);
    }
}
