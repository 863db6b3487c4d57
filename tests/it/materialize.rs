//! `materialize`: inputs laid out the way the kubelet mounts them, outputs checked the way a
//! consumer reads them.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use credseal::materialize::projection::{self, FileMode};
use credseal::secret::SecretBytes;

use crate::support::servers::free_port;
use crate::support::{Cmd, new_key};

const NASTY: &str = "p@ss:w/rd?#%&=+ é";

/// Updates `dir` like the kubelet's atomic writer: a new hidden payload dir, one `..data`
/// symlink swap, stable top-level links.
pub fn kubelet_update(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    let ts = tempfile::Builder::new()
        .prefix("..2026_")
        .tempdir_in(dir)
        .unwrap()
        .keep();
    for (name, bytes) in files {
        std::fs::write(ts.join(name), bytes).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

fn secret_yaml(namespace: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n    name: postgres-credentials\n    namespace: {namespace}\ntype: Opaque\nstringData:\n    username: app_user\n    password: '{}'\ndata:\n    token: c2VjcmV0LXRva2Vu\n",
        password.replace('\'', "''")
    )
}

struct Env {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = new_key(dir.path(), "cluster");
        // The key Secret, mounted the kubelet way, in Flux's `*.agekey` layout.
        kubelet_update(
            &dir.path().join("keys"),
            &[("age.agekey", std::fs::read(&key).unwrap())],
        );
        Env {
            dir,
            key,
            recipient,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn encrypt(&self, yaml: &str) -> Vec<u8> {
        crate::support::encrypt_yaml(self.dir.path(), &self.recipient, yaml)
    }

    fn publish(&self, yaml_or_raw: Vec<u8>) {
        kubelet_update(&self.path("source"), &[("postgres.enc.yaml", yaml_or_raw)]);
    }

    fn materialize(&self) -> Cmd {
        Cmd::credseal()
            .arg("materialize")
            .arg("--source")
            .arg(self.path("source"))
            .arg("--keys")
            .arg(self.path("keys"))
            .arg("--out")
            .arg(self.path("out"))
            .args(["--namespace", "platform-services"])
            .args([
                "--template",
                "DATABASE_URL=postgresql://{{postgres-credentials/username}}:{{postgres-credentials/password}}@postgres.platform-services.svc:5432/saas_platform",
            ])
    }
}

#[test]
fn once_renders_values_templates_and_modes() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", NASTY)));
    let out = env.materialize().arg("--once").run().ok();
    out.never_shows(NASTY);
    let dir = env.path("out");
    assert_eq!(
        std::fs::read_to_string(dir.join("postgres-credentials/password")).unwrap(),
        NASTY
    );
    assert_eq!(
        std::fs::read(dir.join("postgres-credentials/token")).unwrap(),
        b"secret-token",
        "data is base64-decoded"
    );
    let mode = std::fs::metadata(dir.join("postgres-credentials/username"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);
    let url = std::fs::read_to_string(dir.join("DATABASE_URL")).unwrap();
    let parsed = url::Url::parse(&url).unwrap();
    let password = percent_decode(parsed.password().unwrap());
    assert_eq!(password, NASTY, "the URL parses back to the same password");
    assert_eq!(parsed.host_str(), Some("postgres.platform-services.svc"));
    assert_eq!(parsed.path(), "/saas_platform");
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn group_and_mode_are_applied() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "pw")));
    env.materialize()
        .args(["--once", "--mode", "0440", "--group", "4242"])
        .run()
        .ok();
    let meta = std::fs::metadata(env.path("out/postgres-credentials/password")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o440);
    assert_eq!(meta.gid(), 4242);
}

#[test]
fn another_namespace_is_refused() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("kube-system", "stolen-password")));
    let out = env.materialize().arg("--once").run().code(1);
    assert!(
        out.stderr.contains("kube-system") && out.stderr.contains("platform-services"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("postgres.enc.yaml"),
        "names the file: {}",
        out.stderr
    );
    out.never_shows("stolen-password");
    assert!(!env.path("out/postgres-credentials").exists());
}

#[test]
fn moving_a_secret_by_editing_its_clear_namespace_fails_the_mac() {
    let env = Env::new();
    let enc = String::from_utf8(env.encrypt(&secret_yaml("kube-system", "pw"))).unwrap();
    env.publish(
        enc.replace("namespace: kube-system", "namespace: platform-services")
            .into_bytes(),
    );
    let out = env.materialize().arg("--once").run().code(51);
    assert!(out.stderr.contains("MAC"), "{}", out.stderr);
}

#[test]
fn wrong_key_fails_the_init_container() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "pw")));
    let (other, _) = new_key(env.dir.path(), "other");
    kubelet_update(
        &env.path("keys"),
        &[("age.agekey", std::fs::read(other).unwrap())],
    );
    env.materialize().arg("--once").run().code(128);
    let _ = &env.key;
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()))
}

/// Polls `cond` until it holds; the bound only keeps a broken build from hanging the suite.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}

/// The binary under test, as `Cmd::credseal` picks it (CI runs these tests against the
/// sidecar build too).
fn credseal_bin() -> PathBuf {
    std::env::var_os("CREDSEAL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_credseal")))
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sidecar_follows_updates_keeps_last_good_and_stops_on_sigterm() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "first-password")));
    let port = free_port();
    let mut cmd = Command::new(credseal_bin());
    cmd.args([
        "materialize",
        "--namespace",
        "platform-services",
        "--interval",
        "0.1",
    ])
    .arg("--source")
    .arg(env.path("source"))
    .arg("--keys")
    .arg(env.path("keys"))
    .arg("--out")
    .arg(env.path("out"))
    .args(["--listen", &format!("127.0.0.1:{port}")])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut sidecar = Sidecar(cmd.spawn().unwrap());
    let password = env.path("out/postgres-credentials/password");
    eventually("ready", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(
        std::fs::read_to_string(&password).unwrap(),
        "first-password"
    );
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);

    env.publish(env.encrypt(&secret_yaml("platform-services", "second-password")));
    eventually("re-render", || {
        std::fs::read_to_string(&password).is_ok_and(|p| p == "second-password")
    });

    // A bad update: the last good files stay, readiness drops, the error is counted.
    env.publish(b"sops: {}\nthis is not: [valid\n".to_vec());
    eventually("not ready", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    assert_eq!(
        std::fs::read_to_string(&password).unwrap(),
        "second-password"
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("credseal_materialize_renders_total{outcome=\"error\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("second-password"));

    // Recovery, then SIGTERM: exit 0.
    env.publish(env.encrypt(&secret_yaml("platform-services", "third-password")));
    eventually("ready again", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    assert_eq!(
        std::fs::read_to_string(&password).unwrap(),
        "third-password"
    );
    Command::new("kill")
        .args(["-TERM", &sidecar.0.id().to_string()])
        .status()
        .unwrap();
    let mut status = None;
    eventually("exit after SIGTERM", || {
        status = sidecar.0.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
    let mut stderr = String::new();
    sidecar
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    for secret in ["first-password", "second-password", "third-password"] {
        assert!(!stderr.contains(secret), "log leaks a value: {stderr}");
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let rendered = format!(
        "credseal: rendered 1 Secrets into {} in ",
        env.path("out").display()
    );
    let failed = "credseal: render failed, keeping the last good files: ";
    assert_eq!(lines.len(), 5, "{stderr}");
    for (line, prefix) in lines.iter().zip([&rendered, &rendered, failed, &rendered]) {
        assert!(
            line.starts_with(prefix),
            "{line:?} does not start with {prefix:?}"
        );
    }
    assert_eq!(lines[4], "credseal: stopping");
}

/// The sidecar with `--log-format json`: a render, a failed update and the stop are one JSON
/// object each on stderr, with the outcome and counts as fields and no value anywhere.
#[test]
fn sidecar_logs_json_lines() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "first-password")));
    let port = free_port();
    let mut cmd = Command::new(credseal_bin());
    cmd.args([
        "--log-format",
        "json",
        "materialize",
        "--namespace",
        "platform-services",
    ])
    .args([
        "--interval",
        "0.1",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--source")
    .arg(env.path("source"))
    .arg("--keys")
    .arg(env.path("keys"))
    .arg("--out")
    .arg(env.path("out"))
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut sidecar = Sidecar(cmd.spawn().unwrap());
    eventually("ready", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    env.publish(b"sops: {}\nthis is not: [valid\n".to_vec());
    eventually("not ready", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    Command::new("kill")
        .args(["-TERM", &sidecar.0.id().to_string()])
        .status()
        .unwrap();
    let mut stderr = String::new();
    sidecar
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(sidecar.0.wait().unwrap().code(), Some(0));
    assert!(
        !stderr.contains("first-password"),
        "log leaks a value: {stderr}"
    );
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let outcomes: Vec<_> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rendered", "failed", "stopped"], "{stderr}");
    for e in &events {
        assert_eq!(e["target"], "credseal::materialize");
        assert!(e["timestamp"].is_string(), "{e}");
    }
    assert_eq!(events[0]["level"], "INFO");
    assert_eq!(events[0]["secrets"], 1);
    assert_eq!(events[0]["out"], env.path("out").to_str().unwrap());
    assert!(events[0]["elapsed_ms"].is_number(), "{}", events[0]);
    assert_eq!(events[1]["level"], "WARN");
    assert!(
        events[1]["error"]
            .as_str()
            .unwrap()
            .contains("postgres.enc.yaml"),
        "the failure names the file: {}",
        events[1]
    );
}

/// A reader that resolves `..data` once and reads every file never sees two versions mixed,
/// across 1,000 updates.
#[test]
fn readers_never_see_a_mix_during_1000_updates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_owned();
    let payload = |v: usize| -> Vec<(String, SecretBytes)> {
        ["db/user", "db/password", "cache/password", "DATABASE_URL"]
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    SecretBytes::new(format!("v{v}").into_bytes()),
                )
            })
            .collect()
    };
    let mode = FileMode {
        mode: 0o400,
        group: None,
    };
    projection::project(&out, &payload(0), mode).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (out, done) = (out.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut consistent, mut retried) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let Ok(target) = std::fs::read_link(out.join("..data")) else {
                    continue;
                };
                let base = out.join(target);
                let reads: Result<Vec<String>, _> =
                    ["db/user", "db/password", "cache/password", "DATABASE_URL"]
                        .iter()
                        .map(|p| std::fs::read_to_string(base.join(p)))
                        .collect();
                match reads {
                    Ok(values) => {
                        assert!(
                            values.iter().all(|v| *v == values[0]),
                            "mixed versions: {values:?}"
                        );
                        consistent += 1;
                    }
                    // The old payload was removed after the swap: the kubelet contract is to retry.
                    Err(_) => retried += 1,
                }
            }
            (consistent, retried)
        })
    };
    for v in 1..=1000 {
        projection::project(&out, &payload(v), mode).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (consistent, _) = reader.join().unwrap();
    assert!(consistent > 0, "the reader read complete sets");
    assert_eq!(
        std::fs::read_to_string(out.join("db/password")).unwrap(),
        "v1000"
    );
}

/// Secret volumes as sources: values render with templates, and a change of the Secret (the
/// kubelet swaps the volume's `..data` after a rotation) is rendered again by the sidecar.
#[test]
fn secret_volumes_render_and_follow_changes() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("pg-secret");
    kubelet_update(
        &vol,
        &[
            ("username", b"app_user".to_vec()),
            ("password", b"first/pw@x".to_vec()),
        ],
    );
    let out = dir.path().join("out");
    let port = free_port();
    let mut cmd = Command::new(credseal_bin());
    cmd.args(["materialize", "--namespace", "platform-services", "--interval", "0.1"])
        .arg("--secret")
        .arg(format!("postgres-credentials={}", vol.display()))
        .arg("--out")
        .arg(&out)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--template", "DATABASE_URL=postgresql://{{postgres-credentials/username}}:{{postgres-credentials/password}}@postgres:5432/saas_platform"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let sidecar = Sidecar(cmd.spawn().unwrap());
    let url = out.join("DATABASE_URL");
    eventually("first render", || {
        std::fs::read_to_string(&url).is_ok_and(|u| u.contains("first%2Fpw%40x"))
    });
    assert_eq!(
        std::fs::read_to_string(out.join("postgres-credentials/username")).unwrap(),
        "app_user"
    );
    kubelet_update(
        &vol,
        &[
            ("username", b"app_user".to_vec()),
            ("password", b"second-pw".to_vec()),
        ],
    );
    eventually("re-render", || {
        std::fs::read_to_string(&url).is_ok_and(|u| u.contains(":second-pw@"))
    });
    drop(sidecar);
    // Nothing to render is an error, not an empty volume.
    Cmd::credseal()
        .args(["materialize", "--once", "--namespace", "x", "--out"])
        .arg(dir.path().join("o2"))
        .run()
        .code(8);
}

/// Entries of `dir` (not following links): name → link target, "dir" or "file".
fn listing(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let kind = match std::fs::read_link(e.path()) {
                Ok(t) => format!("-> {}", t.display()),
                Err(_) if e.path().is_dir() => "dir".to_owned(),
                Err(_) => format!("file {:?}", std::fs::read(e.path()).unwrap()),
            };
            (e.file_name().to_string_lossy().into_owned(), kind)
        })
        .collect();
    out.sort();
    out
}

/// Whatever can write into OUT (the app container sharing the emptyDir) can plant a `..data`
/// link to anywhere: the next render replaces the link and never touches what it pointed at.
#[test]
fn a_planted_data_link_is_replaced_never_followed() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "pw")));
    for target in ["absolute", "relative"] {
        let victim = env.path(&format!("victim-{target}"));
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("f"), "precious").unwrap();
        let out = env.path("out");
        std::fs::create_dir_all(&out).unwrap();
        let _ = std::fs::remove_file(out.join("..data"));
        let link: PathBuf = if target == "absolute" {
            victim.clone()
        } else {
            Path::new("..").join(victim.file_name().unwrap())
        };
        std::os::unix::fs::symlink(&link, out.join("..data")).unwrap();
        std::os::unix::fs::symlink(&link, out.join("..data_tmp")).unwrap();
        // A changed value, so the render is not skipped as unchanged.
        env.publish(env.encrypt(&secret_yaml("platform-services", target)));
        env.materialize().arg("--once").run().ok();
        assert_eq!(
            std::fs::read_to_string(victim.join("f")).unwrap(),
            "precious",
            "the {target} link's target is untouched"
        );
        let data = std::fs::read_link(out.join("..data")).unwrap();
        assert!(
            data.to_string_lossy().starts_with("..2"),
            "..data points at a payload dir now: {data:?}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("postgres-credentials/password")).unwrap(),
            target
        );
    }
}

fn named_secret(name: &str) -> String {
    secret_yaml("platform-services", "pw")
        .replace("name: postgres-credentials", &format!("name: '{name}'"))
}

/// A Secret name is a path component in OUT: one the API server would refuse (a path, an
/// absolute path, a `..` name) is refused with the last good set untouched.
#[test]
fn secret_names_the_api_server_refuses_are_refused() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "good")));
    env.materialize().arg("--once").run().ok();
    let before = listing(&env.path("out"));
    let abs = env.path("abs-target");
    for name in [
        "../../escaped".to_owned(),
        abs.display().to_string(),
        "..data".to_owned(),
        "Upper".to_owned(),
    ] {
        env.publish(env.encrypt(&named_secret(&name)));
        let out = env.materialize().arg("--once").run().code(1);
        assert!(
            out.stderr.contains("postgres.enc.yaml")
                && out.stderr.contains("not a valid Secret name"),
            "names the file and the problem: {}",
            out.stderr
        );
        assert_eq!(
            listing(&env.path("out")),
            before,
            "OUT unchanged for {name}"
        );
        assert!(
            !env.path("escaped").exists()
                && !env.dir.path().parent().unwrap().join("escaped").exists()
        );
        assert!(!abs.exists(), "nothing written at an absolute name");
    }
    assert_eq!(
        std::fs::read_to_string(env.path("out/postgres-credentials/password")).unwrap(),
        "good"
    );
}

/// `--out` at a directory that holds other things: only what credseal created is replaced
/// or removed, across renders; a name it needs held by something else is refused.
#[test]
fn an_existing_out_keeps_everything_not_ours() {
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(out.join("..keep")).unwrap();
    std::fs::create_dir_all(out.join("..2020_01_01_00_00_00.000000000")).unwrap();
    std::fs::write(out.join("..notes"), "n").unwrap();
    std::fs::write(out.join("README"), "r").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", out.join("mylink")).unwrap();
    std::os::unix::fs::symlink("..data/gone", out.join("..dots")).unwrap();
    let theirs = listing(&out);
    for password in ["one", "two"] {
        env.publish(env.encrypt(&secret_yaml("platform-services", password)));
        env.materialize().arg("--once").run().ok();
        let now = listing(&out);
        for entry in &theirs {
            assert!(now.contains(entry), "{entry:?} kept: {now:?}");
        }
        assert_eq!(
            std::fs::read_to_string(out.join("postgres-credentials/password")).unwrap(),
            password
        );
    }

    // A regular file where a Secret's link must go: refused, the file and the last set kept.
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("postgres-credentials"), "mine").unwrap();
    env.publish(env.encrypt(&secret_yaml("platform-services", "pw")));
    let res = env.materialize().arg("--once").run().code(3);
    assert!(
        res.stderr.contains("postgres-credentials")
            && res.stderr.contains("not created by credseal"),
        "{}",
        res.stderr
    );
    assert_eq!(
        std::fs::read_to_string(out.join("postgres-credentials")).unwrap(),
        "mine"
    );
    assert!(
        std::fs::symlink_metadata(out.join("..data")).is_err(),
        "nothing projected"
    );
}

/// The health port is reachable from the pod network: a client that trickles a request or
/// sends an endless one neither delays the probes nor grows the sidecar.
#[test]
fn health_server_survives_slow_and_huge_requests() {
    let env = Env::new();
    env.publish(env.encrypt(&secret_yaml("platform-services", "pw")));
    let port = free_port();
    let mut cmd = Command::new(credseal_bin());
    cmd.args(["materialize", "--namespace", "platform-services"])
        .arg("--source")
        .arg(env.path("source"))
        .arg("--keys")
        .arg(env.path("keys"))
        .arg("--out")
        .arg(env.path("out"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _sidecar = Sidecar(cmd.spawn().unwrap());
    eventually("ready", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 200)
    });

    // One byte every 200 ms, for as long as the server keeps the connection.
    let stop = Arc::new(AtomicBool::new(false));
    let slow = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            for b in b"GET /healthz HTTP/1.1\r\nHost: x".iter().cycle() {
                if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            false
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let probe = {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Bounds a broken server only; the old one answered nothing while the slow client
        // trickled.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).map(|_| resp)
    };
    assert!(
        probe
            .as_deref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "a probe is answered while another client trickles: {probe:?}"
    );
    // The trickling client is cut off by the request deadline, not served forever.
    eventually("slow client disconnected", || slow.is_finished());
    stop.store(true, Ordering::Relaxed);

    // 256 MiB without a newline: the server stops reading after its limit and closes.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'A'; 1 << 20];
    let sent = (0..256).take_while(|_| s.write_all(&chunk).is_ok()).count();
    assert!(
        sent < 256,
        "the server closed an endless request ({sent} MiB accepted)"
    );
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
}

/// A Secret manifest named `name` with the rotation annotations `rotate` writes, if any.
fn rotated_secret(name: &str, rotation: Option<(u64, &str)>, password: &str) -> String {
    let annotations = rotation
        .map(|(generation, at)| {
            format!(
                "    annotations:\n        credseal.dev/generation: \"{generation}\"\n        credseal.dev/rotated-at: \"{at}\"\n"
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n    name: {name}\n    namespace: platform-services\n{annotations}type: Opaque\nstringData:\n    password: {password}\n"
    )
}

/// The whole response: (status line, headers, body).
fn http_response(port: u16, path: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// One sample of the text exposition format: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses the text exposition format strictly: every line is `# HELP name text`, `# TYPE name
/// type` (once per family, before its samples) or `name{label="value",…} value`, label values
/// with only the format's escapes; no series twice.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let name_re = regex::Regex::new("^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
    let label_re = regex::Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").unwrap();
    let mut typed = std::collections::BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples: Vec<Sample> = Vec::new();
    assert!(text.ends_with('\n'), "the last line ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(name_re.is_match(name), "{line}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_re.is_match(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            assert!(
                samples.iter().all(|(n, _, _)| n != name),
                "TYPE after samples: {line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "a comment that is neither: {line}");
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert!(label_re.is_match(&label), "label name {label:?}: {line}");
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars
                            .next()
                            .unwrap_or_else(|| panic!("unterminated: {line}"))
                        {
                            '"' => break,
                            '\\' => value.push(match chars.next() {
                                Some('\\') => '\\',
                                Some('"') => '"',
                                Some('n') => '\n',
                                other => panic!("bad escape {other:?}: {line}"),
                            }),
                            c => value.push(c),
                        }
                    }
                    labels.push((label, value));
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        other => panic!("{other:?} after a label: {line}"),
                    }
                }
                (name, labels)
            }
        };
        assert!(name_re.is_match(name), "{line}");
        assert!(typed.contains_key(name), "sample before its TYPE: {line}");
        assert!(
            samples.iter().all(|(n, l, _)| !(n == name && *l == labels)),
            "series twice: {line}"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn value_of(samples: &[Sample], name: &str, secret: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.iter().any(|(k, v)| k == "name" && v == secret)
                && l.iter()
                    .any(|(k, v)| k == "namespace" && v == "platform-services")
        })
        .map(|(_, _, v)| *v)
}

/// `/metrics` exports each rendered Secret's generation and rotation time from the annotations
/// `rotate` writes, in the exposition format, with no value in it; an alert for "rotated longer
/// ago than its policy" can be computed from it, and it follows a new rotation.
#[test]
fn metrics_export_each_secrets_rotation_for_an_alert() {
    let env = Env::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let recent_at = now - 3600;
    let recent = credseal::sops::tree::Timestamp::from_unix(recent_at).to_rfc3339();
    let old = "2020-01-02T03:04:05Z";
    let old_at = 1_577_934_245;
    let publish = |recent_generation: u64, recent: &str| {
        kubelet_update(
            &env.path("source"),
            &[
                (
                    "recent.enc.yaml",
                    env.encrypt(&rotated_secret(
                        "recent-db",
                        Some((recent_generation, recent)),
                        "value-recent-1",
                    )),
                ),
                (
                    "old.enc.yaml",
                    env.encrypt(&rotated_secret("old-db", Some((2, old)), "value-old-2")),
                ),
                (
                    "never.enc.yaml",
                    env.encrypt(&rotated_secret("never-db", None, "value-never-3")),
                ),
            ],
        );
    };
    publish(4, &recent);
    let vol = env.path("pg-volume");
    kubelet_update(&vol, &[("password", b"value-volume-4".to_vec())]);
    let port = free_port();
    let mut cmd = Command::new(credseal_bin());
    cmd.args([
        "materialize",
        "--namespace",
        "platform-services",
        "--interval",
        "0.1",
    ])
    .arg("--source")
    .arg(env.path("source"))
    .arg("--keys")
    .arg(env.path("keys"))
    .arg("--secret")
    .arg(format!("volume-db={}", vol.display()))
    .arg("--out")
    .arg(env.path("out"))
    .args(["--listen", &format!("127.0.0.1:{port}")])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _sidecar = Sidecar(cmd.spawn().unwrap());
    eventually("ready", || {
        http_get(port, "/readyz").is_some_and(|(c, _)| c == 200)
    });

    let (status, headers, body) = http_response(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers
            .lines()
            .any(|h| h == "Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    for value in ["value-recent", "value-old", "value-never", "value-volume"] {
        assert!(!body.contains(value), "a value in the metrics: {body}");
    }
    let samples = parse_exposition(&body);
    let generation = |s: &str| value_of(&samples, "credseal_secret_generation", s);
    let rotated = |s: &str| value_of(&samples, "credseal_secret_rotation_timestamp_seconds", s);
    assert_eq!(generation("recent-db"), Some(4.0));
    assert_eq!(rotated("recent-db"), Some(recent_at as f64));
    assert_eq!(generation("old-db"), Some(2.0));
    assert_eq!(rotated("old-db"), Some(old_at as f64));
    assert_eq!(generation("never-db"), Some(0.0), "no rotation yet");
    assert_eq!(rotated("never-db"), None);
    assert_eq!(
        (generation("volume-db"), rotated("volume-db")),
        (None, None)
    );
    assert_eq!(
        value_of(&samples, "credseal_secret_info", "volume-db"),
        Some(1.0)
    );
    let errors = samples
        .iter()
        .find(|(n, _, _)| n == "credseal_render_errors_total")
        .unwrap();
    assert_eq!(errors.2, 0.0);
    let last_success = samples
        .iter()
        .find(|(n, _, _)| n == "credseal_render_last_success_timestamp_seconds")
        .unwrap()
        .2;
    assert!((now as f64 - 5.0..now as f64 + 60.0).contains(&last_success));

    // The README's alert expressions, evaluated on these samples with the 20h policy itself
    // as the threshold: time() - credseal_secret_rotation_timestamp_seconds > 72000, and
    // Secrets from SOPS files that record no rotation at all.
    let stale: Vec<&str> = samples
        .iter()
        .filter(|(n, _, v)| {
            n == "credseal_secret_rotation_timestamp_seconds" && now as f64 - v > 72000.0
        })
        .filter_map(|(_, l, _)| l.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str()))
        .collect();
    assert_eq!(stale, ["old-db"]);
    let unrecorded: Vec<&str> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "credseal_secret_info" && l.contains(&("source".into(), "sops".into()))
        })
        .filter_map(|(_, l, _)| l.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str()))
        .filter(|name| rotated(name).is_none())
        .collect();
    assert_eq!(unrecorded, ["never-db"]);

    // A new rotation of the file: the metrics follow it.
    let newer = credseal::sops::tree::Timestamp::from_unix(now).to_rfc3339();
    publish(5, &newer);
    eventually("generation 5", || {
        let (_, _, body) = http_response(port, "/metrics");
        let samples = parse_exposition(&body);
        value_of(&samples, "credseal_secret_generation", "recent-db") == Some(5.0)
            && value_of(
                &samples,
                "credseal_secret_rotation_timestamp_seconds",
                "recent-db",
            ) == Some(now as f64)
    });
}
