//! What a user sees, snapshotted: `--help` of every command, the exit-code table, and the exit
//! code, stderr and stdout of the failures a user meets first and of the reports (`check`,
//! `diff`, `updatekeys --dry-run`). A substring assertion still passes when the wording around
//! it regresses; a snapshot shows every changed word as a diff to review.
//!
//! The snapshots are the files in `tests/it/snapshots/`. A missing or different one fails the
//! test (insta writes a `.snap.new` beside it, or nothing under `CI`). After an intended change:
//! `INSTA_UPDATE=always cargo test --test it snapshots::`, then read `git diff` before committing
//! (or `cargo insta review`, where cargo-insta is installed).

use std::path::{Path, PathBuf};

use regex::Regex;

use crate::support::{Cmd, Out, encrypt_yaml, new_key, write};

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: shop\ntype: Opaque\nstringData:\n  username: app\n  password: snapshot-test-password\n";

/// Compares `text` with the snapshot `name` (tests/it/snapshots/NAME.snap); `what` says in the
/// snapshot's header what the case is.
#[track_caller]
fn assert_snap(name: &str, what: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(what);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// The one place that makes output stable across runs: the temp dir, the recipients of the
/// scene's keys (by name) and any other, fingerprints (numbered, so "the same value" and "a
/// different value" stay visible), timestamps, ciphertext and armored data keys.
fn redact(text: &str, known: &[(&str, &str)]) -> String {
    let mut s = text.to_owned();
    for (from, to) in known {
        s = s.replace(from, to);
    }
    let enc =
        Regex::new(r"ENC\[AES256_GCM,data:[^,\]]*,iv:[^,\]]*,tag:[^,\]]*,type:(\w+)\]").unwrap();
    s = enc
        .replace_all(&s, "ENC[AES256_GCM,data:…,iv:…,tag:…,type:$1]")
        .into_owned();
    let armor = Regex::new(
        r"(?m)^([ \t]*)-----BEGIN AGE ENCRYPTED FILE-----\n(?:.*\n)*?[ \t]*-----END AGE ENCRYPTED FILE-----",
    )
    .unwrap();
    s = armor
        .replace_all(
            &s,
            "${1}-----BEGIN AGE ENCRYPTED FILE-----\n${1}…\n${1}-----END AGE ENCRYPTED FILE-----",
        )
        .into_owned();
    let recipient = Regex::new(r"age1[02-9ac-hj-np-z]{58}").unwrap();
    s = recipient.replace_all(&s, "<age1 …>").into_owned();
    let time = Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)").unwrap();
    s = time.replace_all(&s, "<time>").into_owned();
    let fp = Regex::new(r"fp:[0-9a-f]{8,}").unwrap();
    let mut seen: Vec<String> = Vec::new();
    s = fp
        .replace_all(&s, |c: &regex::Captures| {
            let f = c[0].to_owned();
            let n = match seen.iter().position(|x| *x == f) {
                Some(i) => i + 1,
                None => {
                    seen.push(f);
                    seen.len()
                }
            };
            format!("fp:<{n}>")
        })
        .into_owned();
    s
}

/// How a run shows in a snapshot: the command line, the exit code, then both streams.
fn transcript(args: &[&str], out: &Out) -> String {
    format!(
        "$ credseal {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.code,
        out.text(),
        out.stderr
    )
}

/// A temp dir with two identities in `keys/` (`k`, whose key every run is given unless it says
/// otherwise, and `other`), the Secret `secret.yaml` in plain text and `secret.enc.yaml`, it
/// encrypted to `k`.
struct Scene {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
    other_key: PathBuf,
    other: String,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let (key, recipient) = new_key(&keys, "k");
        let (other_key, other) = new_key(&keys, "other");
        write(dir.path(), "secret.yaml", SECRET);
        let enc = encrypt_yaml(dir.path(), &recipient, SECRET);
        write(dir.path(), "secret.enc.yaml", enc);
        Scene {
            dir,
            key,
            recipient,
            other_key,
            other,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A copy of `secret.enc.yaml` as `name`, with `edit` applied to its text.
    fn altered(&self, name: &str, edit: impl Fn(&str) -> String) -> PathBuf {
        let text = std::fs::read_to_string(self.path("secret.enc.yaml")).unwrap();
        let changed = edit(&text);
        assert_ne!(changed, text, "{name}: the edit changed nothing");
        write(self.dir.path(), name, changed)
    }

    /// A copy of `secret.enc.yaml` whose MAC no longer matches: lastmodified is authenticated
    /// by the MAC, so changing it is tampering the MAC detects.
    fn mac_mismatch(&self, name: &str) -> PathBuf {
        self.altered(name, |t| {
            Regex::new(r#"lastmodified: "[^"]*""#)
                .unwrap()
                .replace(t, r#"lastmodified: "2020-01-01T00:00:00Z""#)
                .into_owned()
        })
    }

    /// A subdirectory holding a `.sops.yaml` with one rule.
    fn rule_dir(&self, name: &str, path_regex: &str, age: &str) -> PathBuf {
        let d = self.path(name);
        std::fs::create_dir_all(&d).unwrap();
        write(
            &d,
            ".sops.yaml",
            format!(
                "creation_rules:\n  - path_regex: {path_regex}\n    encrypted_regex: ^(data|stringData)$\n    age: {age}\n"
            ),
        );
        d
    }

    /// Runs `cmd` (this build, with any environment it needs) with `args` in the scene's
    /// subdirectory `sub` ("" for the scene itself) and compares what the user sees with the
    /// snapshot `name`.
    #[track_caller]
    fn snap(&self, name: &str, what: &str, cmd: Cmd, sub: &str, args: &[&str]) {
        let out = cmd.cwd(self.path(sub)).args(args).run();
        let dir = self.dir.path().display().to_string();
        let canonical = self
            .dir
            .path()
            .canonicalize()
            .unwrap()
            .display()
            .to_string();
        let text = redact(
            &transcript(args, &out),
            &[
                (&canonical, "[TMP]"),
                (&dir, "[TMP]"),
                (&self.recipient, "<age1 of k>"),
                (&self.other, "<age1 of other>"),
            ],
        );
        assert_snap(name, what, &text);
    }

    /// This build with `k`'s key.
    fn cs(&self) -> Cmd {
        Cmd::credseal().key(&self.key)
    }
}

/// Every command's path below the top level (`["cluster-key", "add"]`), read from the
/// `Commands:` section of each `--help` (the command line lives in the binary), so a new
/// command gets a help snapshot without a test edit.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(prefix: &[String], out: &mut Vec<Vec<String>>) {
        let text = help(prefix);
        let names: Vec<String> = text
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with(' '))
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .filter(|n| n != "help")
            .collect();
        for name in names {
            let mut path = prefix.to_vec();
            path.push(name);
            out.push(path.clone());
            walk(&path, out);
        }
    }
    let mut out = Vec::new();
    walk(&[], &mut out);
    out
}

fn help_snapshot_name(path: &[String]) -> String {
    std::iter::once("help")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("_")
}

fn help(path: &[String]) -> String {
    let out = Cmd::credseal()
        // Help wraps at the terminal's width; a fixed one keeps the snapshots stable.
        .env("COLUMNS", "100")
        .args(path)
        .arg("--help")
        .run()
        .ok();
    assert_eq!(out.stderr, "", "credseal {path:?} --help");
    out.text()
}

#[test]
fn help_of_every_command() {
    let top = help(&[]);
    let (usage, table) = top
        .split_once("Exit codes:")
        .expect("--help ends with the exit-code table");
    assert_snap(
        "help",
        "credseal --help (without the exit-code table)",
        usage,
    );
    assert_snap(
        "exit_codes",
        "the exit-code table at the end of credseal --help",
        &format!("Exit codes:{table}"),
    );

    let paths = command_paths();
    assert!(paths.len() > 20, "{paths:?}");
    for path in &paths {
        assert_snap(
            &help_snapshot_name(path),
            &format!("credseal {} --help", path.join(" ")),
            &help(path),
        );
    }

    // A removed or renamed command leaves no snapshot behind that nothing checks.
    let wanted: Vec<String> = paths.iter().map(|p| help_snapshot_name(p)).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/snapshots");
    let stale: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".snap")?.to_owned();
            (stem.starts_with("help_") && !wanted.contains(&stem)).then_some(name)
        })
        .collect();
    assert!(
        stale.is_empty(),
        "help snapshots of commands that no longer exist (delete them): {stale:?}"
    );
}

#[test]
fn errors_a_user_meets_first() {
    let s = Scene::new();
    s.snap(
        "error_usage",
        "an unknown flag",
        s.cs(),
        "",
        &["decrypt", "--no-such-flag", "secret.enc.yaml"],
    );
    s.snap(
        "error_missing_file",
        "the file does not exist",
        s.cs(),
        "",
        &["decrypt", "missing.enc.yaml"],
    );
    s.snap(
        "error_not_sops",
        "decrypt of a plain YAML file",
        s.cs(),
        "",
        &["decrypt", "secret.yaml"],
    );
    s.mac_mismatch("mac.enc.yaml");
    s.snap(
        "error_mac_mismatch",
        "lastmodified changed after encryption",
        s.cs(),
        "",
        &["decrypt", "mac.enc.yaml"],
    );
    s.altered("tampered.enc.yaml", |t| {
        let at = t.find("password: ENC[AES256_GCM,data:").unwrap() + 30;
        let flipped = if &t[at..=at] == "A" { "B" } else { "A" };
        format!("{}{flipped}{}", &t[..at], &t[at + 1..])
    });
    s.snap(
        "error_tampered_value",
        "one value's ciphertext changed",
        s.cs(),
        "",
        &["decrypt", "tampered.enc.yaml"],
    );
    s.altered("version.enc.yaml", |t| {
        Regex::new(r"(?m)^    version: .*$")
            .unwrap()
            .replace(t, "    version: banana")
            .into_owned()
    });
    s.snap(
        "error_unknown_version",
        "the sops version in the metadata is not a version",
        s.cs(),
        "",
        &["decrypt", "version.enc.yaml"],
    );
    s.snap(
        "error_no_identity",
        "a key that is not one of the file's recipients",
        Cmd::credseal().key(&s.other_key),
        "",
        &["decrypt", "secret.enc.yaml"],
    );
    s.snap(
        "error_no_key",
        "no key configured at all",
        Cmd::credseal(),
        "",
        &["decrypt", "secret.enc.yaml"],
    );
    s.snap(
        "error_no_recipients",
        "encrypt without --age and without a .sops.yaml",
        s.cs(),
        "",
        &["encrypt", "secret.yaml"],
    );
    let rules = s.rule_dir("rules", r"\.enc\.yaml$", &s.recipient);
    write(&rules, "secret.yaml", SECRET);
    s.snap(
        "error_no_matching_rule",
        "encrypt of a file that no creation rule matches",
        s.cs(),
        "rules",
        &["encrypt", "secret.yaml"],
    );
    s.snap(
        "error_bad_recipient",
        "a truncated recipient",
        s.cs(),
        "",
        &["encrypt", "--age", "age1qyqszqgpqyqszqgp", "secret.yaml"],
    );
    s.snap(
        "error_already_encrypted",
        "encrypt of an encrypted file",
        s.cs(),
        "",
        &["encrypt", "--age", &s.recipient, "secret.enc.yaml"],
    );
    s.snap(
        "error_edit_no_change",
        "the editor exits without changing the file",
        s.cs().env("EDITOR", "true"),
        "",
        &["edit", "secret.enc.yaml"],
    );
}

#[test]
fn check_findings() {
    let s = Scene::new();
    // A repository whose rule wants both keys: every file below misses `other`.
    let repo = s.rule_dir("repo", r"\.yaml$", &format!("{},{}", s.recipient, s.other));
    write(&repo, "plain.yaml", SECRET);
    let enc = std::fs::read(s.path("secret.enc.yaml")).unwrap();
    write(&repo, "one-recipient.enc.yaml", &enc);
    let mac = s.mac_mismatch("mac.enc.yaml");
    std::fs::rename(mac, repo.join("mac.enc.yaml")).unwrap();
    s.snap(
        "check_text",
        "check of a plaintext Secret, a missing recipient and a broken MAC",
        s.cs(),
        "repo",
        &["check"],
    );
    s.snap(
        "check_json",
        "the same check, as JSON",
        s.cs(),
        "repo",
        &["check", "--format", "json"],
    );
    write(&repo, "plain.yaml", "a: b\n");
    std::fs::remove_file(repo.join("mac.enc.yaml")).unwrap();
    std::fs::remove_file(repo.join("one-recipient.enc.yaml")).unwrap();
    s.snap(
        "check_clean",
        "check with nothing to report",
        s.cs(),
        "repo",
        &["check"],
    );
}

#[test]
fn command_output() {
    let s = Scene::new();
    // The encrypted file's layout (key order, indentation, metadata) is what sops reads and
    // what a reviewer sees in git.
    s.snap(
        "encrypt",
        "an encrypted Secret as credseal writes it",
        s.cs(),
        "",
        &["encrypt", "--age", &s.recipient, "secret.yaml"],
    );
    let b = s.path("b.enc.yaml");
    std::fs::copy(s.path("secret.enc.yaml"), &b).unwrap();
    for (path, value) in [
        (r#"["stringData"]["password"]"#, "changed-password"),
        (r#"["stringData"]["copy"]"#, "changed-password"),
    ] {
        s.cs().arg("set").arg(&b).arg(path).stdin(value).run().ok();
    }
    s.cs()
        .arg("unset")
        .arg(&b)
        .arg(r#"["stringData"]["username"]"#)
        .run()
        .ok();
    s.snap(
        "diff",
        "one value changed, one added (the same new value), one removed",
        s.cs(),
        "",
        &["diff", "secret.enc.yaml", "b.enc.yaml"],
    );
    s.snap(
        "diff_textconv",
        "git's textconv view of one file",
        s.cs(),
        "",
        &["diff", "--textconv", "b.enc.yaml"],
    );

    // The rule wants k and other; the file has k and a third recipient that left.
    let dir = s.rule_dir(
        "team",
        r"\.enc\.yaml$",
        &format!("{},{}", s.recipient, s.other),
    );
    let (_, departed) = new_key(&s.path("keys"), "departed");
    let enc = crate::support::encrypt_with(
        Cmd::credseal(),
        &dir,
        &format!("{},{departed}", s.recipient),
        &[],
        &s.path("secret.yaml"),
    );
    write(&dir, "db.enc.yaml", enc);
    s.snap(
        "updatekeys_dry_run",
        "a recipient to add and one to remove",
        s.cs(),
        "team",
        &["updatekeys", "--dry-run", "db.enc.yaml"],
    );
}
