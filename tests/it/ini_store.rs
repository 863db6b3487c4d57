//! The INI store against the real sops 3.11 binary, both ways (issue 15 item 8: credseal used to
//! encrypt `.ini` as a binary blob, and a sops INI file failed with "invalid JSON"). Each case
//! is encrypted by both tools; each tool decrypts both files to the same bytes, and the two
//! encrypted files match line for line once the random parts (ciphertexts, the data key's
//! envelope, times, sops 3.11's random order of the `[sops]` keys) are masked.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Cmd, Out, encrypt_with, fixtures, new_key, write};

/// Edge cases of go-ini's syntax as sops configures it, each small enough to read in a failure.
const CASES: &[(&str, &str)] = &[
    (
        "comments",
        "# hash comment\n; semicolon comment\na = 1 ; inline\nb = 2 #\n[s] ; on the header\n# two\n; lines\nc = 3\n; dangling at the end\n",
    ),
    (
        "quotes",
        "[q]\ndq = \"double\"\nsq = 'single'\ninner = \"a\"b\"\nhalf = \"open\nsemi_in_dq = \"a;b\"\nbt = `x#y;z`\ntq = \"\"\"with \"quotes\" and `ticks`\"\"\"\nspaces = \"  lead and trail  \"\n",
    ),
    (
        "separators",
        "[s]\neq = a=b=c\ncolon: x:y\nurl = https://h/p?a=1&b=2#frag\n`k=ey` = v\n\"c:d\" = w\nk\"q = z\n",
    ),
    ("empty_values", "[s]\na =\nb=\nc = \"\"\nd = ''\n"),
    (
        "duplicates",
        "[s]\nk = first\nother = x\nk = second\n[s]\nk = third\n[DEFAULT]\nd = 1\n",
    ),
    ("default_first", "[DEFAULT]\na = 1\n[x]\nb = 2\n"),
    ("lowercase_default", "top = 1\n[default]\na = 1\n"),
    ("only_sections", "[a]\n[b]\n"),
    ("only_comments", "; nothing but a comment\n"),
    ("crlf", "a = 1\r\n[s]\r\nb = x ; c\r\n\r\n"),
    ("bom_tabs", "\u{feff}\tkey\t=\tvalue\t\n[ sp ]\n  k = v  \n"),
    ("unicode", "[ünï]\nkéy = välue 🙂\nnbsp = \u{a0}x\u{a0}\n"),
    (
        "multiline",
        "[m]\nm = \"\"\"line 1\nline 2\n\"\"\" ; after\nb = `x\ny`\ncont = a \\\n  b \\\n\n  c = d\nlast = e\\",
    ),
    ("no_final_newline", "[s]\na = 1"),
    (
        "unencrypted_suffix",
        "[s]\nuser_unencrypted = admin\npass = hunter2\n[cfg_unencrypted]\nk = v\n",
    ),
];

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = write(dir, name, format!("#!/bin/sh\nset -e\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn decrypt(tool: Cmd, dir: &Path, key: &Path, file: &Path) -> Out {
    tool.cwd(dir).key(key).arg("decrypt").arg(file).run()
}

/// The encrypted file with its random parts masked: every `ENC[…]`, and in `[sops]` the data
/// key's envelope, `lastmodified`, `mac` and `version` (credseal writes its own); the `[sops]`
/// lines sorted, since sops 3.11 writes them in Go map order.
fn masked(enc: &[u8]) -> String {
    let text = String::from_utf8(enc.to_vec()).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("ENC[") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find(']').expect("ENC[ is closed");
        out.push_str("ENC[…]");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    let at = out.find("[sops]\n").expect("a [sops] section");
    let (data, meta) = out.split_at(at);
    let mut lines: Vec<String> = meta
        .lines()
        .skip(1)
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("key = value");
            let name = k.trim_end();
            let masked =
                name.ends_with("__map_enc") || ["lastmodified", "mac", "version"].contains(&name);
            format!("{k} = {}", if masked { "…" } else { v })
        })
        .collect();
    lines.sort();
    format!("{data}[sops]\n{}\n", lines.join("\n"))
}

/// Both tools encrypt `plain`; both decrypt both files to sops' bytes; the files have the same
/// structure. Returns sops' decrypted text.
fn check_both_ways(dir: &Path, key: &Path, recipient: &str, name: &str, plain: &Path) -> Vec<u8> {
    let theirs = write(
        dir,
        &format!("{name}.sops.ini"),
        encrypt_with(Cmd::sops(), dir, recipient, &[], plain),
    );
    let ours = write(
        dir,
        &format!("{name}.credseal.ini"),
        encrypt_with(Cmd::credseal(), dir, recipient, &[], plain),
    );
    let want = decrypt(Cmd::sops(), dir, key, &theirs).ok().stdout;
    for file in [&theirs, &ours] {
        for (tool, cmd) in [("sops", Cmd::sops()), ("credseal", Cmd::credseal())] {
            // sops exits 51 unless the MAC verifies.
            let got = decrypt(cmd, dir, key, file).ok();
            assert_eq!(
                got.text(),
                String::from_utf8_lossy(&want),
                "{name}: {tool} decrypting {} differs from sops decrypting its own file",
                file.display()
            );
        }
    }
    assert_eq!(
        masked(&std::fs::read(&ours).unwrap()),
        masked(&std::fs::read(&theirs).unwrap()),
        "{name}: credseal's encrypted file differs in structure from sops'"
    );
    want
}

#[test]
fn edge_cases_match_sops_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    for (name, text) in CASES {
        let plain = write(dir.path(), &format!("{name}.ini"), text);
        check_both_ways(dir.path(), &key, &recipient, name, &plain);
    }
}

#[test]
fn corpus_file_matches_sops_and_round_trips_in_sops_form() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = dir.path().join("app.ini");
    std::fs::copy(fixtures().join("corpus/app.ini"), &plain).unwrap();
    let decrypted = check_both_ways(dir.path(), &key, &recipient, "app", &plain);
    let text = String::from_utf8(decrypted.clone()).unwrap();
    // What sops makes of the file (go-ini's reading, then its writing).
    for line in [
        "; inline comment after a value\nhost              = db.internal.example.com\n",
        "port              = 5432\n",
        "padded            = \"  keeps its spaces  \"\n",
        "semicolon         = `a;b#c`\n",
        // `#` starts a comment even inside double quotes.
        "; a comment\"\nhash_quoted       = \"not\n",
        "multiline         = \"\"\"first line\nsecond line\"\"\"\n",
        "continued         = one two three\n",
        // A repeated key keeps its first place and its last value.
        "retries           = 5\n\n[DEFAULT]\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    // Text in sops' own form is a fixed point: encrypting it and decrypting gives it back.
    let again = write(dir.path(), "again.ini", &decrypted);
    assert_eq!(
        check_both_ways(dir.path(), &key, &recipient, "again", &again),
        decrypted
    );
}

/// `-` keys: go-ini numbers them `#1`, `#2`, which sops writes as comment lines, so its own file
/// fails its MAC (exit 51); likewise an unencrypted value ending in `\`. credseal refuses to
/// write such a file (exit 4, sops' "error dumping file").
#[test]
fn files_sops_cannot_reopen_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = write(dir.path(), "auto.ini", "[s]\n- = a\n- = b\n");
    let theirs = write(
        dir.path(),
        "auto.sops.ini",
        encrypt_with(Cmd::sops(), dir.path(), &recipient, &[], &plain),
    );
    decrypt(Cmd::sops(), dir.path(), &key, &theirs).code(51);
    let out = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &recipient])
        .arg(&plain)
        .run()
        .code(4);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("auto.ini")
            && out.stderr.contains("section [s]")
            && out.stderr.contains("would not read back"),
        "{}",
        out.stderr
    );
    // An unencrypted value ending in `\` continues onto the next line when read back.
    let plain = write(
        dir.path(),
        "bs.ini",
        "[s]\ndir_unencrypted = `C:\\`\nb = x\n",
    );
    let theirs = write(
        dir.path(),
        "bs.sops.ini",
        encrypt_with(Cmd::sops(), dir.path(), &recipient, &[], &plain),
    );
    decrypt(Cmd::sops(), dir.path(), &key, &theirs).code(51);
    let out = Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &recipient])
        .arg(&plain)
        .run()
        .code(4);
    assert!(out.stderr.contains("ending in `\\`"), "{}", out.stderr);
}

/// Malformed INI: the same exit code as sops (2), with the line named.
#[test]
fn malformed_input_exits_2_as_sops_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_key, recipient) = new_key(dir.path(), "k");
    // (input, credseal's message, whether sops refuses it too)
    let cases: [(&[u8], &str, bool); 5] = [
        (
            b"a = 1\n[s\n",
            "line 2: section header has no closing `]`",
            true,
        ),
        (b"a = 1\nnope\n", "line 2: not `key = value`", true),
        (b"[]\n", "line 1: section header `[]` has no name", true),
        (
            b"a = `open\n",
            "line 1: the value opened with ` is never closed",
            true,
        ),
        // sops keeps such bytes; credseal's values are text, and it says where.
        (b"a = caf\xe9\n", "line 1, byte 8: not UTF-8", false),
    ];
    for (bytes, want, sops_refuses) in cases {
        let plain = write(dir.path(), "bad.ini", bytes);
        let sops = Cmd::sops()
            .cwd(dir.path())
            .args(["encrypt", "--age", &recipient])
            .arg(&plain)
            .run();
        assert_eq!(sops.code == 2, sops_refuses, "{want}: {}", sops.stderr);
        let ours = Cmd::credseal()
            .cwd(dir.path())
            .args(["encrypt", "--age", &recipient])
            .arg(&plain)
            .run()
            .code(2);
        assert!(
            ours.stderr.contains("bad.ini") && ours.stderr.contains(want),
            "{want}: {}",
            ours.stderr
        );
    }
    // A plaintext [sops] section means already encrypted (sops 203).
    let plain = write(dir.path(), "enc.ini", "[sops]\na = 1\n");
    Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &recipient])
        .arg(&plain)
        .run()
        .code(203);
}

/// `--input-type ini` / `--output-type ini` where the name says nothing, both tools.
#[test]
fn input_and_output_type_ini() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = write(dir.path(), "plain.txt", "[s]\npassword = hunter2\n");
    let types = ["--input-type", "ini", "--output-type", "ini"];
    let mut files = Vec::new();
    for (tool, cmd) in [("sops", Cmd::sops()), ("credseal", Cmd::credseal())] {
        let enc = cmd
            .cwd(dir.path())
            .args(["encrypt", "--age", &recipient])
            .args(types)
            .arg(&plain)
            .run()
            .ok();
        assert!(enc.text().starts_with("[s]\npassword = ENC["), "{tool}");
        files.push(write(dir.path(), &format!("{tool}.enc"), &enc.stdout));
    }
    for file in &files {
        for cmd in [Cmd::sops(), Cmd::credseal()] {
            let out = cmd
                .cwd(dir.path())
                .key(&key)
                .arg("decrypt")
                .args(types)
                .arg(file)
                .run()
                .ok();
            assert_eq!(out.text(), "[s]\npassword = hunter2\n");
        }
    }
    // Without the flags the name says binary, for both tools.
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .arg("decrypt")
        .arg(&files[0])
        .run()
        .code(2);
}

/// `set` and `edit` by credseal on a file sops wrote; sops reads the result (MAC verified), and
/// only the changed value differs.
#[test]
fn set_and_edit_on_a_sops_file_stay_sops_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let plain = write(
        dir.path(),
        "db.ini",
        "; credentials\n[database]\nuser = app\npassword = old\nport = 5432\n",
    );
    let enc = write(
        dir.path(),
        "db.enc.ini",
        encrypt_with(Cmd::sops(), dir.path(), &recipient, &[], &plain),
    );
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .arg("set")
        .arg(&enc)
        .arg(r#"["database"]["password"]"#)
        .stdin("n3w;p@ss#word\n")
        .run()
        .ok();
    let after_set =
        "; credentials\n[database]\nuser     = app\npassword = `n3w;p@ss#word`\nport     = 5432\n";
    for cmd in [Cmd::sops(), Cmd::credseal()] {
        assert_eq!(decrypt(cmd, dir.path(), &key, &enc).ok().text(), after_set);
    }
    let editor = script(
        dir.path(),
        "ed.sh",
        r#"sed -i 's/^port *= .*/port = 6543/' "$1""#,
    );
    Cmd::credseal()
        .cwd(dir.path())
        .key(&key)
        .env("EDITOR", &editor)
        .arg("edit")
        .arg(&enc)
        .run()
        .ok();
    let after_edit = after_set.replace("5432", "6543");
    for cmd in [Cmd::sops(), Cmd::credseal()] {
        assert_eq!(decrypt(cmd, dir.path(), &key, &enc).ok().text(), after_edit);
    }
    // And the other way: sops sets a value in a file credseal wrote.
    let ours = write(
        dir.path(),
        "ours.enc.ini",
        encrypt_with(Cmd::credseal(), dir.path(), &recipient, &[], &plain),
    );
    Cmd::sops()
        .cwd(dir.path())
        .key(&key)
        .arg("set")
        .arg(&ours)
        .arg(r#"["database"]["user"]"#)
        .arg(r#""admin""#)
        .run()
        .ok();
    assert!(
        decrypt(Cmd::credseal(), dir.path(), &key, &ours)
            .ok()
            .text()
            .contains("user     = admin\n")
    );
}
