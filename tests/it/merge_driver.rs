//! The merge driver through real `git merge`: key-level merges of encrypted files that
//! credseal and the real sops both decrypt, and conflicts reported by path, never by value.

use std::path::{Path, PathBuf};

use crate::support::{Cmd, Out, new_key, write};

const PW_FEATURE: &str = "feature-branch-password-5f4e3d";
const PW_MAIN: &str = "main-branch-password-1a2b3c";
const PW_BASE: &str = "base-password-7d8e9f0a";

struct Repo {
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = new_key(dir.path(), "team");
        let d = dir.path().to_owned();
        let d = d.as_path();
        write(
            d,
            ".sops.yaml",
            format!("creation_rules:\n  - path_regex: \\.enc\\.yaml$\n    age: {recipient}\n"),
        );
        write(d, ".gitattributes", "*.enc.yaml merge=credseal\n");
        write(d, ".gitignore", "*.agekey\n");
        let repo = Repo { dir, key };
        repo.git(&["init", "-q", "-b", "main"]).ok();
        repo.git(&[
            "config",
            "merge.credseal.driver",
            &format!(
                "{} merge-driver %O %A %B %P",
                env!("CARGO_BIN_EXE_credseal")
            ),
        ])
        .ok();
        write(
            d,
            "db.enc.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  username: app\n  password: {PW_BASE}\n  host: db1.internal\n"
            ),
        );
        repo.credseal(&["encrypt", "-i", "db.enc.yaml"]).ok();
        repo.git(&["add", "."]).ok();
        repo.git(&["commit", "-qm", "base"]).ok();
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> Out {
        Cmd::tool("git")
            .cwd(self.path())
            .key(&self.key)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .run()
    }

    fn credseal(&self, args: &[&str]) -> Out {
        Cmd::credseal()
            .cwd(self.path())
            .key(&self.key)
            .args(args)
            .run()
    }

    fn set(&self, key: &str, value: &str) {
        Cmd::credseal()
            .cwd(self.path())
            .key(&self.key)
            .args(["set", "db.enc.yaml", &format!(r#"["stringData"]["{key}"]"#)])
            .stdin(value)
            .run()
            .ok();
        self.git(&["commit", "-qam", key]).ok();
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.path().join("db.enc.yaml")).unwrap()
    }
}

fn enc_line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}: ENC[")))
        .unwrap()
}

#[test]
fn changes_to_different_keys_merge_and_decrypt_with_credseal_and_sops() {
    let repo = Repo::new();
    let base = repo.text();
    repo.git(&["checkout", "-qb", "feature"]).ok();
    repo.set("password", PW_FEATURE);
    let feature = repo.text();
    repo.git(&["checkout", "-q", "main"]).ok();
    repo.set("host", "db2.internal");

    let out = repo.git(&["merge", "-q", "--no-edit", "feature"]).ok();
    out.never_shows(PW_FEATURE);
    let merged = repo.text();
    let plain = repo.credseal(&["decrypt", "db.enc.yaml"]).ok().text();
    assert_eq!(
        plain,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n    name: db\nstringData:\n    username: app\n    password: {PW_FEATURE}\n    host: db2.internal\n"
        )
    );
    let by_sops = Cmd::sops()
        .cwd(repo.path())
        .key(&repo.key)
        .args(["decrypt", "db.enc.yaml"])
        .run()
        .ok()
        .text();
    assert_eq!(by_sops, plain);
    // Unchanged values keep their ciphertext; theirs keeps theirs (same data key).
    assert_eq!(enc_line(&merged, "username"), enc_line(&base, "username"));
    assert_eq!(
        enc_line(&merged, "password"),
        enc_line(&feature, "password")
    );
    repo.credseal(&["check"]).ok();
}

#[test]
fn the_same_key_changed_on_both_sides_is_a_reported_conflict() {
    let repo = Repo::new();
    repo.git(&["checkout", "-qb", "feature"]).ok();
    repo.set("password", PW_FEATURE);
    repo.git(&["checkout", "-q", "main"]).ok();
    repo.set("password", PW_MAIN);
    let ours = repo.text();

    let out = repo.git(&["merge", "--no-edit", "feature"]);
    assert_ne!(out.code, 0, "the merge stops");
    for v in [PW_FEATURE, PW_MAIN, PW_BASE] {
        out.never_shows(v);
    }
    assert!(
        out.stderr
            .contains(r#"db.enc.yaml: conflict at ["stringData"]["password"]"#),
        "{}",
        out.stderr
    );
    assert_eq!(repo.text(), ours, "ours is left untouched");
    let status = repo.git(&["status", "--porcelain"]).ok().text();
    assert!(status.contains("UU db.enc.yaml"), "{status}");
}
