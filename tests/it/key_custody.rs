//! Key custody: a key per namespace, so no pod holds a key that opens another namespace's
//! Secrets; `check` reports a file encrypted to another namespace's key.

use std::path::Path;

use crate::support::{Cmd, Out, new_key, write};

const VALUE: &str = "custody-test-value-8c1f0e";

fn secret(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\nstringData:\n  password: {VALUE}\n"
    )
}

/// A repository whose `.sops.yaml` has a rule per namespace directory (`a/`, `b/`), each with
/// that namespace's key and the admin's.
struct Repo {
    dir: tempfile::TempDir,
    admin: std::path::PathBuf,
    b: String,
    admin_recipient: String,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (admin, admin_recipient) = new_key(keys.path(), "admin");
        let (_, a) = new_key(keys.path(), "a");
        let (_, b) = new_key(keys.path(), "b");
        let admin_copy = dir.path().join("admin.agekey");
        std::fs::copy(&admin, &admin_copy).unwrap();
        write(
            dir.path(),
            ".sops.yaml",
            format!(
                "creation_rules:\n  - path_regex: ^a/\n    age: {a},{admin_recipient}\n  - path_regex: ^b/\n    age: {b},{admin_recipient}\n"
            ),
        );
        for d in ["a", "b"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let repo = Repo {
            dir,
            admin: admin_copy,
            b,
            admin_recipient,
        };
        repo.encrypt("a/db.enc.yaml", &secret("db", "a"), &[]);
        repo.encrypt("b/db.enc.yaml", &secret("db", "b"), &[]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn encrypt(&self, name: &str, plain: &str, extra: &[&str]) {
        crate::support::encrypt_in_place(self.path(), name, plain, extra);
    }

    fn check(&self) -> Out {
        Cmd::credseal()
            .cwd(self.path())
            .key(&self.admin)
            .args(["check", "a", "b"])
            .run()
    }
}

/// `file: check` of every finding.
fn heads(out: &Out) -> Vec<String> {
    out.text()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ": ");
            format!("{}: {}", parts.next().unwrap(), parts.next().unwrap_or(""))
        })
        .collect()
}

#[test]
fn a_secret_of_one_namespace_encrypted_to_another_namespaces_key_is_found() {
    let repo = Repo::new();
    let out = repo.check().ok();
    assert!(out.stderr.contains("0 finding(s)"), "{}", out.stderr);

    // Namespace a's Secret, encrypted by hand to namespace b's key: b's pods could open it.
    repo.encrypt(
        "a/copied.enc.yaml",
        &secret("copied", "a"),
        &["--age", &format!("{},{}", repo.b, repo.admin_recipient)],
    );
    let out = repo.check().code(230);
    out.never_shows(VALUE);
    let heads = heads(&out);
    assert!(
        heads.contains(&"a/copied.enc.yaml: foreign-namespace-key".to_owned()),
        "{}",
        out.text()
    );
    let line = out
        .text()
        .lines()
        .find(|l| l.contains("foreign-namespace-key"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("a Secret of namespace a is encrypted to")
            && line.contains(&repo.b)
            && line.contains("the key of namespace b (.sops.yaml creation rule 2)"),
        "{line}"
    );
    // Only the copied file: the files that follow their namespace's rule are fine.
    assert!(
        heads
            .iter()
            .filter(|h| h.ends_with("foreign-namespace-key"))
            .all(|h| h.starts_with("a/copied.enc.yaml")),
        "{}",
        out.text()
    );
}

/// A Secret of namespace a put under b's path follows b's rule, so its recipients look right;
/// but then b's key opens a Secret of a: both that file and b's own are reported, naming the
/// other namespace.
#[test]
fn a_rule_whose_files_span_two_namespaces_is_found() {
    let repo = Repo::new();
    repo.encrypt("b/misplaced.enc.yaml", &secret("misplaced", "a"), &[]);
    let out = repo.check().code(230);
    out.never_shows(VALUE);
    let heads = heads(&out);
    assert_eq!(
        heads,
        [
            "b/db.enc.yaml: foreign-namespace-key",
            "b/misplaced.enc.yaml: foreign-namespace-key"
        ],
        "{}",
        out.text()
    );
    assert!(
        out.text()
            .contains("b/misplaced.enc.yaml: foreign-namespace-key: a Secret of namespace a"),
        "{}",
        out.text()
    );
}

/// One key for everything (a single rule) has no namespace keys to tell apart: nothing to find.
#[test]
fn a_single_rule_repository_has_no_custody_findings() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "only");
    write(
        dir.path(),
        ".sops.yaml",
        format!("creation_rules:\n  - path_regex: \\.enc\\.yaml$\n    age: {recipient}\n"),
    );
    for (name, ns) in [("one.enc.yaml", "a"), ("two.enc.yaml", "b")] {
        write(
            dir.path(),
            name,
            secret(name.trim_end_matches(".enc.yaml"), ns),
        );
        Cmd::credseal()
            .cwd(dir.path())
            .args(["encrypt", "-i", name])
            .run()
            .ok();
    }
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["check", "one.enc.yaml", "two.enc.yaml"])
        .run()
        .ok();
}

/// The repository's example Secrets: each opens with its namespace's example key (what that
/// namespace's `sops-age` Secret holds) and the admin key, and with no other namespace's key.
#[test]
fn the_examples_secrets_open_only_with_their_own_namespaces_key() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let namespaces = [
        "platform-services",
        "payments",
        "databases",
        "managed-postgres",
        "cache",
    ];
    let files = crate::support::files_ending(&repo.join("manifests"), ".enc.yaml");
    let mut seen = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let ns = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("namespace: "))
            .unwrap_or_else(|| panic!("{}: no namespace", f.display()))
            .to_owned();
        assert!(namespaces.contains(&ns.as_str()), "{}: {ns}", f.display());
        seen.insert(ns.clone());
        for other in namespaces {
            let key = repo.join(format!("keys-example/{other}.agekey"));
            let out = Cmd::credseal().key(&key).arg("decrypt").arg(f).run();
            if other == ns {
                assert_eq!(out.code, 0, "{}: {}", f.display(), out.stderr);
            } else {
                assert_eq!(
                    out.code,
                    128,
                    "{}: namespace {other}'s key must not open a Secret of {ns}",
                    f.display()
                );
            }
        }
        Cmd::credseal()
            .key(repo.join("keys-example/age.agekey"))
            .arg("decrypt")
            .arg(f)
            .run()
            .ok();
    }
    assert_eq!(
        seen.len(),
        namespaces.len(),
        "every example namespace has Secrets"
    );
}

/// `cluster-key init` in each namespace creates a key of that namespace's own, and says which
/// `.sops.yaml` rule its recipient belongs in.
#[test]
fn cluster_key_init_gives_each_namespace_its_own_key() {
    let api = crate::support::kube_api::KubeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), "a");
    let init = |ns: &str| {
        Cmd::credseal()
            .env("KUBECONFIG", &kubeconfig)
            .args(["cluster-key", "init", "--namespace", ns])
            .run()
            .ok()
    };
    let a = init("a");
    let b = init("b");
    assert!(a.text().starts_with("age1") && b.text().starts_with("age1"));
    assert_ne!(a.text(), b.text(), "each namespace has its own key");
    assert!(
        a.stderr
            .contains("the .sops.yaml rule for the files of namespace a"),
        "{}",
        a.stderr
    );
    assert_eq!(init("a").text(), a.text(), "init keeps an existing key");
    assert!(api.get("secrets", "a", "sops-age").is_some());
    assert!(api.get("secrets", "b", "sops-age").is_some());
}

/// `cluster-key add` is a read-modify-write of the key Secret guarded by its resourceVersion: a
/// concurrent change (409) is read again and retried, so no identity is lost; one that keeps
/// changing under it gives up with the conflict code and leaves the Secret as it was.
#[test]
fn cluster_key_add_retries_a_concurrent_change_and_gives_up_with_212() {
    use crate::support::kube_api::Fault;
    let api = crate::support::kube_api::KubeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), "a");
    let key = |action: &str| {
        Cmd::credseal()
            .env("KUBECONFIG", &kubeconfig)
            .args(["cluster-key", action, "--namespace", "a"])
            .run()
    };
    let first = key("init").ok().text();
    api.fail_next("update", "secrets", 2, Fault::Status(409));
    let second = key("add").ok().text();
    let shown = key("show").ok().text();
    assert!(
        shown.contains(first.trim()) && shown.contains(second.trim()),
        "both identities kept: {shown}"
    );
    api.fail_next("update", "secrets", 5, Fault::Status(409));
    let out = key("add").code(212);
    assert!(
        out.stderr.contains("changed concurrently 5 times in a row"),
        "{}",
        out.stderr
    );
    assert_eq!(key("show").ok().text(), shown, "nothing changed");
}
