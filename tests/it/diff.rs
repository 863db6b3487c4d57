//! `credseal diff` between two files and as git's textconv driver: key paths and keyed
//! fingerprints, never a value.

use std::path::{Path, PathBuf};

use crate::support::{Cmd, Out, new_key, write};

const OLD_PW: &str = "first-password-0b1c2d3e4f";
const NEW_PW: &str = "second-password-9a8b7c6d5e";
const USER: &str = "service-account-user";

fn plain() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  username: {USER}\n  password: {OLD_PW}\n"
    )
}

fn cs(key: &Path) -> Cmd {
    Cmd::credseal().key(key)
}

fn set(key: &Path, file: &Path, path: &str, value: &str) {
    cs(key)
        .arg("set")
        .arg(file)
        .arg(path)
        .stdin(value)
        .run()
        .ok();
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let a = write(dir.path(), "a.yaml", plain());
    cs(&key)
        .args(["encrypt", "-i", "--age", &recipient])
        .arg(&a)
        .run()
        .ok();
    (dir, key, a)
}

fn shows_no_value(out: &Out) {
    for v in [OLD_PW, NEW_PW, USER] {
        out.never_shows(v);
    }
}

#[test]
fn changed_added_and_removed_keys_are_shown_as_fingerprints() {
    let (dir, key, a) = setup();
    let b = dir.path().join("b.yaml");
    std::fs::copy(&a, &b).unwrap();
    set(&key, &b, r#"["stringData"]["password"]"#, NEW_PW);
    // The same value under another key has the same fingerprint.
    set(&key, &b, r#"["stringData"]["copy"]"#, NEW_PW);
    cs(&key)
        .arg("unset")
        .arg(&b)
        .arg(r#"["stringData"]["username"]"#)
        .run()
        .ok();
    let out = cs(&key).arg("diff").arg(&a).arg(&b).run().ok();
    shows_no_value(&out);
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let (changed, rest) = lines[0]
        .strip_prefix(r#"~ ["stringData"]["password"]: fp:"#)
        .and_then(|l| l.split_once(" -> fp:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_ne!(changed, rest);
    assert_eq!(changed.len(), 16);
    assert_eq!(lines[1], format!(r#"+ ["stringData"]["copy"]: fp:{rest}"#));
    assert!(
        lines[2].starts_with(r#"- ["stringData"]["username"]: fp:"#),
        "{text}"
    );
    assert!(
        out.stderr
            .contains("1 changed, 1 added, 1 removed, 4 unchanged"),
        "{}",
        out.stderr
    );

    // A rekey changes every ciphertext and the data key, but no value.
    let c = dir.path().join("c.yaml");
    std::fs::copy(&b, &c).unwrap();
    cs(&key).arg("rekey").arg(&c).run().ok();
    assert_ne!(std::fs::read(&b).unwrap(), std::fs::read(&c).unwrap());
    let out = cs(&key).arg("diff").arg(&b).arg(&c).run().ok();
    assert_eq!(out.text(), "");
    assert!(out.stderr.contains("0 changed, 0 added, 0 removed"));
}

#[test]
fn diff_needs_an_identity_and_says_so() {
    let (dir, _key, a) = setup();
    let out = Cmd::credseal().arg("diff").arg(&a).arg(&a).run().code(128);
    assert!(out.stderr.contains("a.yaml"), "{}", out.stderr);
    drop(dir);
}

fn git(dir: &Path, key: Option<&Path>, args: &[&str]) -> Out {
    let mut c = Cmd::tool("git")
        .cwd(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args);
    if let Some(k) = key {
        c = c.key(k);
    }
    c.run().ok()
}

#[test]
fn git_diff_through_the_textconv_driver() {
    let (dir, key, a) = setup();
    let d = dir.path();
    git(d, None, &["init", "-q"]);
    write(d, ".gitattributes", "*.yaml diff=credseal\n");
    git(
        d,
        None,
        &[
            "config",
            "diff.credseal.textconv",
            &format!("{} diff --textconv", env!("CARGO_BIN_EXE_credseal")),
        ],
    );
    git(d, None, &["add", "."]);
    git(d, None, &["commit", "-qm", "one"]);
    set(&key, &a, r#"["stringData"]["password"]"#, NEW_PW);

    let out = git(d, Some(&key), &["diff", "--no-color", "a.yaml"]);
    shows_no_value(&out);
    let text = out.text();
    let removed: Vec<&str> = text.lines().filter(|l| l.starts_with("-[")).collect();
    let added: Vec<&str> = text.lines().filter(|l| l.starts_with("+[")).collect();
    assert_eq!(removed.len(), 1, "{text}");
    assert_eq!(added.len(), 1, "{text}");
    assert!(removed[0].starts_with(r#"-["stringData"]["password"]: fp:"#));
    assert!(added[0].starts_with(r#"+["stringData"]["password"]: fp:"#));
    assert!(
        text.contains(r#" ["metadata"]["name"]: "db""#),
        "clear values shown as context: {text}"
    );

    // Without an identity the driver passes the file through: ciphertext lines, no failure.
    let out = git(d, None, &["diff", "--no-color", "a.yaml"]);
    shows_no_value(&out);
    assert!(
        out.text().contains("+    password: ENC[AES256_GCM,data:"),
        "{}",
        out.text()
    );
}
