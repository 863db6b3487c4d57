//! Runs a program the way the kubelet runs a container: an empty read-only root that holds only
//! the binary and the container's mounts, the image's UID, its own namespaces (the host network
//! is shared so it reaches the tests' loopback servers). No `/tmp`, no shell, no CA bundle.
//! Debian's `bubblewrap` builds that root without a daemon. The test build is linked
//! dynamically, so the loader and the libraries `ldd` names are bound read-only too (the image's
//! static binary needs none).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Cmd, require};

/// The UID the Dockerfile's image runs as.
pub const IMAGE_UID: u32 = 65532;

pub struct Pod {
    binds: Vec<(&'static str, PathBuf, PathBuf)>,
    env: Vec<(String, OsString)>,
    uid: u32,
    program: PathBuf,
}

impl Pod {
    /// A container whose image holds `binary` at `/credseal`.
    pub fn credseal(binary: &Path) -> Pod {
        let mut pod = Pod {
            binds: Vec::new(),
            env: Vec::new(),
            uid: IMAGE_UID,
            program: PathBuf::from("/credseal"),
        };
        for lib in shared_libraries(binary) {
            let source = std::fs::canonicalize(&lib).unwrap();
            pod.binds.push(("--ro-bind", source, lib));
        }
        pod.binds
            .push(("--ro-bind", binary.to_owned(), PathBuf::from("/credseal")));
        pod
    }

    /// A container of a distribution image (postgres, redis): a shell and the server's client
    /// tools, here the host's `/usr` and `/etc` read-only, and `program` as its command.
    pub fn distro(program: &str, uid: u32) -> Pod {
        let mut pod = Pod {
            binds: Vec::new(),
            env: Vec::new(),
            uid,
            program: PathBuf::from(program),
        };
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"] {
            if Path::new(dir).exists() {
                pod.binds
                    .push(("--ro-bind", PathBuf::from(dir), PathBuf::from(dir)));
            }
        }
        pod
    }

    /// The binary under test, as `Cmd::credseal` picks it.
    pub fn credseal_under_test() -> Pod {
        let bin = std::env::var_os("CREDSEAL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_credseal")));
        Pod::credseal(&bin)
    }

    /// A rendered container of credseal's image: its args and literal env, and each volume
    /// mount bound from `volumes` (volume name → the host directory laid out the kubelet's
    /// way), read-only when the mount says so.
    pub fn container(
        container: &k8s_openapi::api::core::v1::Container,
        volumes: &[(&str, &Path)],
    ) -> (Pod, Vec<String>) {
        let mut pod = Pod::credseal_under_test();
        if let Some(uid) = container
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
        {
            pod.uid = uid as u32;
        }
        for m in container.volume_mounts.iter().flatten() {
            let host = volumes
                .iter()
                .find(|(n, _)| *n == m.name)
                .unwrap_or_else(|| panic!("no host directory for volume {}", m.name))
                .1;
            pod = if m.read_only == Some(true) {
                pod.ro(host, &m.mount_path)
            } else {
                pod.rw(host, &m.mount_path)
            };
        }
        for e in container.env.iter().flatten() {
            let value = e
                .value
                .clone()
                .unwrap_or_else(|| panic!("env {} is not a literal value", e.name));
            pod = pod.env(&e.name, value);
        }
        let mut args = container.command.clone().unwrap_or_default();
        args.extend(container.args.clone().unwrap_or_default());
        (pod, args)
    }

    /// A read-only mount (a Secret or ConfigMap volume, a `readOnly` mount).
    pub fn ro(mut self, host: impl AsRef<Path>, at: impl AsRef<Path>) -> Pod {
        self.binds.push((
            "--ro-bind",
            host.as_ref().to_owned(),
            at.as_ref().to_owned(),
        ));
        self
    }

    /// A writable mount (an emptyDir, a PersistentVolumeClaim).
    pub fn rw(mut self, host: impl AsRef<Path>, at: impl AsRef<Path>) -> Pod {
        self.binds
            .push(("--bind", host.as_ref().to_owned(), at.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<OsString>) -> Pod {
        self.env.push((k.to_owned(), v.into()));
        self
    }

    /// The container's command line, ready to run (the environment is only what was given).
    pub fn cmd<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(self, args: I) -> Cmd {
        let mut c = Command::new(require("bwrap"));
        c.args([
            "--unshare-all",
            "--share-net",
            "--die-with-parent",
            "--clearenv",
        ]);
        c.args([
            "--uid",
            &self.uid.to_string(),
            "--gid",
            &self.uid.to_string(),
        ]);
        for (how, host, at) in &self.binds {
            c.arg(how).arg(host).arg(at);
        }
        for (k, v) in &self.env {
            c.arg("--setenv").arg(k).arg(v);
        }
        // bwrap's root is a tmpfs; the kubelet's with readOnlyRootFilesystem is read-only.
        c.args(["--remount-ro", "/", "--chdir", "/"]);
        c.arg(&self.program).args(args);
        Cmd::wrap(c)
    }
}

/// The loader and libraries a dynamically linked binary needs, at the paths it looks for them.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("statically linked") || text.contains("not a dynamic executable") {
        return Vec::new();
    }
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}
