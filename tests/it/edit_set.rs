//! `edit` and `set`: no change means a byte-identical file (`edit` exits 200, `set` 0 as sops);
//! one changed value changes only that value's line plus `lastmodified` and `mac`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{Cmd, write};

use crate::support::{Sealed as Setup, sealed_secret as setup};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = write(dir, name, format!("#!/bin/sh\nset -e\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Lines that differ between two versions of a file, by key (the text before `:`).
fn changed_keys(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    assert_eq!(
        a.len(),
        b.len(),
        "no lines added or removed:\n{before}\n---\n{after}"
    );
    a.iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.trim().split(':').next().unwrap().to_owned())
        .collect()
}

fn edit(s: &Setup, editor: &Path, tmpdir: &Path) -> crate::support::Out {
    Cmd::credseal()
        .cwd(s.dir.path())
        .key(&s.key)
        .env("EDITOR", editor)
        .env("TMPDIR", tmpdir)
        .arg("edit")
        .arg(&s.enc)
        .run()
}

#[test]
fn edit_without_change_exits_200_byte_identical() {
    let s = setup();
    let tmp = tempfile::tempdir().unwrap();
    let before = std::fs::read(&s.enc).unwrap();
    let editor = script(s.dir.path(), "noop.sh", "true");
    edit(&s, &editor, tmp.path()).code(200);
    assert_eq!(std::fs::read(&s.enc).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp dir removed"
    );
}

#[test]
fn edit_one_value_changes_only_its_line_lastmodified_and_mac() {
    let s = setup();
    let tmp = tempfile::tempdir().unwrap();
    let side = s.dir.path().join("perms");
    let before = std::fs::read_to_string(&s.enc).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // lastmodified has whole seconds
    let editor = script(
        s.dir.path(),
        "ed.sh",
        &format!(
            "stat -c %a \"$1\" > {side}\nstat -c %a \"$(dirname \"$1\")\" >> {side}\nsed -i 's/^    username: app_user$/    username: new_user/' \"$1\"",
            side = side.display()
        ),
    );
    edit(&s, &editor, tmp.path()).ok();
    let after = std::fs::read_to_string(&s.enc).unwrap();
    let mut keys = changed_keys(&before, &after);
    keys.sort();
    assert_eq!(keys, ["lastmodified", "mac", "username"]);
    assert_eq!(
        std::fs::read_to_string(&side).unwrap(),
        "600\n700\n",
        "0600 file in a 0700 directory"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp dir removed"
    );
    let out = Cmd::sops()
        .cwd(s.dir.path())
        .key(&s.key)
        .args(["decrypt", "--extract", r#"["stringData"]["username"]"#])
        .arg(&s.enc)
        .run()
        .ok();
    assert_eq!(out.text(), "new_user");
}

#[test]
fn edit_to_invalid_yaml_is_abandoned_without_touching_the_file() {
    let s = setup();
    let tmp = tempfile::tempdir().unwrap();
    let before = std::fs::read(&s.enc).unwrap();
    let editor = script(
        s.dir.path(),
        "break.sh",
        "printf 'a: [\\n  - {\\n' > \"$1\"",
    );
    let out = edit(&s, &editor, tmp.path()).code(2);
    assert!(out.stderr.contains("abandoned"), "{}", out.stderr);
    assert_eq!(std::fs::read(&s.enc).unwrap(), before);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "temp dir removed"
    );
}

#[test]
fn failing_editor_leaves_file_and_removes_plaintext() {
    let s = setup();
    let tmp = tempfile::tempdir().unwrap();
    let before = std::fs::read(&s.enc).unwrap();
    let editor = script(s.dir.path(), "fail.sh", "echo changed >> \"$1\"; exit 3");
    // sops' code for a failing editor.
    edit(&s, &editor, tmp.path()).code(201);
    assert_eq!(std::fs::read(&s.enc).unwrap(), before);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn set_same_value_exits_0_untouched_and_new_value_changes_one_line() {
    let s = setup();
    let before = std::fs::read_to_string(&s.enc).unwrap();
    let set = |value: &str| {
        Cmd::credseal()
            .cwd(s.dir.path())
            .key(&s.key)
            .arg("set")
            .arg(&s.enc)
            .arg(r#"["stringData"]["password"]"#)
            .stdin(value.to_owned())
            .run()
    };
    let out = set("p@ss:w/rd?#%\n").ok();
    out.never_shows("p@ss:w/rd?#%");
    assert_eq!(std::fs::read_to_string(&s.enc).unwrap(), before);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    set("brand-new-password\n")
        .ok()
        .never_shows("brand-new-password");
    let after = std::fs::read_to_string(&s.enc).unwrap();
    let mut keys = changed_keys(&before, &after);
    keys.sort();
    assert_eq!(keys, ["lastmodified", "mac", "password"]);
}

fn set_value(s: &Setup, extra: &[&str], stdin: &str) -> crate::support::Out {
    Cmd::credseal()
        .cwd(s.dir.path())
        .key(&s.key)
        .arg("set")
        .args(extra)
        .arg(&s.enc)
        .arg(r#"["stringData"]["password"]"#)
        .stdin(stdin.to_owned())
        .run()
}

fn decrypted_password(s: &Setup) -> String {
    Cmd::credseal()
        .key(&s.key)
        .args(["decrypt", "--extract", r#"["stringData"]["password"]"#])
        .arg(&s.enc)
        .run()
        .ok()
        .text()
}

#[test]
fn set_refuses_an_empty_value_unless_allowed() {
    let s = setup();
    let before = std::fs::read(&s.enc).unwrap();
    // `printf '%s' "$UNSET" | credseal set` and `echo "$UNSET" | credseal set` both send nothing.
    for (stdin, extra) in [("", &[][..]), ("\n", &[][..]), ("", &["--raw"][..])] {
        let out = set_value(&s, extra, stdin).code(7);
        assert!(out.stderr.contains("--allow-empty"), "{}", out.stderr);
        assert_eq!(std::fs::read(&s.enc).unwrap(), before, "file untouched");
    }
    set_value(&s, &["--allow-empty"], "\n").ok();
    assert_eq!(decrypted_password(&s), "");
}

#[test]
fn set_json_takes_exactly_one_value() {
    let s = setup();
    let before = std::fs::read(&s.enc).unwrap();
    for bad in [r#""a", "w": 5"#, r#""a", "v": "b""#, r#""a"} {"x": 1"#, ""] {
        let out = set_value(&s, &["--json"], bad).code(7);
        assert!(
            out.stderr.contains("one JSON value"),
            "{bad}: {}",
            out.stderr
        );
        assert_eq!(std::fs::read(&s.enc).unwrap(), before, "file untouched");
    }
    set_value(&s, &["--json"], " \"json-value\"\n").ok();
    assert_eq!(decrypted_password(&s), "json-value");
}

/// Whether a process exists (a zombie counts as gone: it no longer runs).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Sends `signal` to a running `credseal edit` whose editor is `body` (a shell script that
/// writes its PID to `$PIDFILE` first), then checks that nothing is left behind.
fn interrupted_edit(signal: &str, body: &str) {
    let s = setup();
    let tmp = tempfile::tempdir().unwrap();
    let side = tempfile::tempdir().unwrap();
    let pidfile = side.path().join("editor.pid");
    let editor = script(
        side.path(),
        "editor.sh",
        &format!("echo $$ > {}\n{body}", pidfile.display()),
    );
    let before = std::fs::read(&s.enc).unwrap();
    let mut edit = Cmd::credseal()
        .cwd(s.dir.path())
        .key(&s.key)
        .env("EDITOR", &editor)
        .env("TMPDIR", tmp.path())
        .arg("edit")
        .arg(&s.enc)
        .spawn(Some(&side.path().join("stderr")));
    let child = &mut edit.child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let editor_pid = loop {
        match std::fs::read_to_string(&pidfile) {
            Ok(p) if p.ends_with('\n') => break p.trim().to_owned(),
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the editor never started"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    };
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "plaintext dir exists"
    );
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("credseal edit did not exit after SIG{signal}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(side.path().join("stderr")).unwrap();
    let editor_left = running(&editor_pid);
    if editor_left {
        // Not left running after a failed test.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &editor_pid])
            .status();
    }
    assert_eq!(
        status.code(),
        Some(85),
        "SIG{signal}: {status}; stderr: {stderr}"
    );
    assert!(stderr.contains(&format!("SIG{signal}")), "{stderr}");
    assert!(!editor_left, "SIG{signal}: the editor still runs");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "SIG{signal}: plaintext left: {left:?}");
    assert_eq!(
        std::fs::read(&s.enc).unwrap(),
        before,
        "SIG{signal}: file untouched"
    );
}

#[test]
fn a_signal_stops_the_editor_and_removes_the_plaintext() {
    for signal in ["TERM", "HUP", "INT", "QUIT"] {
        interrupted_edit(signal, "sleep 60");
    }
}

#[test]
fn an_editor_that_ignores_the_signal_is_stopped_all_the_same() {
    // The user would go on editing a file that nobody reads back any more.
    interrupted_edit("INT", "trap '' INT TERM\nwhile :; do sleep 1; done");
    interrupted_edit("TERM", "trap '' INT TERM\nwhile :; do sleep 1; done");
}
