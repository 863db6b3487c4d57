//! Identities are private: a secret key given where a recipient belongs is never printed,
//! whatever the source, and identities from every key source still open files.

use std::path::Path;

use crate::support::{Out, Sealed, new_key, sealed_secret, write};

use crate::support::Cmd;

/// The identity (secret key) line of a key file written by `credseal keygen` (read at run time:
/// no key-shaped literal sits in the source).
fn secret_line(key_file: &Path) -> String {
    std::fs::read_to_string(key_file)
        .unwrap()
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap()
        .to_owned()
}

/// Neither stream shows the key, nor any 10-character piece of its payload (in any case).
#[track_caller]
fn never_shows_key(out: &Out, key: &str) {
    let all = format!("{}{}", out.text(), out.stderr).to_uppercase();
    let payload = key.rsplit_once('-').unwrap().1[1..].to_uppercase();
    assert!(payload.len() >= 50, "not a key: {} chars", payload.len());
    for window in payload.as_bytes().windows(10) {
        let window = std::str::from_utf8(window).unwrap();
        assert!(
            !all.contains(window),
            "output shows part of the secret key ({window}): {all}"
        );
    }
}

struct Given {
    dir: tempfile::TempDir,
    plain: std::path::PathBuf,
    recipient: String,
    secret: String,
}

fn given() -> Given {
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = new_key(dir.path(), "public");
    let (key, _) = new_key(dir.path(), "private");
    let secret = secret_line(&key);
    std::fs::remove_file(&key).unwrap();
    let plain = write(dir.path(), "app.yaml", "password: hunter2\n");
    Given {
        dir,
        plain,
        recipient,
        secret,
    }
}

#[test]
fn a_secret_key_passed_with_age_flag_is_not_printed() {
    let g = given();
    let out = Cmd::credseal()
        .cwd(g.dir.path())
        .args(["encrypt", "--age", &format!("{},{}", g.recipient, g.secret)])
        .arg(&g.plain)
        .run()
        .code(1);
    never_shows_key(&out, &g.secret);
    assert!(
        out.stderr.contains("--age, recipient 2 of 2")
            && out.stderr.contains("secret key")
            && out.stderr.contains("rotate"),
        "names the source and position and says what to do: {}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_secret_key_in_sops_age_recipients_is_not_printed() {
    let g = given();
    // The whole key file pasted (comments, public key line and all) is caught too.
    for value in [
        g.secret.clone(),
        format!(" {} , {}", g.recipient, g.secret.to_lowercase()),
    ] {
        let out = Cmd::credseal()
            .cwd(g.dir.path())
            .env("SOPS_AGE_RECIPIENTS", &value)
            .arg("encrypt")
            .arg(&g.plain)
            .run()
            .code(1);
        never_shows_key(&out, &g.secret);
        assert!(
            out.stderr.contains("SOPS_AGE_RECIPIENTS, recipient")
                && out.stderr.contains("secret key"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_secret_key_in_sops_yaml_is_not_printed() {
    let g = given();
    let configs = [
        format!(
            "creation_rules:\n  - path_regex: .*\n    age: {},{}\n",
            g.recipient, g.secret
        ),
        format!(
            "creation_rules:\n  - age:\n      - {}\n      - {}\n",
            g.recipient, g.secret
        ),
        format!(
            "creation_rules:\n  - key_groups:\n      - age: [{}]\n",
            g.secret
        ),
    ];
    for (i, config) in configs.iter().enumerate() {
        write(g.dir.path(), ".sops.yaml", config);
        let out = Cmd::credseal()
            .cwd(g.dir.path())
            .arg("encrypt")
            .arg(&g.plain)
            .run()
            .code(5);
        never_shows_key(&out, &g.secret);
        let position = if i == 2 {
            "creation rule 0: key_groups[0].age, recipient 1 of 1"
        } else {
            "creation rule 0: age, recipient 2 of 2"
        };
        assert!(
            out.stderr.contains(".sops.yaml")
                && out.stderr.contains(position)
                && out.stderr.contains("secret key"),
            "config {i}: {}",
            out.stderr
        );
        // Every command that reads the rules says the same, without the key.
        for cmd in [&["updatekeys", "--yes"][..], &["check"][..]] {
            let out = Cmd::credseal()
                .cwd(g.dir.path())
                .args(cmd)
                .arg(&g.plain)
                .run();
            assert_ne!(out.code, 0, "{cmd:?}: {}", out.stderr);
            never_shows_key(&out, &g.secret);
        }
    }
}

#[test]
fn a_secret_key_given_to_cluster_key_retire_is_not_printed() {
    let g = given();
    // Refused before any cluster is contacted (there is none here).
    let out = Cmd::credseal()
        .cwd(g.dir.path())
        .args(["cluster-key", "retire", &g.secret])
        .run()
        .code(1);
    never_shows_key(&out, &g.secret);
    assert!(
        out.stderr.contains("cluster-key retire, recipient 1 of 1")
            && out.stderr.contains("secret key"),
        "{}",
        out.stderr
    );
}

/// A key source much larger than one read (and than a pipe buffer): comments before the key.
fn padded_key_file(s: &Sealed) -> std::path::PathBuf {
    let key = std::fs::read_to_string(&s.key).unwrap();
    let padding = "# a long comment line that pads this identities file\n".repeat(3000);
    write(s.dir.path(), "padded.agekey", format!("{padding}{key}"))
}

fn decrypts(cmd: Cmd, s: &Sealed) {
    let out = cmd.arg("decrypt").arg(&s.enc).run().ok();
    assert!(out.text().contains("stringData"), "{}", out.text());
}

#[test]
fn every_key_source_still_opens_files() {
    let s = sealed_secret();
    let padded = padded_key_file(&s);
    decrypts(Cmd::credseal().cwd(s.dir.path()).key(&padded), &s);
    decrypts(
        Cmd::credseal()
            .cwd(s.dir.path())
            .env("SOPS_AGE_KEY_CMD", format!("cat '{}'", padded.display())),
        &s,
    );
    decrypts(
        Cmd::credseal()
            .cwd(s.dir.path())
            .env("SOPS_AGE_KEY", std::fs::read_to_string(&s.key).unwrap()),
        &s,
    );
}

#[test]
fn key_sources_that_fail_show_nothing_of_their_content() {
    let s = sealed_secret();
    let secret = secret_line(&s.key);
    // Not UTF-8: refused, the file named, exit 128.
    let mut bytes = vec![0xff, 0xfe, b'\n'];
    bytes.extend_from_slice(std::fs::read(&s.key).unwrap().as_slice());
    let binary = write(s.dir.path(), "binary.agekey", bytes);
    let out = Cmd::credseal()
        .cwd(s.dir.path())
        .key(&binary)
        .arg("decrypt")
        .arg(&s.enc)
        .run()
        .code(128);
    assert!(
        out.stderr.contains("binary.agekey") && out.stderr.contains("UTF-8"),
        "{}",
        out.stderr
    );
    never_shows_key(&out, &secret);
    // A key command that prints the key and then fails: its output is not shown.
    let out = Cmd::credseal()
        .cwd(s.dir.path())
        .env(
            "SOPS_AGE_KEY_CMD",
            format!("sh -c 'cat \"{}\"; exit 3'", s.key.display()),
        )
        .arg("decrypt")
        .arg(&s.enc)
        .run()
        .code(128);
    assert!(out.stderr.contains("SOPS_AGE_KEY_CMD"), "{}", out.stderr);
    never_shows_key(&out, &secret);
}
