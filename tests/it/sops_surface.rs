//! The sops commands scripts use (`set`, `unset`, `edit` of a new file, `exec-env`,
//! `exec-file`, `filestatus`), their exit codes, and encrypted files whose name says nothing
//! about their format: each case run with the real sops 3.11 beside credseal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Cmd, Out, new_key, write};

const PASSWORD: &str = "hunter2-value-4f8a1c";

/// A directory with a key, a `.sops.yaml` whose one rule names it, and a file sops encrypted.
struct Repo {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = new_key(dir.path(), "k");
        write(
            dir.path(),
            ".sops.yaml",
            format!("creation_rules:\n  - path_regex: \\.enc\\.\n    age: {recipient}\n"),
        );
        Repo {
            dir,
            key,
            recipient,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `plain` encrypted by sops to `name` (which the rule matches).
    fn sops_file(&self, name: &str, plain: &str) -> PathBuf {
        let ext = Path::new(name).extension().unwrap().to_str().unwrap();
        let src = write(self.dir.path(), &format!("plain.{ext}"), plain);
        let out = self
            .sops()
            .args(["encrypt", "--filename-override", name])
            .arg(&src)
            .run()
            .ok();
        std::fs::remove_file(src).unwrap();
        write(self.dir.path(), name, out.stdout)
    }

    fn cs(&self) -> Cmd {
        Cmd::credseal().cwd(self.dir.path()).key(&self.key)
    }

    fn sops(&self) -> Cmd {
        Cmd::sops().cwd(self.dir.path()).key(&self.key)
    }

    fn decrypt(&self, file: &Path) -> String {
        self.sops().arg("decrypt").arg(file).run().ok().text()
    }

    /// An executable script in a directory of its own.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = write(self.dir.path(), name, format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
}

fn copy(from: &Path, to: &str) -> PathBuf {
    let to = from.with_file_name(to);
    std::fs::copy(from, &to).unwrap();
    to
}

fn db_yaml() -> String {
    format!("password: {PASSWORD}\nport: 5432\nnested:\n    user: app\n")
}

/// Both tools run on their own copy of `file` with the same arguments (`{}` is the file).
fn both(repo: &Repo, file: &Path, args: &[&str], stdin: &str) -> [(Out, PathBuf); 2] {
    let run = |cmd: Cmd, tag: &str| {
        let f = copy(file, &format!("{tag}.enc.yaml"));
        let mut cmd = cmd;
        for a in args {
            cmd = if *a == "{}" { cmd.arg(&f) } else { cmd.arg(a) };
        }
        (cmd.stdin(stdin.to_owned()).run(), f)
    };
    [run(repo.sops(), "sops"), run(repo.cs(), "credseal")]
}

// ---- set / unset ----------------------------------------------------------------------

#[test]
fn set_takes_sops_positional_value_value_stdin_and_value_file_as_json() {
    let repo = Repo::new();
    let file = repo.sops_file("db.enc.yaml", &db_yaml());
    let vfile = write(repo.dir.path(), "value.json", r#"{"a": ["x", true]}"#);
    let vfile = vfile.to_str().unwrap();
    for (args, stdin) in [
        (vec!["set", "{}", r#"["password"]"#, r#""from-arg""#], ""),
        (
            vec!["set", "--value-stdin", "{}", r#"["password"]"#],
            "\"from-stdin\"\n",
        ),
        (vec!["set", "--value-file", "{}", r#"["new"]"#, vfile], ""),
        (vec!["set", "{}", r#"["port"]"#, "6543"], ""),
    ] {
        let [(s, sf), (c, cf)] = both(&repo, &file, &args, stdin);
        s.ok();
        c.ok();
        assert_eq!(repo.decrypt(&cf), repo.decrypt(&sf), "{args:?}");
    }
    // Not JSON: both refuse with 7 and leave the file as it was.
    for args in [
        vec!["set", "{}", r#"["password"]"#, "bare-word"],
        vec!["set", "--value-file", "{}", r#"["password"]"#, "/dev/null"],
    ] {
        let [(s, sf), (c, cf)] = both(&repo, &file, &args, "");
        s.code(7);
        c.code(7);
        assert_eq!(std::fs::read(&sf).unwrap(), std::fs::read(&file).unwrap());
        assert_eq!(std::fs::read(&cf).unwrap(), std::fs::read(&file).unwrap());
    }
}

#[test]
fn set_of_the_value_the_file_has_exits_0_and_idempotent_writes_nothing() {
    let repo = Repo::new();
    let file = repo.sops_file("db.enc.yaml", &db_yaml());
    // lastmodified has whole seconds: a rewrite would show.
    std::thread::sleep(Duration::from_millis(1100));
    let same = format!("\"{PASSWORD}\"");
    let [(s, sf), (c, cf)] = both(
        &repo,
        &file,
        &["set", "--idempotent", "{}", r#"["password"]"#, &same],
        "",
    );
    s.ok();
    c.ok();
    assert_eq!(std::fs::read(&sf).unwrap(), std::fs::read(&file).unwrap());
    assert_eq!(std::fs::read(&cf).unwrap(), std::fs::read(&file).unwrap());
    // Without --idempotent sops exits 0 too (it rewrites lastmodified; credseal never
    // rewrites a file for nothing). Today's stdin form as well.
    let [(s, _), (c, cf)] = both(&repo, &file, &["set", "{}", r#"["password"]"#, &same], "");
    s.ok();
    c.ok();
    assert_eq!(std::fs::read(&cf).unwrap(), std::fs::read(&file).unwrap());
    repo.cs()
        .arg("set")
        .arg(&cf)
        .arg(r#"["password"]"#)
        .stdin(format!("{PASSWORD}\n"))
        .run()
        .ok()
        .never_shows(PASSWORD);
    assert_eq!(std::fs::read(&cf).unwrap(), std::fs::read(&file).unwrap());
}

#[test]
fn unset_idempotent_of_a_missing_path_exits_0_and_writes_nothing() {
    let repo = Repo::new();
    let file = repo.sops_file("db.enc.yaml", &db_yaml());
    for path in [r#"["absent"]"#, r#"["nested"]["absent"]"#] {
        let [(s, sf), (c, cf)] = both(&repo, &file, &["unset", "--idempotent", "{}", path], "");
        s.ok();
        c.ok();
        assert_eq!(std::fs::read(&sf).unwrap(), std::fs::read(&file).unwrap());
        assert_eq!(std::fs::read(&cf).unwrap(), std::fs::read(&file).unwrap());
        let [(s, _), (c, _)] = both(&repo, &file, &["unset", "{}", path], "");
        s.code(1);
        c.code(1);
    }
    let [(s, sf), (c, cf)] = both(
        &repo,
        &file,
        &["unset", "--idempotent", "{}", r#"["port"]"#],
        "",
    );
    s.ok();
    c.ok();
    assert_eq!(repo.decrypt(&cf), repo.decrypt(&sf));
    assert!(!repo.decrypt(&cf).contains("port"));
}

// ---- edit of a new file -----------------------------------------------------------------

/// Runs `edit` of `name` (absent) with an editor that copies what it was given to `seen`
/// and then runs `then`.
fn edit_new(repo: &Repo, cmd: Cmd, name: &str, then: &str) -> (Out, Vec<u8>) {
    let seen = repo.path("seen");
    let _ = std::fs::remove_file(&seen);
    let editor = repo.script(
        "editor.sh",
        &format!("cp \"$1\" {}\n{then}", seen.display()),
    );
    let out = cmd.env("EDITOR", &editor).arg("edit").arg(name).run();
    (out, std::fs::read(&seen).unwrap_or_default())
}

#[test]
fn edit_of_a_new_file_shows_sops_example_and_creates_nothing_when_unchanged() {
    let repo = Repo::new();
    for ext in ["yaml", "json", "env", "bin"] {
        let name = format!("new.enc.{ext}");
        let (s, sops_seen) = edit_new(&repo, repo.sops(), &name, "");
        let (c, seen) = edit_new(&repo, repo.cs(), &name, "");
        s.code(200);
        c.code(200);
        assert!(!sops_seen.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&seen),
            String::from_utf8_lossy(&sops_seen),
            "{ext}"
        );
        assert!(!repo.path(&name).exists(), "{ext}: nothing created");
    }
}

#[test]
fn edit_of_a_new_file_creates_it_from_the_matching_rule() {
    let repo = Repo::new();
    let write_pw = format!("printf 'password: {PASSWORD}\\n' > \"$1\"");
    let tmp = tempfile::tempdir().unwrap();
    let (c, _) = edit_new(
        &repo,
        repo.cs().env("TMPDIR", tmp.path()),
        "db.enc.yaml",
        &write_pw,
    );
    c.ok().never_shows(PASSWORD);
    let file = repo.path("db.enc.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(&repo.recipient), "the rule's recipient");
    assert!(!text.contains(PASSWORD));
    assert_eq!(repo.decrypt(&file), format!("password: {PASSWORD}\n"));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "as sops creates it");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // No rule for the name: refused before the editor starts (sops: 1, after it).
    let (c, seen) = edit_new(&repo, repo.cs(), "other.yaml", &write_pw);
    let c = c.code(5);
    assert!(
        c.stderr.contains("no matching creation rules"),
        "{}",
        c.stderr
    );
    assert!(seen.is_empty(), "the editor was not started");
    let (s, _) = edit_new(&repo, repo.sops(), "other.yaml", &write_pw);
    s.code(1);
    assert!(!repo.path("other.yaml").exists());
}

// ---- exit codes -------------------------------------------------------------------------

#[test]
fn exit_codes_match_sops_where_the_failure_is_the_same() {
    let repo = Repo::new();
    let file = repo.sops_file("db.enc.yaml", &db_yaml());
    // A mapping has no dotenv form: 4 (was 2).
    let [(s, _), (c, _)] = both(
        &repo,
        &file,
        &["decrypt", "--output-type", "dotenv", "{}"],
        "",
    );
    s.code(4);
    c.code(4);
    let plain = write(repo.dir.path(), "nested.enc.yaml", "a:\n    b: 1\n");
    for cmd in [repo.sops(), repo.cs()] {
        cmd.args(["encrypt", "--output-type", "dotenv"])
            .arg(&plain)
            .run()
            .code(4);
    }
    // An editor that exits non-zero: 201 (was 1), the file untouched.
    let failing = repo.script("fail.sh", "echo 'x: 1' >> \"$1\"; exit 3");
    let [(s, sf), (c, cf)] = [("sops", repo.sops()), ("credseal", repo.cs())].map(|(tag, cmd)| {
        let f = copy(&file, &format!("{tag}.enc.yaml"));
        (cmd.env("EDITOR", &failing).arg("edit").arg(&f).run(), f)
    });
    s.code(201);
    c.code(201);
    assert_eq!(std::fs::read(&sf).unwrap(), std::fs::read(&file).unwrap());
    assert_eq!(std::fs::read(&cf).unwrap(), std::fs::read(&file).unwrap());
}

#[test]
fn exit_codes_credseal_keeps_are_sops_own_codes_where_sops_says_1() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = write(dir.path(), "p.yaml", "a: 1\n");
    let run = |cmd: Cmd, args: &[&str]| cmd.cwd(dir.path()).key(&key).args(args).run();
    // No recipients anywhere: sops 1, credseal 111 (sops' NoEncryptionKeyFound).
    run(Cmd::sops(), &["encrypt", "p.yaml"]).code(1);
    run(Cmd::credseal(), &["encrypt", "p.yaml"]).code(111);
    // No .sops.yaml for updatekeys: sops 1, credseal 61 (ConfigFileNotFound).
    let enc = run(Cmd::credseal(), &["encrypt", "--age", &recipient, "p.yaml"])
        .ok()
        .stdout;
    write(dir.path(), "f.enc.yaml", enc);
    run(Cmd::sops(), &["updatekeys", "-y", "f.enc.yaml"]).code(1);
    run(Cmd::credseal(), &["updatekeys", "-y", "f.enc.yaml"]).code(61);
    // A broken or non-matching .sops.yaml: sops 1, credseal 5 (ErrorReadingConfig).
    for config in [
        "creation_rules: [\n".to_owned(),
        format!("creation_rules:\n  - path_regex: nomatch\n    age: {recipient}\n"),
    ] {
        write(dir.path(), ".sops.yaml", &config);
        run(Cmd::sops(), &["encrypt", "p.yaml"]).code(1);
        run(Cmd::credseal(), &["encrypt", "p.yaml"]).code(5);
        run(Cmd::sops(), &["updatekeys", "-y", "f.enc.yaml"]).code(1);
        run(Cmd::credseal(), &["updatekeys", "-y", "f.enc.yaml"]).code(5);
    }
    assert!(plain.exists());
}

// ---- filestatus -------------------------------------------------------------------------

#[test]
fn filestatus_prints_and_exits_as_sops() {
    let repo = Repo::new();
    let yaml = repo.sops_file("db.enc.yaml", &db_yaml());
    let json = repo.sops_file("db.enc.json", r#"{"a": "b"}"#);
    let env = repo.sops_file("db.enc.env", "A=b\n");
    let without_mac: String = std::fs::read_to_string(&yaml)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("    mac:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let cases = [
        yaml.clone(),
        json,
        env,
        write(repo.dir.path(), "plain.yaml", "a: 1\n"),
        write(repo.dir.path(), "plain.json", r#"{"a": 1}"#),
        write(repo.dir.path(), "plain.env", "A=1\n"),
        write(repo.dir.path(), "empty.yaml", ""),
        write(repo.dir.path(), "nomac.yaml", without_mac),
        write(repo.dir.path(), "bad.yaml", "a: [\n"),
        write(repo.dir.path(), "scalar-sops.yaml", "a: 1\nsops: 5\n"),
        write(repo.dir.path(), "plain.bin", "not json"),
        repo.path("missing.yaml"),
    ];
    for file in &cases {
        let s = repo.sops().arg("filestatus").arg(file).run();
        let c = repo.cs().arg("filestatus").arg(file).run();
        assert_eq!((c.code, c.text()), (s.code, s.text()), "{}", file.display());
    }
    // What sops reads as binary (no extension), credseal recognises by content; with
    // --input-type both agree.
    let noext = copy(&yaml, "noext");
    repo.cs()
        .arg("filestatus")
        .arg(&noext)
        .run()
        .ok()
        .text()
        .eq("{\"encrypted\":true}\n")
        .then_some(())
        .expect("recognised by content");
    for cmd in [repo.sops(), repo.cs()] {
        let out = cmd
            .args(["filestatus", "--input-type", "yaml"])
            .arg(&noext)
            .run();
        assert_eq!(out.ok().text(), "{\"encrypted\":true}\n");
    }
}

// ---- exec-env / exec-file ---------------------------------------------------------------

/// `env` output as sorted lines without the shell's own `PWD`, `SHLVL` and `_`.
fn env_lines(out: &Out) -> Vec<String> {
    let mut lines: Vec<String> = out
        .text()
        .lines()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[test]
fn exec_env_sets_the_values_as_sops_does() {
    let repo = Repo::new();
    let file = repo.sops_file(
        "env.enc.yaml",
        &format!(
            "PASSWORD: {PASSWORD}\nPORT: 5432\nRATIO: 1.5\nON: true\nEMPTY: \"\"\nLINES: \"a\\nb\"\nNOTHING: null\n"
        ),
    );
    let [s, c] = [repo.sops(), repo.cs()].map(|cmd| {
        cmd.args(["exec-env", "--pristine"])
            .arg(&file)
            .arg("/usr/bin/env")
            .run()
    });
    let (s, c) = (s.ok(), c.ok());
    assert_eq!(env_lines(&c), env_lines(&s));
    assert!(c.text().contains(&format!("PASSWORD={PASSWORD}\n")));
    // Without --pristine the environment is inherited; the command's status is passed on.
    for cmd in [repo.sops(), repo.cs()] {
        let out = cmd
            .env("INHERITED", "yes")
            .arg("exec-env")
            .arg(&file)
            .arg("test \"$INHERITED:$PORT\" = yes:5432 && exit 7")
            .run();
        out.code(7);
    }
    // A mapping has no environment form: 1 in both.
    let nested = repo.sops_file("nested.enc.yaml", &db_yaml());
    for cmd in [repo.sops(), repo.cs()] {
        cmd.arg("exec-env").arg(&nested).arg("true").run().code(1);
    }
}

#[test]
fn exec_file_gives_the_plaintext_through_a_private_fifo_or_file_then_removes_it() {
    let repo = Repo::new();
    let file = repo.sops_file("db.enc.yaml", &db_yaml());
    let tmp = tempfile::tempdir().unwrap();
    let probe = "stat -c '%a %F' {} \"$(dirname {})\"; basename {}; cat {}";
    let run = |cmd: Cmd, extra: &[&str]| {
        cmd.env("TMPDIR", tmp.path())
            .arg("exec-file")
            .args(extra)
            .arg(&file)
            .arg(probe)
            .run()
            .ok()
            .text()
    };
    for extra in [
        &[][..],
        &["--no-fifo", "--filename", "db.yaml"][..],
        &["--output-type", "json"][..],
    ] {
        let c = run(repo.cs(), extra);
        let s = run(repo.sops(), extra);
        let kind = if extra.contains(&"--no-fifo") {
            "600 regular file\n700 directory\ndb.yaml\n"
        } else {
            "600 fifo\n700 directory\ntmp-file\n"
        };
        assert!(c.starts_with(kind), "{extra:?}: {c}");
        // The same plaintext as sops gives (sops' --no-fifo name has a random suffix).
        let body = |t: &str| t.lines().skip(3).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&c), body(&s), "{extra:?}");
        assert!(c.contains(PASSWORD));
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "{extra:?}: the private directory is removed"
        );
    }
    // The command's status is passed on, and the plaintext removed all the same.
    repo.cs()
        .env("TMPDIR", tmp.path())
        .args(["exec-file", "--no-fifo"])
        .arg(&file)
        .arg("test -s {} && exit 9")
        .run()
        .code(9);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // A FIFO nobody reads does not hang the command.
    let (code, _) = crate::support::run_bounded(
        repo.cs()
            .env("TMPDIR", tmp.path())
            .arg("exec-file")
            .arg(&file)
            .arg("true"),
        Duration::from_secs(20),
    );
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    // --filename cannot leave the private directory.
    repo.cs()
        .args(["exec-file", "--filename", "../escape"])
        .arg(&file)
        .arg("true")
        .run()
        .code(2);
}

#[test]
fn exec_file_interrupted_stops_the_command_and_removes_the_plaintext() {
    let repo = Repo::new();
    let file = repo.sops_file("db.enc.yaml", &db_yaml());
    let tmp = tempfile::tempdir().unwrap();
    let side = tempfile::tempdir().unwrap();
    let pidfile = side.path().join("pid");
    let mut running = repo
        .cs()
        .env("TMPDIR", tmp.path())
        .args(["exec-file", "--no-fifo"])
        .arg(&file)
        .arg(format!("echo $$ > {}; sleep 60", pidfile.display()))
        .spawn(Some(&side.path().join("stderr")));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let pid = loop {
        match std::fs::read_to_string(&pidfile) {
            Ok(p) if p.ends_with('\n') => break p.trim().to_owned(),
            _ => {
                assert!(std::time::Instant::now() < deadline, "never started");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    std::process::Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = running.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(85));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    let alive = std::process::Command::new("kill")
        .args(["-0", &pid])
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the command was stopped");
}

// ---- files whose name says nothing ------------------------------------------------------

fn credseal_bin() -> PathBuf {
    std::env::var_os("CREDSEAL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_credseal")))
}

/// Runs `script` in bash (for `<(…)` process substitution) with `$CREDSEAL` set.
fn bash(repo: &Repo, script: &str) -> Out {
    Cmd::tool("bash")
        .cwd(repo.dir.path())
        .key(&repo.key)
        .env("CREDSEAL", credseal_bin())
        .args(["-c", script])
        .run()
}

#[test]
fn an_encrypted_file_from_a_pipe_is_read_by_its_content() {
    let repo = Repo::new();
    let yaml = repo.sops_file("db.enc.yaml", &db_yaml());
    let new = copy(&yaml, "new.enc.yaml");
    repo.cs()
        .arg("set")
        .arg(&new)
        .arg(r#"["port"]"#)
        .stdin("6543\n")
        .run()
        .ok();
    // git show HEAD:db.enc.yaml, as a process substitution: /dev/fd/N.
    let out = bash(&repo, "\"$CREDSEAL\" diff <(cat db.enc.yaml) new.enc.yaml").ok();
    assert!(out.text().contains(r#"["port"]"#), "{}", out.text());
    out.never_shows(PASSWORD);

    let json = repo.sops_file("db.enc.json", r#"{"a": "from-json"}"#);
    let env = repo.sops_file("db.enc.env", "A=from-dotenv\n");
    let bin = repo.path("db.enc.bin");
    let out = repo
        .sops()
        .args(["encrypt", "--filename-override", "db.enc.bin"])
        .arg(write(repo.dir.path(), "raw", "raw bytes\n"))
        .run()
        .ok();
    write(repo.dir.path(), "db.enc.bin", out.stdout);
    for (file, want) in [
        (&yaml, repo.decrypt(&yaml)),
        (&json, repo.decrypt(&json)),
        (&env, "A=from-dotenv\n".to_owned()),
        (&bin, "raw bytes\n".to_owned()),
    ] {
        let name = file.file_name().unwrap().to_str().unwrap();
        let out = bash(&repo, &format!("\"$CREDSEAL\" decrypt <(cat {name})")).ok();
        assert_eq!(out.text(), want, "{name} through a pipe");
        let out = bash(
            &repo,
            &format!("cat {name} | \"$CREDSEAL\" decrypt /dev/stdin"),
        )
        .ok();
        assert_eq!(out.text(), want, "{name} on /dev/stdin");
    }
}

#[test]
fn textconv_of_an_extension_less_file_shows_fingerprints_not_ciphertext() {
    let repo = Repo::new();
    let yaml = repo.sops_file("db.enc.yaml", &db_yaml());
    // git hands textconv a temporary file; one without an extension says nothing.
    let tmpfile = copy(&yaml, "XXXXXX");
    let out = repo
        .cs()
        .args(["diff", "--textconv"])
        .arg(&tmpfile)
        .run()
        .ok();
    let text = out.text();
    assert!(!text.contains("ENC["), "raw ciphertext: {text}");
    assert!(text.contains(r#"["password"]: "#), "{text}");
    out.never_shows(PASSWORD);
}

#[test]
fn input_type_is_taken_by_every_command_that_reads_an_encrypted_file() {
    let repo = Repo::new();
    let yaml = repo.sops_file("db.enc.yaml", &db_yaml());
    // A YAML file under a name that says JSON: only --input-type reads it.
    let file = copy(&yaml, "db.enc.json");
    let it = ["--input-type", "yaml"];
    let run = |args: &[&str]| {
        let mut cmd = repo.cs();
        for a in args {
            cmd = if *a == "{}" {
                cmd.arg(&file)
            } else {
                cmd.arg(a)
            };
        }
        cmd.run()
    };
    run(&["decrypt", "{}"]).code(2);
    run(&["filestatus", "{}"]).code(1);
    run(&["decrypt", it[0], it[1], "{}"]).ok();
    run(&["filestatus", it[0], it[1], "{}"]).ok();
    run(&["diff", it[0], it[1], "{}", "{}"]).ok();
    run(&["diff", "--textconv", it[0], it[1], "{}"]).ok();
    run(&["set", it[0], it[1], "{}", r#"["port"]"#, "1"]).ok();
    run(&["unset", it[0], it[1], "{}", r#"["port"]"#]).ok();
    run(&["exec-env", it[0], it[1], "{}", "true"]).code(1); // `nested` is a mapping
    run(&["exec-file", it[0], it[1], "{}", "cat {} >/dev/null"]).ok();
    run(&["updatekeys", "-y", it[0], it[1], "{}"]).ok();
    run(&["rekey", it[0], it[1], "{}"]).ok();
    let noop = repo.script("noop.sh", "true");
    let out = repo
        .cs()
        .env("EDITOR", &noop)
        .args(["edit", it[0], it[1]])
        .arg(&file)
        .run()
        .code(200);
    assert!(out.stderr.contains("not been modified"), "{}", out.stderr);
    let decrypted = repo
        .sops()
        .args(["decrypt", "--input-type", "yaml"])
        .arg(&file)
        .run()
        .ok()
        .text();
    assert!(!decrypted.contains("port"), "{decrypted}");
}

// ---- completion and man ----------------------------------------------------------------

#[test]
fn bash_completion_names_every_command_and_man_is_roff() {
    let help = Cmd::credseal().arg("--help").run().ok().text();
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented further.
        .filter(|l| !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let out = Cmd::credseal()
            .args(["completion", shell])
            .run()
            .ok()
            .text();
        for c in &commands {
            assert!(out.contains(c.as_str()), "{shell} completion lacks {c}");
        }
    }
    let man = Cmd::credseal().arg("man").run().ok().text();
    assert!(
        man.starts_with(".ie") || man.contains("\n.TH credseal 1"),
        "roff: {man}"
    );
    assert!(man.contains(".SH NAME"));
    for c in ["exec\\-env", "exec\\-file", "filestatus", "encrypt"] {
        assert!(man.contains(&format!("credseal\\-{c}(1)")), "man lacks {c}");
    }
    let dir = tempfile::tempdir().unwrap();
    Cmd::credseal()
        .args(["man", "--dir"])
        .arg(dir.path())
        .run()
        .ok();
    for c in &commands {
        let page = dir.path().join(format!("credseal-{c}.1"));
        assert!(page.is_file(), "no page for {c}");
    }
}
