//! Key sources and key types beyond a single X25519 key file, each against the real sops 3.11:
//! a key source that fails does not hide one that works (sops tries them all, and reports the
//! broken ones only when nothing opens the file); SSH recipients and identities (ssh-keygen
//! keys); age plugins (the suite's own plugin, examples/age-plugin-credsealtest.rs).

use std::path::{Path, PathBuf};

use crate::support::{Cmd, Out, new_key, require, write};

const PLAIN: &str = "password: hunter2\n";

/// A temp dir with a plain file, and a HOME / config dir of its own (empty until a test puts
/// a default keys file or an `~/.ssh` key there).
struct Setup {
    dir: tempfile::TempDir,
    plain: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let plain = write(dir.path(), "app.yaml", PLAIN);
        Setup { dir, plain }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// The default identities file sops and credseal read (`$XDG_CONFIG_HOME/sops/age/keys.txt`).
    fn default_keys_file(&self, text: impl AsRef<[u8]>) -> PathBuf {
        let dir = self.home().join(".config/sops/age");
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "keys.txt", text)
    }

    /// `tool` run in the dir, with this setup's HOME and config dir.
    fn run(&self, tool: Cmd) -> Cmd {
        tool.cwd(self.path())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
    }

    /// `tool encrypt --age RECIPIENTS app.yaml`, saved as `name`.
    fn encrypt(&self, tool: Cmd, recipients: &str, name: &str) -> PathBuf {
        let out = self
            .run(tool)
            .args(["encrypt", "--age", recipients])
            .arg(&self.plain)
            .run()
            .ok();
        write(self.path(), name, out.stdout)
    }
}

#[track_caller]
fn decrypted(out: Out) {
    let out = out.ok();
    assert_eq!(out.text(), PLAIN);
}

/// The recipients of a file's `age:` entries, in order.
fn recipients(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| l.trim().trim_start_matches("- "))
        .filter_map(|l| l.strip_prefix("recipient: "))
        .map(str::to_owned)
        .collect()
}

/// A well-formed identity of a plugin that is not installed (`age-plugin-nosuch`).
fn missing_plugin_identity() -> String {
    use bech32::ToBase32;
    bech32::encode(
        "age-plugin-nosuch-",
        [7u8; 16].to_base32(),
        bech32::Variant::Bech32,
    )
    .unwrap()
    .to_uppercase()
}

/// Each tool opens the file (exit 0) though another key source is broken.
fn both_open(s: &Setup, file: &Path, env: &[(&str, &str)]) {
    for tool in [Cmd::sops(), Cmd::credseal()] {
        let mut cmd = s.run(tool);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        decrypted(cmd.arg("decrypt").arg(file).run());
    }
}

#[test]
fn a_plugin_line_in_the_default_keys_file_does_not_hide_a_good_key_file() {
    let s = Setup::new();
    let (key, recipient) = new_key(s.path(), "good");
    let file = s.encrypt(Cmd::credseal(), &recipient, "app.enc.yaml");
    s.default_keys_file(format!("{}\n", missing_plugin_identity()));
    both_open(&s, &file, &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())]);
}

#[test]
fn a_failing_key_command_does_not_hide_a_good_key_file() {
    let s = Setup::new();
    let (key, recipient) = new_key(s.path(), "good");
    let file = s.encrypt(Cmd::credseal(), &recipient, "app.enc.yaml");
    both_open(
        &s,
        &file,
        &[
            ("SOPS_AGE_KEY_CMD", "false"),
            ("SOPS_AGE_KEY_FILE", key.to_str().unwrap()),
        ],
    );
}

#[test]
fn a_missing_key_file_does_not_hide_the_default_keys_file() {
    let s = Setup::new();
    let (key, recipient) = new_key(s.path(), "good");
    let file = s.encrypt(Cmd::credseal(), &recipient, "app.enc.yaml");
    s.default_keys_file(std::fs::read(&key).unwrap());
    both_open(&s, &file, &[("SOPS_AGE_KEY_FILE", "/nonexistent/keys.txt")]);
}

#[test]
fn broken_key_sources_are_reported_when_nothing_opens_the_file() {
    let s = Setup::new();
    let (_, recipient) = new_key(s.path(), "lost");
    let file = s.encrypt(Cmd::credseal(), &recipient, "app.enc.yaml");
    let plugin_identity = missing_plugin_identity();
    s.default_keys_file(format!("# a plugin key\n{plugin_identity}\n"));
    let env = [
        ("SOPS_AGE_KEY_CMD", "false"),
        ("SOPS_AGE_KEY_FILE", "/nonexistent/keys.txt"),
    ];
    let mut outs = Vec::new();
    for tool in [Cmd::sops(), Cmd::credseal()] {
        let mut cmd = s.run(tool);
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        outs.push(cmd.arg("decrypt").arg(&file).run().code(128));
    }
    let err = &outs[1].stderr;
    for named in [
        "SOPS_AGE_KEY_CMD (false) failed",
        "SOPS_AGE_KEY_FILE is not usable: /nonexistent/keys.txt: cannot read",
        "age-plugin-nosuch",
        "keys.txt, line 2",
    ] {
        assert!(err.contains(named), "names {named:?}: {err}");
    }
    // The plugin identity is key material: never shown.
    let payload = &plugin_identity["AGE-PLUGIN-NOSUCH-1".len()..];
    assert!(!err.to_uppercase().contains(payload), "{err}");
}

#[cfg(feature = "ssh")]
mod ssh {
    use super::*;

    /// An ssh-keygen key pair in the setup dir: (private key path, public key line).
    fn ssh_key(s: &Setup, kind: &str, name: &str, passphrase: &str) -> (PathBuf, String) {
        require("ssh-keygen");
        let path = s.path().join(name);
        let mut cmd = Cmd::tool("ssh-keygen").args(["-q", "-t", kind, "-N", passphrase]);
        if kind == "rsa" {
            cmd = cmd.args(["-b", "2048"]);
        }
        cmd.args(["-C", &format!("{name}@credseal test")])
            .arg("-f")
            .arg(&path)
            .run()
            .ok();
        let public = std::fs::read_to_string(format!("{}.pub", path.display())).unwrap();
        (path, public.trim().to_owned())
    }

    #[test]
    fn sops_encrypts_to_ssh_keys_and_credseal_decrypts_with_them() {
        let s = Setup::new();
        let (ed, ed_pub) = ssh_key(&s, "ed25519", "ed", "");
        let (rsa, rsa_pub) = ssh_key(&s, "rsa", "rsa", "");
        let file = s.encrypt(Cmd::sops(), &format!("{ed_pub},{rsa_pub}"), "by-sops.yaml");
        assert_eq!(recipients(&file), vec![ed_pub.clone(), rsa_pub.clone()]);
        for key in [&ed, &rsa] {
            decrypted(
                s.run(Cmd::credseal())
                    .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", key)
                    .arg("decrypt")
                    .arg(&file)
                    .run(),
            );
        }
        // The default keys: ~/.ssh/id_ed25519, then ~/.ssh/id_rsa.
        let dot_ssh = s.home().join(".ssh");
        std::fs::create_dir_all(&dot_ssh).unwrap();
        for (key, name) in [(&ed, "id_ed25519"), (&rsa, "id_rsa")] {
            std::fs::copy(key, dot_ssh.join(name)).unwrap();
            decrypted(s.run(Cmd::credseal()).arg("decrypt").arg(&file).run());
            std::fs::remove_file(dot_ssh.join(name)).unwrap();
        }
    }

    #[test]
    fn credseal_encrypts_to_ssh_keys_as_sops_does_and_sops_decrypts() {
        let s = Setup::new();
        let (ed, ed_pub) = ssh_key(&s, "ed25519", "ed", "");
        let (rsa, rsa_pub) = ssh_key(&s, "rsa", "rsa", "");
        let both = format!("{ed_pub},{rsa_pub}");
        let by_sops = s.encrypt(Cmd::sops(), &both, "by-sops.yaml");
        // The same recipients written the same way from each place a recipient is given.
        let by_flag = s.encrypt(Cmd::credseal(), &both, "by-flag.yaml");
        let by_env = write(
            s.path(),
            "by-env.yaml",
            s.run(Cmd::credseal())
                .env("SOPS_AGE_RECIPIENTS", &both)
                .arg("encrypt")
                .arg(&s.plain)
                .run()
                .ok()
                .stdout,
        );
        write(
            s.path(),
            ".sops.yaml",
            format!("creation_rules:\n  - age: >-\n      {ed_pub},\n      {rsa_pub}\n"),
        );
        let by_rule = write(
            s.path(),
            "by-rule.yaml",
            s.run(Cmd::credseal())
                .arg("encrypt")
                .arg(&s.plain)
                .run()
                .ok()
                .stdout,
        );
        for file in [&by_flag, &by_env, &by_rule] {
            assert_eq!(recipients(file), recipients(&by_sops), "{}", file.display());
            for key in [&ed, &rsa] {
                for tool in [Cmd::sops(), Cmd::credseal()] {
                    decrypted(
                        s.run(tool)
                            .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", key)
                            .arg("decrypt")
                            .arg(file)
                            .run(),
                    );
                }
            }
        }
    }

    #[test]
    fn a_passphrase_protected_ssh_key_is_refused_naming_the_file() {
        let s = Setup::new();
        let (locked, locked_pub) = ssh_key(&s, "ed25519", "locked", "a passphrase");
        let (age_key, age_recipient) = new_key(s.path(), "age");
        let file = s.encrypt(Cmd::credseal(), &locked_pub, "locked.yaml");
        let out = s
            .run(Cmd::credseal())
            .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &locked)
            .arg("decrypt")
            .arg(&file)
            .run()
            .code(128);
        assert!(
            out.stderr.contains(&format!("{}: ", locked.display()))
                && out.stderr.contains("passphrase-protected")
                && out.stderr.contains("never prompts"),
            "{}",
            out.stderr
        );
        // A locked ~/.ssh/id_ed25519 (common on developer machines) does not get in the way
        // of an age key that opens the file.
        let dot_ssh = s.home().join(".ssh");
        std::fs::create_dir_all(&dot_ssh).unwrap();
        std::fs::copy(&locked, dot_ssh.join("id_ed25519")).unwrap();
        let file = s.encrypt(Cmd::credseal(), &age_recipient, "age.yaml");
        decrypted(
            s.run(Cmd::credseal())
                .key(&age_key)
                .arg("decrypt")
                .arg(&file)
                .run(),
        );
    }
}

#[cfg(feature = "plugin")]
mod plugin {
    use super::*;

    /// The directory of the suite's test plugin (`age-plugin-credsealtest`, an example of this
    /// package): beside the test binary's `deps/` dir. `cargo test` builds examples; a run of
    /// this suite alone (`--test it`) does not, so it is built here if missing.
    fn plugin_dir() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().parent().unwrap().join("examples");
        if !dir.join("age-plugin-credsealtest").is_file() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = std::process::Command::new(cargo)
                .args(["build", "--example", "age-plugin-credsealtest"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap();
            assert!(status.success(), "building the test plugin failed");
        }
        dir
    }

    /// `cmd` with the test plugin on its PATH.
    fn with_plugin(cmd: Cmd) -> Cmd {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![plugin_dir()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap())
    }

    /// A new plugin key: (identity file, recipient).
    fn plugin_key(s: &Setup, name: &str, flag: &str) -> (PathBuf, String) {
        let bin = plugin_dir().join("age-plugin-credsealtest");
        let out = std::process::Command::new(bin).arg(flag).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let identity = lines.next().unwrap().to_owned();
        let recipient = lines.next().unwrap().to_owned();
        (
            write(s.path(), name, format!("# test plugin key\n{identity}\n")),
            recipient,
        )
    }

    #[test]
    fn files_for_a_plugin_recipient_open_with_its_identity_in_both_tools() {
        let s = Setup::new();
        let (identity, recipient) = plugin_key(&s, "plugin.txt", "--generate");
        assert!(recipient.starts_with("age1credsealtest1"), "{recipient}");
        let by_credseal = s.encrypt(with_plugin(Cmd::credseal()), &recipient, "c.yaml");
        let by_sops = s.encrypt(with_plugin(Cmd::sops()), &recipient, "s.yaml");
        assert_eq!(recipients(&by_credseal), vec![recipient.clone()]);
        assert_eq!(recipients(&by_sops), vec![recipient]);
        for file in [&by_credseal, &by_sops] {
            for tool in [Cmd::sops(), Cmd::credseal()] {
                decrypted(
                    s.run(with_plugin(tool))
                        .key(&identity)
                        .arg("decrypt")
                        .arg(file)
                        .run(),
                );
            }
        }
        // Another key in the same file is tried first: the plugin is not needed then.
        let (age_key, age_recipient) = new_key(s.path(), "age");
        let mixed = s.encrypt(
            with_plugin(Cmd::credseal()),
            &format!("{age_recipient},{}", recipients(&by_sops)[0]),
            "mixed.yaml",
        );
        let keys = crate::support::keyring_file(s.path(), &[&identity, &age_key]);
        decrypted(
            s.run(Cmd::credseal())
                .key(&keys)
                .arg("decrypt")
                .arg(&mixed)
                .run(),
        );
    }

    #[test]
    fn a_plugin_that_asks_for_input_is_refused_with_a_clear_error() {
        let s = Setup::new();
        let (identity, recipient) = plugin_key(&s, "asking.txt", "--generate-asking");
        let file = s.encrypt(with_plugin(Cmd::credseal()), &recipient, "a.yaml");
        let out = s
            .run(with_plugin(Cmd::credseal()))
            .key(&identity)
            .arg("decrypt")
            .arg(&file)
            .run()
            .code(128);
        assert!(
            out.stderr.contains("age plugin credsealtest")
                && out.stderr.contains("asking.txt, line 2")
                && out.stderr.contains("Enter the PIN")
                && out.stderr.contains("never prompts"),
            "{}",
            out.stderr
        );
        let id = std::fs::read_to_string(&identity).unwrap();
        let payload = id.lines().nth(1).unwrap().rsplit_once('-').unwrap().1;
        assert!(!out.stderr.contains(&payload[1..]), "{}", out.stderr);
    }

    #[test]
    fn a_missing_plugin_fails_encryption_as_in_sops() {
        let s = Setup::new();
        let (_, recipient) = plugin_key(&s, "plugin.txt", "--generate");
        // Not on PATH: both tools refuse, exit 1, naming the plugin binary.
        for tool in [Cmd::sops(), Cmd::credseal()] {
            let out = s
                .run(tool)
                .args(["encrypt", "--age", &recipient])
                .arg(&s.plain)
                .run()
                .code(1);
            assert!(
                out.stderr.contains("age-plugin-credsealtest"),
                "{}",
                out.stderr
            );
        }
    }
}
