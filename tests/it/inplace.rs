//! In-place writes replace the file a symlink points to, atomically, and keep the link (as sops
//! does): a secrets file kept elsewhere and linked into a checkout stays one file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{Cmd, Sealed, new_key, sealed_secret, write};

struct Linked {
    s: Sealed,
    /// `real/secret.enc.yaml`, the file the link `secret.enc.yaml` points to.
    target: PathBuf,
}

fn linked() -> Linked {
    let s = sealed_secret();
    let real = s.dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let target = real.join("secret.enc.yaml");
    std::fs::rename(&s.enc, &target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("real/secret.enc.yaml", &s.enc).unwrap();
    Linked { s, target }
}

impl Linked {
    fn run(&self, args: &[&str], stdin: &str) -> crate::support::Out {
        let editor = self.s.dir.path().join("ed.sh");
        Cmd::credseal()
            .cwd(self.s.dir.path())
            .key(&self.s.key)
            .env("EDITOR", &editor)
            .args(args)
            .stdin(stdin.to_owned())
            .run()
    }

    /// The command changed the target, kept the link and the target's mode, and left no
    /// temporary file in either directory.
    #[track_caller]
    fn written_through(&self, what: &str, before: &[u8]) -> Vec<u8> {
        let link = std::fs::symlink_metadata(&self.s.enc).unwrap();
        assert!(
            link.file_type().is_symlink(),
            "{what}: the link was replaced"
        );
        assert_eq!(
            std::fs::read_link(&self.s.enc).unwrap(),
            Path::new("real/secret.enc.yaml")
        );
        let after = std::fs::read(&self.target).unwrap();
        assert_ne!(after, before, "{what}: the target was not changed");
        let mode = std::fs::metadata(&self.target)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "{what}: the target's mode is kept");
        for dir in [self.s.dir.path(), &self.s.dir.path().join("real")] {
            let hidden: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().starts_with('.'))
                .collect();
            assert!(hidden.is_empty(), "{what}: temp files left: {hidden:?}");
        }
        after
    }
}

#[test]
fn every_in_place_write_goes_through_a_symlink() {
    let l = linked();
    let enc = "secret.enc.yaml";
    let password = r#"["stringData"]["password"]"#;
    let mut before = std::fs::read(&l.target).unwrap();

    l.run(&["set", enc, password], "through-the-link\n").ok();
    before = l.written_through("set", &before);
    l.run(&["unset", enc, r#"["stringData"]["username"]"#], "")
        .ok();
    before = l.written_through("unset", &before);
    write(
        l.s.dir.path(),
        "ed.sh",
        "#!/bin/sh\nsed -i 's/through-the-link/edited/' \"$1\"\n",
    );
    std::fs::set_permissions(
        l.s.dir.path().join("ed.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    l.run(&["edit", enc], "").ok();
    before = l.written_through("edit", &before);
    l.run(&["rekey", enc], "").ok();
    before = l.written_through("rekey", &before);
    let (_, other) = new_key(l.s.dir.path(), "other");
    let own = std::fs::read_to_string(&l.s.key).unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    write(
        l.s.dir.path(),
        ".sops.yaml",
        format!("creation_rules:\n  - age: {own},{other}\n"),
    );
    l.run(&["updatekeys", "-y", enc], "").ok();
    std::fs::remove_file(l.s.dir.path().join(".sops.yaml")).unwrap();
    before = l.written_through("updatekeys", &before);
    l.run(&["decrypt", "-i", enc], "").ok();
    before = l.written_through("decrypt -i", &before);
    assert!(String::from_utf8_lossy(&before).contains("password: edited"));
    l.run(&["encrypt", "-i", "--age", &own, enc], "").ok();
    l.written_through("encrypt -i", &before);
    assert_eq!(
        l.run(&["decrypt", "--extract", password, enc], "")
            .ok()
            .text(),
        "edited"
    );
}
