//! Hostile input for the format parsers (issue 14): an alias bomb, deep nesting, a flattened
//! metadata index asking for a huge list, non-UTF-8 dotenv. Every command that reads the file
//! refuses it with its documented exit code (never a signal), a message naming the file and
//! the problem, and no output written.

use std::path::{Path, PathBuf};

use crate::materialize::kubelet_update;
use crate::support::{Cmd, Out, new_key, write};

/// A temp dir with a fresh identity.
struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    Setup {
        dir,
        key,
        recipient,
    }
}

impl Setup {
    fn cs(&self) -> Cmd {
        Cmd::credseal().cwd(self.dir.path()).key(&self.key)
    }

    fn out_path(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn encrypt(&self, file: &Path) -> Out {
        self.cs()
            .args(["encrypt", "--age", &self.recipient, "--output"])
            .arg(self.out_path())
            .arg(file)
            .run()
    }

    fn decrypt(&self, file: &Path) -> Out {
        self.cs()
            .args(["decrypt", "--output"])
            .arg(self.out_path())
            .arg(file)
            .run()
    }

    fn check(&self, file: &Path) -> Out {
        self.cs().arg("check").arg(file).run()
    }

    fn diff(&self, file: &Path) -> Out {
        self.cs().arg("diff").arg(file).arg(file).run()
    }

    /// `materialize --once` with `file` as the only mounted SOPS file.
    fn materialize(&self, file: &Path) -> Out {
        let keys = self.dir.path().join("keys");
        kubelet_update(&keys, &[("age.agekey", std::fs::read(&self.key).unwrap())]);
        let name = file.file_name().unwrap().to_str().unwrap();
        let source = self.dir.path().join("source");
        kubelet_update(&source, &[(name, std::fs::read(file).unwrap())]);
        Cmd::credseal()
            .arg("materialize")
            .arg("--source")
            .arg(&source)
            .arg("--keys")
            .arg(&keys)
            .arg("--out")
            .arg(self.out_path())
            .args(["--namespace", "platform-services", "--once"])
            .run()
    }

    /// Runs every reading command on `file`: each exits `code` (check: 230, a finding), names
    /// the file and says `problem`, and writes nothing.
    #[track_caller]
    fn refused_everywhere(&self, file: &Path, code: i32, problem: &str, materialize: bool) {
        let name = file.file_name().unwrap().to_str().unwrap();
        let mut runs = vec![
            ("encrypt", self.encrypt(file), code),
            ("decrypt", self.decrypt(file), code),
            ("diff", self.diff(file), code),
        ];
        if name.ends_with(".yaml") || name.ends_with(".json") {
            runs.push(("check", self.check(file), 230));
        }
        if materialize {
            runs.push(("materialize", self.materialize(file), code));
        }
        for (command, out, want) in runs {
            assert_eq!(
                out.code, want,
                "{command}: exit code (a signal shows as -1); stderr: {}",
                out.stderr
            );
            let said = format!("{}{}", out.stderr, out.text());
            assert!(
                said.contains(name) && said.contains(problem),
                "{command}: the message names {name} and says {problem:?}: {said}"
            );
            assert!(
                !self.out_path().exists(),
                "{command}: nothing may be written"
            );
        }
    }
}

/// The attacker review's 342-byte bomb: nine levels of nine aliases of the level below.
fn billion_laughs() -> String {
    let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text
}

#[test]
fn alias_bomb_is_refused_by_every_command() {
    let s = setup();
    let bomb = billion_laughs();
    assert!(bomb.len() < 400, "a few hundred bytes: {}", bomb.len());
    let file = write(s.dir.path(), "bomb.enc.yaml", &bomb);
    s.refused_everywhere(&file, 2, "excessive aliasing", true);
}

fn deep_json(levels: usize) -> String {
    format!(
        "{{\"data\": {}\"x\"{}}}\n",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

#[test]
fn deep_json_is_refused_by_every_command() {
    let s = setup();
    let file = write(s.dir.path(), "deep.json", deep_json(30_000));
    s.refused_everywhere(&file, 2, "nested more than 512 levels", true);
}

#[test]
fn deep_yaml_is_refused_by_every_command() {
    let s = setup();
    let text: String = (0..1000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let file = write(s.dir.path(), "deep.yaml", text);
    s.refused_everywhere(&file, 2, "nested more than 512 levels", false);
}

/// At the limit every command works: the recursive walks and emitters fit the stack.
#[test]
fn files_at_the_depth_limit_round_trip() {
    let s = setup();
    // The document is level 1: 511 more levels below it.
    let json = write(s.dir.path(), "limit.json", deep_json(511));
    let mut yaml_text: String = (0..511)
        .map(|i| format!("{}k:\n", " ".repeat(4 * i)))
        .collect();
    yaml_text.push_str(&format!("{}k: v\n", " ".repeat(4 * 511)));
    let yaml = write(s.dir.path(), "limit.yaml", &yaml_text);
    for plain in [json, yaml] {
        let ext = plain.extension().unwrap().to_str().unwrap().to_owned();
        let enc = s.dir.path().join(format!("limit.enc.{ext}"));
        s.cs()
            .args(["encrypt", "--age", &s.recipient, "--output"])
            .arg(&enc)
            .arg(&plain)
            .run()
            .ok();
        let out = s.cs().arg("decrypt").arg(&enc).run().ok();
        if ext == "yaml" {
            assert_eq!(out.text(), yaml_text);
        } else {
            let text = out.text();
            assert_eq!(text.matches('[').count(), 511);
            assert!(text.contains("\"x\""), "{text}");
        }
        s.cs().arg("diff").arg(&enc).arg(&enc).run().ok();
        s.cs().arg("check").arg(&enc).run().ok();
    }
}

#[test]
fn a_huge_flattened_list_index_is_refused() {
    let s = setup();
    // A sops-written dotenv file, then the recipient's list index raised to 99,999,999,999.
    let plain = write(s.dir.path(), "app.env", "DB_PASSWORD=hunter2\n");
    let enc = s.dir.path().join("app.enc.env");
    s.cs()
        .args(["encrypt", "--age", &s.recipient, "--output"])
        .arg(&enc)
        .arg(&plain)
        .run()
        .ok();
    let text = std::fs::read_to_string(&enc).unwrap();
    assert!(text.contains("sops_age__list_0__map_recipient="), "{text}");
    let bad = text.replace("__list_0__", "__list_99999999999__");
    let file = write(s.dir.path(), "bad.enc.env", bad);
    for (command, out) in [("decrypt", s.decrypt(&file)), ("diff", s.diff(&file))] {
        let out = out.code(2);
        assert!(
            out.stderr.contains("bad.enc.env")
                && out
                    .stderr
                    .contains("list index 99999999999 is out of range"),
            "{command}: {}",
            out.stderr
        );
        out.never_shows("hunter2");
        assert!(!s.out_path().exists(), "{command}: nothing written");
    }
}

#[test]
fn non_utf8_dotenv_is_refused_not_mangled() {
    let s = setup();
    let file = write(s.dir.path(), "latin1.env", b"A=ok\nB=caf\xe9\n");
    let out = s.encrypt(&file).code(2);
    assert!(
        out.stderr.contains("latin1.env") && out.stderr.contains("line 2, byte 6: not UTF-8 text"),
        "{}",
        out.stderr
    );
    assert!(!s.out_path().exists());
}

#[test]
fn a_set_path_deeper_than_the_limit_is_refused() {
    let s = setup();
    let plain = write(s.dir.path(), "s.yaml", "a: b\n");
    let enc = s.dir.path().join("s.enc.yaml");
    s.cs()
        .args(["encrypt", "--age", &s.recipient, "--output"])
        .arg(&enc)
        .arg(&plain)
        .run()
        .ok();
    let before = std::fs::read(&enc).unwrap();
    let out = s
        .cs()
        .arg("set")
        .arg(&enc)
        // 100 KB: below the kernel's limit for one argument.
        .arg(r#"["x"]"#.repeat(20_000))
        .stdin("v")
        .run()
        .code(91);
    assert!(
        out.stderr.contains("nested more than 512 levels"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(&enc).unwrap(),
        before,
        "the file is untouched"
    );
}

/// Two shapes the YAML emitter cannot write readably yet (fuzz/findings: a comment before an
/// empty flow collection after a nested list, a block scalar that starts with a blank line):
/// encrypt refuses them (exit 4) instead of writing a file nobody can open again, and an
/// in-place encrypt leaves the input as it was.
#[test]
fn yaml_the_emitter_cannot_write_back_is_refused_not_written() {
    let s = setup();
    for (name, text) in [
        ("comment.yaml", "  e:\n    - t:\n \n    #\n  p: []"),
        ("block.yaml", "a:\n- c: |\n \n   :"),
    ] {
        let file = write(s.dir.path(), name, text);
        // Values left in clear, so the shapes reach the emitter as they are.
        let out = s
            .cs()
            .args([
                "encrypt",
                "--encrypted-regex",
                "^$",
                "--age",
                &s.recipient,
                "--output",
            ])
            .arg(s.out_path())
            .arg(&file)
            .run()
            .code(4);
        assert!(
            out.stderr.contains(name) && out.stderr.contains("would not read back"),
            "{}",
            out.stderr
        );
        assert!(!s.out_path().exists(), "{name}: nothing written");
        s.cs()
            .args([
                "encrypt",
                "--in-place",
                "--encrypted-regex",
                "^$",
                "--age",
                &s.recipient,
            ])
            .arg(&file)
            .run()
            .code(4);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "{name}: input untouched"
        );
    }
}
