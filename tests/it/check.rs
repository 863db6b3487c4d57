//! `credseal check` in temporary git repositories, as a pre-commit hook and a CI step would run it.

use std::path::{Path, PathBuf};

use crate::support::{Cmd, Out, new_key, write};

const VALUE: &str = "hunter2-correct-horse-battery";

fn secret_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: shop\ntype: Opaque\nstringData:\n  username: app\n  password: {VALUE}\n"
    )
}

struct Repo {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join(".keys");
        std::fs::create_dir(&keys).unwrap();
        let (key, recipient) = new_key(&keys, "team");
        write(
            dir.path(),
            ".sops.yaml",
            format!(
                "creation_rules:\n  - path_regex: \\.(yaml|json)$\n    encrypted_regex: ^(data|stringData|password)$\n    age: {recipient}\n"
            ),
        );
        let repo = Repo {
            dir,
            key,
            recipient,
        };
        repo.git(&["init", "-q"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) {
        Cmd::tool("git")
            .cwd(self.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .run()
            .ok();
    }

    fn encrypt(&self, name: &str, plain: &str, extra: &[&str]) {
        crate::support::encrypt_in_place(self.path(), name, plain, extra);
    }

    fn check(&self, args: &[&str]) -> Out {
        Cmd::credseal()
            .cwd(self.path())
            .arg("check")
            .args(args)
            .run()
    }
}

#[test]
fn a_staged_plaintext_secret_fails_and_its_value_is_never_shown() {
    let repo = Repo::new();
    write(repo.path(), "db.yaml", secret_yaml("db"));
    repo.git(&["add", "db.yaml"]);
    let out = repo.check(&["--staged"]).code(230);
    out.never_shows(VALUE);
    assert!(
        out.text()
            .starts_with("db.yaml: document 1: plaintext-secret: Secret shop/db has 2 stringData value(s) in plain text (username, password)"),
        "{}",
        out.text()
    );

    // --staged reads the index: encrypting the work-tree copy without staging changes nothing.
    repo.encrypt("db.yaml", &secret_yaml("db"), &[]);
    repo.check(&["--staged"]).code(230).never_shows(VALUE);
    repo.check(&[]).ok();
    repo.git(&["add", "db.yaml"]);
    repo.check(&["--staged"]).ok();

    // A plaintext file in the work tree that is not staged is not what the hook judges.
    write(repo.path(), "loose.yaml", secret_yaml("loose"));
    repo.check(&["--staged"]).ok();
    repo.check(&[]).code(230).never_shows(VALUE);
}

#[test]
fn a_clean_repo_passes_and_macs_are_verified_with_an_identity() {
    let repo = Repo::new();
    repo.encrypt("db.yaml", &secret_yaml("db"), &[]);
    write(
        repo.path(),
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {mode: fast}\n",
    );
    write(repo.path(), "notes.txt", format!("password: {VALUE}\n"));
    write(repo.path(), "chart.yaml", "{{ if .Values.x }}\nkey: [\n");
    repo.git(&["add", "."]);
    repo.git(&["commit", "-qm", "init"]);
    let out = repo.check(&[]).ok();
    assert_eq!(out.text(), "");
    assert!(
        out.stderr
            .contains("3 file(s) checked, 1 encrypted (0 MAC-verified), 0 finding(s)"),
        "{}",
        out.stderr
    );
    let out = Cmd::credseal()
        .cwd(repo.path())
        .key(&repo.key)
        .arg("check")
        .run()
        .ok();
    assert!(
        out.stderr.contains("1 encrypted (1 MAC-verified)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_stale_recipient_is_named() {
    let repo = Repo::new();
    let (_, departed) = new_key(repo.path(), "departed");
    repo.encrypt(
        "db.yaml",
        &secret_yaml("db"),
        &["--age", &format!("{},{departed}", repo.recipient)],
    );
    let out = repo.check(&[]).code(230);
    assert_eq!(
        out.text(),
        format!(
            "db.yaml: recipients: recipient {departed} is not in the .sops.yaml rule (stale); run `credseal updatekeys`\n"
        )
    );
    Cmd::credseal()
        .cwd(repo.path())
        .key(&repo.key)
        .args(["updatekeys", "-y", "db.yaml"])
        .run()
        .ok();
    repo.check(&[]).ok();
}

#[test]
fn a_hand_edited_clear_value_and_a_broken_value_are_found() {
    let repo = Repo::new();
    repo.encrypt(
        "app.yaml",
        "db:\n  host: db.internal\n  password: initial-password-value\n",
        &[],
    );
    let path = repo.path().join("app.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let enc_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("password: ENC["))
        .unwrap()
        .to_owned();
    std::fs::write(
        &path,
        text.replace(&enc_line, &format!("    password: {VALUE}")),
    )
    .unwrap();
    let out = repo.check(&[]).code(230);
    out.never_shows(VALUE);
    assert!(
        out.text().starts_with(
            "app.yaml: [\"db\"][\"password\"]: clear-value: value in clear where the file's own rules require it encrypted"
        ),
        "{}",
        out.text()
    );

    let broken = enc_line.replace("ENC[AES256_GCM,data:", "ENC[AES256_GCM,data:!!");
    std::fs::write(&path, text.replace(&enc_line, &broken)).unwrap();
    let out = repo.check(&[]).code(230);
    assert!(
        out.text()
            .starts_with("app.yaml: [\"db\"][\"password\"]: structure: malformed ENC[...] value"),
        "{}",
        out.text()
    );
    let unknown = text.lines().map(|l| {
        if l.trim_start().starts_with("version: ") {
            "    version: banana".to_owned()
        } else {
            l.to_owned()
        }
    });
    std::fs::write(&path, unknown.collect::<Vec<_>>().join("\n")).unwrap();
    let out = repo.check(&[]).code(230);
    assert_eq!(
        out.text(),
        "app.yaml: structure: sops metadata: version \"banana\" is not a semantic version (MAJOR.MINOR.PATCH)\n"
    );
}

#[test]
fn secrets_inside_lists_and_later_documents_are_found() {
    let repo = Repo::new();
    write(
        repo.path(),
        "bundle.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a}}\n---\napiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Secret\n    metadata: {{name: inner}}\n    data: {{password: {}}}\n",
            crate::support::b64(VALUE)
        ),
    );
    let out = repo.check(&[]).code(230);
    out.never_shows(&crate::support::b64(VALUE));
    assert_eq!(
        out.text(),
        "bundle.yaml: document 2, items[0]: plaintext-secret: Secret inner has 1 data value(s) in plain text (password); encrypt it with `credseal encrypt`\n"
    );
}

#[test]
fn json_output_parses_and_a_bad_mac_is_reported() {
    let repo = Repo::new();
    repo.encrypt("db.yaml", &secret_yaml("db"), &[]);
    let path = repo.path().join("db.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // A changed lastmodified no longer matches the MAC's additional data.
    let tampered = text.replacen("lastmodified: \"20", "lastmodified: \"19", 1);
    assert_ne!(tampered, text);
    std::fs::write(&path, tampered).unwrap();
    repo.check(&[]).ok();
    let out = Cmd::credseal()
        .cwd(repo.path())
        .key(&repo.key)
        .args(["check", "--format", "json"])
        .run()
        .code(230);
    out.never_shows(VALUE);
    let doc: serde_json::Value = serde_json::from_str(&out.text()).unwrap();
    assert_eq!(doc["checked"], 2, ".sops.yaml and db.yaml");
    assert_eq!(doc["encrypted"], 1);
    assert_eq!(doc["findings"][0]["file"], "db.yaml");
    assert_eq!(doc["findings"][0]["check"], "mac");
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1);
}

#[test]
fn staged_checks_use_the_staged_sops_yaml() {
    let repo = Repo::new();
    repo.encrypt("db.yaml", &secret_yaml("db"), &[]);
    repo.git(&["add", "."]);
    let (_, other) = new_key(repo.path(), "other");
    let rules = std::fs::read_to_string(repo.path().join(".sops.yaml")).unwrap();
    write(
        repo.path(),
        ".sops.yaml",
        rules.replace(&repo.recipient, &other),
    );
    repo.check(&["--staged"]).ok();
    let out = repo.check(&[]).code(230);
    assert!(
        out.text().contains(&format!(
            "recipient {other} required by .sops.yaml is missing"
        )),
        "{}",
        out.text()
    );
    // From a subdirectory the staged rules are found the same way, above it.
    std::fs::create_dir(repo.path().join("sub")).unwrap();
    std::fs::copy(repo.path().join("db.yaml"), repo.path().join("sub/db.yaml")).unwrap();
    repo.git(&["add", "sub/db.yaml"]);
    let in_sub = |args: &[&str]| {
        Cmd::credseal()
            .cwd(repo.path().join("sub"))
            .arg("check")
            .args(args)
            .run()
    };
    let out = in_sub(&["--staged"]).ok();
    assert!(
        out.stderr.contains("1 file(s) checked, 1 encrypted"),
        "{}",
        out.stderr
    );
    let out = in_sub(&[]).code(230);
    assert!(
        out.text().starts_with("db.yaml: recipients: "),
        "{}",
        out.text()
    );
}

#[test]
fn git_ignored_and_credsealignore_paths_are_not_judged() {
    let repo = Repo::new();
    write(repo.path(), ".gitignore", "build/\n");
    for dir in ["build", "fixtures", "app"] {
        std::fs::create_dir(repo.path().join(dir)).unwrap();
        write(&repo.path().join(dir), "s.yaml", secret_yaml(dir));
    }
    write(repo.path(), ".credsealignore", "# test data\nfixtures/\n");
    let out = repo.check(&[]).code(230);
    out.never_shows(VALUE);
    let text = out.text();
    let files: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(files, ["app/s.yaml"], "{text}");
    // A file named on the command line is checked even where git ignores it.
    repo.check(&["build/s.yaml"]).code(230).never_shows(VALUE);
}

/// Finding lines up to their check name (`file: location: check`), without the messages.
fn finding_heads(out: &Out) -> Vec<String> {
    const CHECKS: [&str; 7] = [
        "plaintext-secret",
        "unparsable-secret",
        "invalid-name",
        "clear-value",
        "recipients",
        "structure",
        "mac",
    ];
    out.text()
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(": ").collect();
            let end = parts.iter().position(|p| CHECKS.contains(p)).unwrap() + 1;
            parts[..end].join(": ")
        })
        .collect()
}

#[test]
fn a_plaintext_left_by_a_killed_write_is_found_whatever_its_name() {
    let repo = Repo::new();
    // What a killed `decrypt -i` left before temp files kept the extension, and plaintext
    // saved under names without a YAML/JSON extension.
    write(repo.path(), ".credseal-Ab12Cd", secret_yaml("old-temp"));
    write(
        repo.path(),
        ".db.yaml.credseal-Ab12Cd.yaml",
        secret_yaml("new-temp"),
    );
    write(repo.path(), "secret", secret_yaml("no-ext"));
    write(
        repo.path(),
        "secret.txt",
        format!(
            "{{\"kind\":\"Secret\",\"metadata\":{{\"name\":\"txt\"}},\"stringData\":{{\"password\":\"{VALUE}\"}}}}"
        ),
    );
    // Text that is no manifest is not judged, nor counted.
    write(repo.path(), "NOTES", format!("password: {VALUE}\n"));
    write(repo.path(), "run.sh", "#!/bin/sh\necho kind: Secret\n");
    repo.git(&["add", "."]);
    let out = repo.check(&["--staged"]).code(230);
    out.never_shows(VALUE);
    assert_eq!(
        finding_heads(&out),
        [
            ".credseal-Ab12Cd: document 1: plaintext-secret",
            ".db.yaml.credseal-Ab12Cd.yaml: document 1: plaintext-secret",
            "secret: document 1: plaintext-secret",
            "secret.txt: document 1: plaintext-secret",
        ],
        "{}",
        out.text()
    );
    assert!(
        out.stderr.contains("5 file(s) checked"),
        ".sops.yaml and the four Secrets: {}",
        out.stderr
    );
    // An encrypted file without an extension is checked like any other.
    repo.encrypt(
        "sealed",
        &secret_yaml("sealed"),
        &["--input-type", "yaml", "--age", &repo.recipient],
    );
    let out = repo.check(&["sealed"]).ok();
    assert!(
        out.stderr.contains("1 file(s) checked, 1 encrypted"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_plaintext_secret_is_found_beside_what_the_store_cannot_read() {
    let repo = Repo::new();
    let secret = secret_yaml("db");
    write(
        repo.path(),
        "list-beside.yaml",
        format!("- a\n- list\n---\n{secret}"),
    );
    write(
        repo.path(),
        "scalar-beside.yaml",
        format!("just text\n---\n{secret}"),
    );
    write(
        repo.path(),
        "int-key.yaml",
        secret.replace(
            "  namespace: shop\n",
            "  namespace: shop\n  annotations: {2024: reviewed}\n",
        ),
    );
    write(
        repo.path(),
        "bom.json",
        format!(
            "\u{feff}{{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"metadata\": {{\"name\": \"db\"}}, \"stringData\": {{\"password\": \"{VALUE}\"}}}}\n"
        ),
    );
    write(
        repo.path(),
        "array.json",
        format!(
            "[{{\"kind\": \"Secret\", \"metadata\": {{\"name\": \"db\"}}, \"data\": {{\"password\": \"{VALUE}\"}}}}]\n"
        ),
    );
    let mut latin1 = b"# r\xe9sum\xe9 of the team's database\n".to_vec();
    latin1.extend_from_slice(secret.as_bytes());
    write(repo.path(), "latin1.yaml", latin1);
    // Not YAML at all, but a Secret by its look: nothing in it can be judged, so it is refused.
    write(repo.path(), "broken.yaml", format!("{secret}extra: [\n"));
    write(
        repo.path(),
        "broken.json",
        format!("{{\"kind\":\"Secret\",\"stringData\":{{\"password\":\"{VALUE}\"}}\n"),
    );
    // A template with no Secret in it is still not ours to judge.
    write(repo.path(), "chart.yaml", "{{ if .Values.x }}\nkey: [\n");
    let out = repo.check(&[]).code(230);
    out.never_shows(VALUE);
    assert_eq!(
        finding_heads(&out),
        [
            "array.json: document 1, [0]: plaintext-secret",
            "bom.json: document 1: plaintext-secret",
            "broken.json: unparsable-secret",
            "broken.yaml: unparsable-secret",
            "int-key.yaml: document 1: plaintext-secret",
            "latin1.yaml: document 1: plaintext-secret",
            "list-beside.yaml: document 2: plaintext-secret",
            "scalar-beside.yaml: document 2: plaintext-secret",
        ],
        "{}",
        out.text()
    );
    assert!(
        out.text().contains(
            "broken.yaml: unparsable-secret: looks like a Kubernetes Secret but cannot be read"
        ),
        "{}",
        out.text()
    );
    let json = Cmd::credseal()
        .cwd(repo.path())
        .args(["check", "--format", "json", "broken.yaml"])
        .run()
        .code(230);
    let doc: serde_json::Value = serde_json::from_str(&json.text()).unwrap();
    assert_eq!(doc["findings"][0]["check"], "unparsable-secret");
}

#[test]
fn secret_names_and_keys_the_api_server_refuses_are_found() {
    let repo = Repo::new();
    let plain = |name: &str, ns: &str, key: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n  {key}: {VALUE}\n"
        )
    };
    repo.encrypt(
        "escaped.yaml",
        &plain("../../escaped", "shop", "password"),
        &[],
    );
    repo.encrypt("projected.yaml", &plain("db", "shop", "..data"), &[]);
    write(repo.path(), "abs.yaml", plain("/abs", "Bad_NS", "password"));
    repo.encrypt("good.yaml", &plain("db.example", "shop", "tls.crt"), &[]);
    let out = repo.check(&[]).code(230);
    out.never_shows(VALUE);
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "abs.yaml: document 1: plaintext-secret: Secret Bad_NS//abs has 1 stringData value(s) in plain text (password); encrypt it with `credseal encrypt`",
            "abs.yaml: document 1: invalid-name: metadata.name \"/abs\" is not a valid Secret name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); the API server refuses it",
            "abs.yaml: document 1: invalid-name: metadata.namespace \"Bad_NS\" is not a valid namespace (lowercase letters, digits and '-', at most 63 characters); the API server refuses it",
            "escaped.yaml: document 1: invalid-name: metadata.name \"../../escaped\" is not a valid Secret name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters); the API server refuses it",
            "projected.yaml: document 1: invalid-name: stringData key \"..data\" is not a valid Secret key (letters, digits, '-', '_' and '.', not starting with '..'); the API server refuses it",
        ],
        "{text}"
    );
}
