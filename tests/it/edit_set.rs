//! `edit` and `set`: no change means exit 200 and a byte-identical file; one changed value
//! changes only that value's line plus `lastmodified` and `mac`.

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
    edit(&s, &editor, tmp.path()).code(1);
    assert_eq!(std::fs::read(&s.enc).unwrap(), before);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn set_same_value_exits_200_and_new_value_changes_one_line() {
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
    let out = set("p@ss:w/rd?#%\n").code(200);
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
