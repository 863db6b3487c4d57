//! Teams that mix key types: PGP (wrapped offline from a public key), cloud keys credseal
//! cannot reach (kept byte for byte, refused where a new data key would need them), rules
//! and files compared whatever the type, and files last written by an older sops keeping
//! their metadata layout and version. Checked against the real sops 3.11 and gpg.

use std::path::{Path, PathBuf};

use crate::support::{Cmd, Out, new_key, require, write};

/// A throwaway GnuPG home with one ed25519 key (cv25519 encryption subkey).
struct Gpg {
    home: tempfile::TempDir,
    fp: String,
}

impl Gpg {
    fn new() -> Gpg {
        require("gpg");
        let home = tempfile::tempdir().unwrap();
        let gpg = |args: &[&str]| {
            Cmd::tool("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--quiet", "--passphrase", ""])
                .args(args)
                .run()
                .ok()
        };
        gpg(&[
            "--quick-gen-key",
            "credseal test <t@example.com>",
            "ed25519",
            "cert,sign",
            "never",
        ]);
        let listed = gpg(&["--with-colons", "--list-keys"]).text();
        let fp = listed
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .map(|l| l.trim_end_matches(':').to_owned())
            .expect("a fingerprint");
        gpg(&["--quick-add-key", &fp, "cv25519", "encr", "never"]);
        Gpg { home, fp }
    }

    fn export(&self, dir: &Path) -> PathBuf {
        let out = Cmd::tool("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--armor", "--export", &self.fp])
            .run()
            .ok();
        write(dir, "team.asc", out.stdout)
    }

    /// `sops decrypt` with this gpg home and no age key at all: only the PGP entry can open it.
    fn sops_decrypts(&self, file: &Path) -> Out {
        Cmd::sops()
            .env("GNUPGHOME", self.home.path())
            .arg("decrypt")
            .arg(file)
            .run()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Cmd::tool("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .run();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// The lines of the `sops:` block with every value blanked: the metadata's layout.
fn layout(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("sops:"))
        .filter_map(|l| {
            let key = l.trim_start().trim_start_matches("- ");
            let name = &key[..key.find(':')?];
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .then(|| l[..l.find(':').unwrap() + 1].to_owned())
        })
        .collect()
}

/// A kms entry as sops 3.13 writes it, spliced into a file's metadata: credseal cannot reach
/// KMS, and the metadata is outside the MAC, so the file still opens with its age key.
fn kms_entry(arn: &str) -> String {
    format!(
        "    kms:\n        - arn: {arn}\n          aws_profile: \"\"\n          created_at: \"2026-01-01T00:00:00Z\"\n          enc: AQICAHhWrappedByKms==\n"
    )
}

fn add_kms_entry(file: &Path, arn: &str) {
    let text = read(file);
    let entry = kms_entry(arn);
    let at = text.find("    lastmodified:").unwrap();
    std::fs::write(file, format!("{}{entry}{}", &text[..at], &text[at..])).unwrap();
}

#[test]
fn rekey_rewraps_pgp_and_sops_opens_it_with_gpg_alone() {
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::sops()
        .cwd(dir.path())
        .env("GNUPGHOME", gpg.home.path())
        .args(["encrypt", "--pgp", &gpg.fp, "--age", &recipient])
        .arg(&plain)
        .run()
        .ok();
    let file = write(dir.path(), "f.yaml", &enc.stdout);
    Cmd::credseal()
        .key(&key)
        .env("GNUPGHOME", gpg.home.path())
        .arg("rekey")
        .arg(&file)
        .run()
        .ok();
    let after = read(&file);
    assert!(after.contains(&format!("fp: {}", gpg.fp)), "{after}");
    assert_ne!(
        after.split("pgp:").nth(1),
        String::from_utf8(enc.stdout).unwrap().split("pgp:").nth(1),
        "the PGP entry must hold the new data key"
    );
    assert_eq!(gpg.sops_decrypts(&file).ok().text(), "password: hunter2\n");
    Cmd::credseal()
        .key(&key)
        .arg("decrypt")
        .arg(&file)
        .run()
        .ok();
}

#[test]
fn rekey_refuses_a_key_it_cannot_wrap_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::credseal()
        .args(["encrypt", "--age", &recipient])
        .arg(&plain)
        .run()
        .ok();
    let file = write(dir.path(), "f.yaml", &enc.stdout);
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/team";
    add_kms_entry(&file, arn);
    let before = read(&file);
    let out = Cmd::credseal()
        .key(&key)
        .arg("rekey")
        .arg(&file)
        .run()
        .code(111);
    assert!(out.stderr.contains(arn), "{}", out.stderr);
    assert!(out.stderr.contains("sops rotate"), "{}", out.stderr);
    assert_eq!(read(&file), before, "nothing may change");
    // Commands that keep the data key keep the entry byte for byte.
    Cmd::credseal()
        .key(&key)
        .args(["set", "--json"])
        .arg(&file)
        .arg(r#"["password"]"#)
        .stdin(r#""changed""#)
        .run()
        .ok();
    let after = read(&file);
    assert!(after.contains(&kms_entry(arn)), "{after}");
}

#[test]
fn a_rule_with_pgp_and_age_is_followed_by_encrypt_updatekeys_and_check() {
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    gpg.export(dir.path());
    let age_only = format!("creation_rules:\n  - age: {recipient}\n");
    let with_pgp = format!(
        "pgp_public_keys: [team.asc]\ncreation_rules:\n  - age: {recipient}\n    pgp: {}\n",
        gpg.fp
    );
    write(dir.path(), ".sops.yaml", &age_only);
    let plain = write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "p.yaml"])
        .run()
        .ok();
    let old = write(dir.path(), "old.enc.yaml", &enc.stdout);

    // The rule gains a PGP key: check flags the file, updatekeys adds the key, sops opens
    // it with gpg alone.
    write(dir.path(), ".sops.yaml", &with_pgp);
    let checked = Cmd::credseal()
        .cwd(dir.path())
        .args(["check", "old.enc.yaml"])
        .run()
        .code(230);
    assert!(
        checked.text().contains(&format!("pgp key {}", gpg.fp)),
        "{}",
        checked.text()
    );
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["updatekeys", "-y", "old.enc.yaml"])
        .run()
        .ok();
    assert_eq!(gpg.sops_decrypts(&old).ok().text(), "password: hunter2\n");
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["check", "old.enc.yaml"])
        .run()
        .ok();

    // A new file under the rule is wrapped for both (the public key from pgp_public_keys:,
    // no gpg home given to credseal).
    let enc = Cmd::credseal()
        .cwd(dir.path())
        .arg("encrypt")
        .arg(&plain)
        .run()
        .ok();
    let new = write(dir.path(), "new.enc.yaml", &enc.stdout);
    assert!(read(&new).contains(&format!("fp: {}", gpg.fp)));
    assert_eq!(gpg.sops_decrypts(&new).ok().text(), "password: hunter2\n");
}

#[test]
fn a_rule_with_a_cloud_key_is_refused_not_half_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (_key, recipient) = new_key(dir.path(), "k");
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/team";
    write(
        dir.path(),
        ".sops.yaml",
        format!("creation_rules:\n  - age: {recipient}\n    kms: {arn}\n"),
    );
    write(dir.path(), "p.yaml", "password: hunter2\n");
    let out_path = dir.path().join("p.enc.yaml");
    let out = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "p.yaml", "--output"])
        .arg(&out_path)
        .run()
        .code(111);
    assert!(out.stderr.contains(arn), "{}", out.stderr);
    assert!(!out_path.exists(), "no half-keyed file may be written");
}

#[test]
fn updatekeys_removes_keys_the_rule_no_longer_lists_whatever_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let (_gone_key, gone) = new_key(dir.path(), "gone");
    write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &format!("{recipient},{gone}"), "p.yaml"])
        .run()
        .ok();
    let file = write(dir.path(), "f.enc.yaml", &enc.stdout);
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/old";
    add_kms_entry(&file, arn);
    write(
        dir.path(),
        ".sops.yaml",
        format!("creation_rules:\n  - age: {recipient}\n"),
    );
    let checked = Cmd::credseal()
        .cwd(dir.path())
        .args(["check", "f.enc.yaml"])
        .run()
        .code(230);
    assert!(
        checked.text().contains(&format!("kms key {arn}")),
        "{}",
        checked.text()
    );

    let before = read(&file);
    let dry = Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["updatekeys", "--dry-run", "f.enc.yaml"])
        .run()
        .ok();
    assert!(dry.stderr.contains(&format!("- {gone}")), "{}", dry.stderr);
    assert!(
        dry.stderr.contains(&format!("- kms {arn}")),
        "{}",
        dry.stderr
    );
    assert_eq!(read(&file), before, "--dry-run writes nothing");

    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["updatekeys", "-y", "f.enc.yaml"])
        .run()
        .ok();
    let after = read(&file);
    assert!(!after.contains(&gone) && !after.contains(arn), "{after}");
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["check", "f.enc.yaml"])
        .run()
        .ok();
    Cmd::sops().key(&key).arg("decrypt").arg(&file).run().ok();
}

#[test]
fn a_bad_recipient_in_another_rule_does_not_break_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    write(
        dir.path(),
        ".sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: ^other/\n    age: age1notarecipientatall\n  - age: {recipient}\n"
        ),
    );
    write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "p.yaml"])
        .run()
        .ok();
    write(dir.path(), "f.enc.yaml", &enc.stdout);
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["updatekeys", "-y", "f.enc.yaml"])
        .run()
        .ok();
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["check", "f.enc.yaml"])
        .run()
        .ok();
    // The broken rule itself is still reported when a file matches it.
    std::fs::create_dir(dir.path().join("other")).unwrap();
    write(dir.path(), "other/p.yaml", "password: hunter2\n");
    let out = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "other/p.yaml"])
        .run();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("creation rule 0"), "{}", out.stderr);
}

#[test]
fn rekey_adds_and_removes_age_recipients_like_sops_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let (new_key_file, added) = new_key(dir.path(), "new");
    let (_, gone) = new_key(dir.path(), "gone");
    write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &format!("{recipient},{gone}"), "p.yaml"])
        .run()
        .ok();
    let file = write(dir.path(), "f.enc.yaml", &enc.stdout);
    Cmd::credseal()
        .key(&key)
        .args(["rekey", "--add-age", &added, "--rm-age", &gone])
        .arg(&file)
        .run()
        .ok();
    let after = read(&file);
    assert!(after.contains(&added) && after.contains(&recipient) && !after.contains(&gone));
    Cmd::sops()
        .key(&new_key_file)
        .arg("decrypt")
        .arg(&file)
        .run()
        .ok();
}

/// A file sops 3.11 wrote, rewritten by credseal: same metadata layout, same `version`, so a
/// team using both tools sees only the values it changed.
#[test]
fn a_file_from_sops_3_11_keeps_its_layout_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let (_, second) = new_key(dir.path(), "second");
    for name in ["p.yaml", "p.json"] {
        let plain = if name.ends_with("json") {
            write(
                dir.path(),
                name,
                "{\"password\": \"hunter2\", \"user\": \"app\"}\n",
            )
        } else {
            write(dir.path(), name, "password: hunter2\nuser: app\n")
        };
        let enc = Cmd::sops()
            .cwd(dir.path())
            .args(["encrypt", "--age", &recipient])
            .arg(&plain)
            .run()
            .ok();
        let file = write(dir.path(), &format!("f.{name}"), &enc.stdout);
        let sops_layout = meta_layout(&read(&file));
        Cmd::credseal()
            .key(&key)
            .args(["set", "--json"])
            .arg(&file)
            .arg(r#"["password"]"#)
            .stdin(r#""changed""#)
            .run()
            .ok();
        let text = read(&file);
        assert_eq!(meta_layout(&text), sops_layout, "{name}: {text}");
        assert!(text.contains("3.11.0"), "{name}: {text}");
        // Adding a recipient keeps the layout too.
        Cmd::credseal()
            .key(&key)
            .args(["rekey", "--add-age", &second])
            .arg(&file)
            .run()
            .ok();
        let text = read(&file);
        assert!(text.contains("3.11.0"), "{name}: {text}");
        let mut want = sops_layout.clone();
        if name.ends_with("yaml") {
            // One more age entry, in sops 3.11's order (recipient, then enc).
            let at = want.iter().position(|l| l.ends_with("enc:")).unwrap() + 1;
            want.splice(
                at..at,
                [
                    "        - recipient:".to_owned(),
                    "          enc:".to_owned(),
                ],
            );
            assert_eq!(meta_layout(&text), want, "{name}: {text}");
        }
        let out = Cmd::sops().key(&key).arg("decrypt").arg(&file).run().ok();
        assert!(out.text().contains("changed"));
    }
}

/// The layout of the metadata: YAML key lines with values cut; JSON key order.
fn meta_layout(text: &str) -> Vec<String> {
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut out = Vec::new();
        fn walk(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        out.push(format!("{at}/{k}"));
                        walk(v, &format!("{at}/{k}"), out);
                    }
                }
                serde_json::Value::Array(a) => {
                    for v in a {
                        walk(v, &format!("{at}[]"), out);
                    }
                }
                _ => {}
            }
        }
        walk(&v["sops"], "", &mut out);
        out
    } else {
        layout(text)
    }
}

/// sops 3.7 wrote every key list, empty ones as `[]`; the interop fixture from sops' own
/// repository keeps that shape after a credseal edit.
#[test]
fn a_file_from_sops_3_7_keeps_its_empty_key_lists() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = crate::support::interop();
    let file = dir.path().join("example.yaml");
    std::fs::copy(fixtures.join("getsops-sops__example.yaml"), &file).unwrap();
    let key = fixtures.join("getsops-sops.agekey");
    let before = layout(&read(&file));
    assert!(before.contains(&"    kms:".to_owned()));
    Cmd::credseal()
        .key(&key)
        .args(["set", "--json"])
        .arg(&file)
        .arg(r#"["myapp1"]"#)
        .stdin(r#""changed""#)
        .run()
        .ok();
    let text = read(&file);
    assert_eq!(layout(&text), before, "{text}");
    assert!(
        text.contains("    kms: []\n") && text.contains("version: 3.7.1"),
        "{text}"
    );
    Cmd::sops().key(&key).arg("decrypt").arg(&file).run().ok();
}

/// Asked to, updatekeys moves a file to the 3.13 layout and version (and sops still reads it).
#[test]
fn updatekeys_upgrade_layout_moves_an_old_file_to_3_13() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    write(
        dir.path(),
        ".sops.yaml",
        format!("creation_rules:\n  - age: {recipient}\n"),
    );
    write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::sops()
        .cwd(dir.path())
        .args(["encrypt", "p.yaml"])
        .run()
        .ok();
    let file = write(dir.path(), "f.enc.yaml", &enc.stdout);
    let out = Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["updatekeys", "-y", "f.enc.yaml"])
        .run()
        .ok();
    assert!(out.stderr.contains("already up to date"), "{}", out.stderr);
    assert_eq!(read(&file), String::from_utf8(enc.stdout).unwrap());
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .args(["updatekeys", "-y", "--upgrade-layout", "f.enc.yaml"])
        .run()
        .ok();
    let text = read(&file);
    assert!(text.contains("version: 3.13.2"), "{text}");
    assert!(
        text.contains("        - enc: |"),
        "3.13 sorts the age entry: {text}"
    );
    Cmd::sops()
        .cwd(dir.path())
        .key(&key)
        .arg("decrypt")
        .arg(&file)
        .run()
        .ok();
}

/// `SOPS_PGP_FP` is read as sops reads it (like `--pgp`), and the public key comes from gpg.
#[test]
fn sops_pgp_fp_encrypts_for_pgp_from_the_gpg_keyring() {
    let gpg = Gpg::new();
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "p.yaml", "password: hunter2\n");
    let enc = Cmd::credseal()
        .cwd(dir.path())
        .env("GNUPGHOME", gpg.home.path())
        .env("SOPS_PGP_FP", &gpg.fp)
        .arg("encrypt")
        .arg(&plain)
        .run()
        .ok();
    let file = write(dir.path(), "f.enc.yaml", &enc.stdout);
    assert!(!read(&file).contains("age:"), "PGP only: {}", read(&file));
    assert_eq!(gpg.sops_decrypts(&file).ok().text(), "password: hunter2\n");
}
