//! Runs a program the way the kubelet runs a container: an empty read-only root that holds only
//! the image's files and the container's mounts, the UID of its security context, its own
//! namespaces (the host network is shared so it reaches the tests' loopback servers), and an
//! `/etc/hosts` the kubelet would write, here naming cluster Services at loopback addresses. No
//! `/tmp`, no shell, no CA bundle unless the image has them. Debian's `bubblewrap` builds that
//! root without a daemon.
//!
//! Images: credseal's (`Pod::credseal`, the binary at `/credseal`; the test build is linked
//! dynamically, so the loader and the libraries `ldd` names are bound read-only too, where the
//! image's static binary needs none), and a distribution image such as `postgres:15-alpine`
//! (`Pod::distro`: a shell and the server's client tools, here the host's `/usr` and `/etc`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Container;

use super::{Cmd, require};

/// The UID the Dockerfile's image runs as.
pub const IMAGE_UID: u32 = 65532;

pub struct Pod {
    binds: Vec<(&'static str, PathBuf, PathBuf)>,
    env: Vec<(String, OsString)>,
    hosts: Vec<(String, String)>,
    uid: u32,
    /// The pod's `fsGroup`: the kubelet adds it to the process's groups; a user namespace
    /// maps one group only, so here it is the process's group.
    gid: Option<u32>,
    /// The pod's namespace, for `fieldRef: metadata.namespace`.
    namespace: String,
    /// Whether the container shares the host's network (to reach the tests' servers).
    share_net: bool,
    /// The image's entrypoint, when the container gives no `command`.
    entrypoint: Vec<String>,
    /// Keeps the generated `/etc/hosts` alive while the command may run.
    scratch: tempfile::TempDir,
}

impl Pod {
    fn empty(uid: u32, entrypoint: Vec<String>) -> Pod {
        Pod {
            binds: Vec::new(),
            env: Vec::new(),
            hosts: Vec::new(),
            uid,
            gid: None,
            namespace: "default".into(),
            share_net: true,
            entrypoint,
            scratch: tempfile::tempdir().unwrap(),
        }
    }

    /// credseal's image holding `binary` at `/credseal`, its entrypoint.
    pub fn credseal(binary: &Path) -> Pod {
        let mut pod = Pod::empty(IMAGE_UID, vec!["/credseal".into()]);
        for lib in shared_libraries(binary) {
            let source = std::fs::canonicalize(&lib).unwrap();
            pod.binds.push(("--ro-bind", source, lib));
        }
        pod.binds
            .push(("--ro-bind", binary.to_owned(), PathBuf::from("/credseal")));
        pod
    }

    /// The binary under test, as `Cmd::credseal` picks it.
    pub fn credseal_under_test() -> Pod {
        let bin = std::env::var_os("CREDSEAL_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_credseal")));
        Pod::credseal(&bin)
    }

    /// A distribution image (postgres, redis) running as `uid` by default.
    pub fn distro(uid: u32) -> Pod {
        let mut pod = Pod::empty(uid, Vec::new());
        for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"] {
            if Path::new(dir).exists() {
                pod.binds
                    .push(("--ro-bind", PathBuf::from(dir), PathBuf::from(dir)));
            }
        }
        pod
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
        self.env.retain(|(name, _)| name != k);
        self.env.push((k.to_owned(), v.into()));
        self
    }

    /// The pod's namespace (downward API `metadata.namespace`).
    pub fn namespace(mut self, namespace: &str) -> Pod {
        self.namespace = namespace.to_owned();
        self
    }

    /// The pod's `fsGroup`.
    pub fn fs_group(mut self, gid: Option<i64>) -> Pod {
        self.gid = gid.map(|g| g as u32);
        self
    }

    /// A network namespace of its own (only loopback): for a process that needs no network
    /// and listens on a fixed port, such as a sidecar's health port.
    pub fn own_network(mut self) -> Pod {
        self.share_net = false;
        self
    }

    /// Runs in-cluster as the kubelet sets a pod up with `automountServiceAccountToken`: the
    /// ServiceAccount's token volume (see `KubeApi::service_account`) and the API's address.
    pub fn in_cluster(self, api: &super::kube_api::KubeApi, token_volume: &Path) -> Pod {
        self.ro(
            token_volume,
            "/var/run/secrets/kubernetes.io/serviceaccount",
        )
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", api.port.to_string())
    }

    /// Resolves `name` (a Service's DNS name) to `ip` in the container's `/etc/hosts`.
    pub fn host(mut self, name: &str, ip: &str) -> Pod {
        self.hosts.push((ip.to_owned(), name.to_owned()));
        self
    }

    /// Runs `container` of a rendered pod spec in this image: its command or the image's
    /// entrypoint with its args, its literal env and `secretKeyRef`s (through `secret_key`,
    /// (Secret, key) → value), its `runAsUser`, and each volume mount bound from `volumes`
    /// (volume name → host directory laid out the kubelet's way), read-only where it says so.
    pub fn container(
        mut self,
        container: &Container,
        volumes: &[(&str, &Path)],
        secret_key: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Cmd {
        let context = container.security_context.as_ref();
        if let Some(uid) = context.and_then(|s| s.run_as_user) {
            self.uid = uid as u32;
        }
        // The process's group: fsGroup when the pod sets one (file access needs it), else
        // runAsGroup; a user namespace maps one group only.
        if self.gid.is_none() {
            self.gid = context.and_then(|s| s.run_as_group).map(|g| g as u32);
        }
        for m in container.volume_mounts.iter().flatten() {
            let host = volumes
                .iter()
                .find(|(n, _)| *n == m.name)
                .unwrap_or_else(|| panic!("no host directory for volume {}", m.name))
                .1;
            let host = match &m.sub_path {
                Some(sub) => host.join(sub),
                None => host.to_owned(),
            };
            self = if m.read_only == Some(true) {
                self.ro(host, &m.mount_path)
            } else {
                self.rw(host, &m.mount_path)
            };
        }
        let mut defined: Vec<(String, String)> = Vec::new();
        for e in container.env.iter().flatten() {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => expand(v, &defined),
                (None, Some(from)) => {
                    if let Some(f) = &from.field_ref {
                        match f.field_path.as_str() {
                            "metadata.namespace" => self.namespace.clone(),
                            other => panic!("env {}: fieldRef {other} is not resolved", e.name),
                        }
                    } else {
                        let r = from.secret_key_ref.as_ref().unwrap_or_else(|| {
                            panic!(
                                "env {}: only secretKeyRef and fieldRef are resolved",
                                e.name
                            )
                        });
                        secret_key(&r.name, &r.key).unwrap_or_else(|| {
                            panic!("env {}: no value for {}/{}", e.name, r.name, r.key)
                        })
                    }
                }
                (None, None) => String::new(),
            };
            defined.push((e.name.clone(), value.clone()));
            self = self.env(&e.name, value);
        }
        let mut argv = container
            .command
            .clone()
            .unwrap_or_else(|| self.entrypoint.clone());
        argv.extend(container.args.clone().unwrap_or_default());
        let argv: Vec<String> = argv.iter().map(|a| expand(a, &defined)).collect();
        let (program, args) = argv.split_first().expect("a command");
        self.cmd_at(program, args)
    }

    /// Runs the image's entrypoint with `args`.
    pub fn cmd<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(self, args: I) -> Cmd {
        let program = self.entrypoint.first().cloned().expect("an entrypoint");
        self.cmd_at(&program, args)
    }

    /// Runs `program` of the image with `args`; the environment is only what was given.
    pub fn cmd_at<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(
        self,
        program: &str,
        args: I,
    ) -> Cmd {
        let mut c = Command::new(require("bwrap"));
        c.args(["--unshare-all", "--die-with-parent", "--clearenv"]);
        if self.share_net {
            c.arg("--share-net");
        }
        let gid = self.gid.unwrap_or(self.uid);
        c.args(["--uid", &self.uid.to_string(), "--gid", &gid.to_string()]);
        for (how, host, at) in &self.binds {
            c.arg(how).arg(host).arg(at);
        }
        let mut hosts = String::from("127.0.0.1\tlocalhost\n");
        for (ip, name) in &self.hosts {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        let hosts_file = self.scratch.path().join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        c.arg("--ro-bind").arg(&hosts_file).arg("/etc/hosts");
        for (k, v) in &self.env {
            c.arg("--setenv").arg(k).arg(v);
        }
        // bwrap's root is a tmpfs; the kubelet's with readOnlyRootFilesystem is read-only.
        c.args(["--remount-ro", "/", "--chdir", "/"]);
        c.arg(program).args(args);
        Cmd::wrap_keeping(c, self.scratch)
    }
}

/// The kubelet's `$(VAR)` expansion of env values, command and args: a variable defined
/// earlier in the container's env is replaced, `$$` is a literal `$`, anything else stays.
fn expand(s: &str, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(close) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let name = &tail[2..2 + close];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..3 + close]),
            }
            rest = &tail[3 + close..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
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
