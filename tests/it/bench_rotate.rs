//! Benchmarks of `rotate`, run by bench/rotate-soak.sh and bench/rotate-scale.sh (`--ignored`),
//! never by the suite: concurrent pairs on one credential (lost passwords must be 0), and one
//! Secret-target rotation in a crowded namespace (peak RSS, API bytes and requests). They
//! print `BENCH ...` lines for the scripts; the only assertions are on correctness.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use credseal::sops::file::EncryptedFile;
use credseal::sops::keys::Keyring;
use credseal::sops::path;
use credseal::sops::store::Format;
use serde_json::{Value, json};

use crate::support::kube_api::KubeApi;
use crate::support::servers::{Postgres, Redis};
use crate::support::{Cmd, b64, new_key, unb64, write};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn credseal_bin() -> PathBuf {
    std::env::var_os("CREDSEAL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_credseal")))
}

/// (username, password, generation) of a SOPS file target.
fn read_target(file: &Path, ring: &Keyring) -> (String, String, u64) {
    let bytes = std::fs::read(file).unwrap();
    let opened = EncryptedFile::parse(&bytes, Format::Yaml)
        .unwrap()
        .open(ring, false)
        .unwrap();
    let doc = &opened.tree.documents[0];
    let get = |k: &str| {
        path::get(doc, &path::parse(k).unwrap())
            .ok()
            .and_then(|n| n.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let text = String::from_utf8_lossy(&bytes);
    let generation = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("credseal.dev/generation: "))
        .map(|g| g.trim_matches('"').parse().unwrap())
        .unwrap_or(0);
    (
        get(r#"["stringData"]["username"]"#),
        get(r#"["stringData"]["password"]"#),
        generation,
    )
}

struct Soak {
    dir: tempfile::TempDir,
    key: PathBuf,
    ring: Keyring,
}

impl Soak {
    fn new(recipient_user: &str, password: &str) -> Soak {
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = new_key(dir.path(), "k");
        let plain = write(
            dir.path(),
            "plain.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n    name: db\n    namespace: ns\ntype: Opaque\nstringData:\n    username: {recipient_user}\n    password: {password}\n"
            ),
        );
        let out = Cmd::credseal()
            .cwd(dir.path())
            .args(["encrypt", "--age", &recipient])
            .arg(&plain)
            .run()
            .ok();
        std::fs::remove_file(plain).unwrap();
        write(dir.path(), "db.enc.yaml", out.stdout);
        let mut ring = Keyring::new();
        ring.add_identities(&std::fs::read_to_string(&key).unwrap(), "bench")
            .unwrap();
        Soak { dir, key, ring }
    }

    fn target(&self) -> PathBuf {
        self.dir.path().join("db.enc.yaml")
    }
}

/// ≥100 pairs of runs on one credential started together, one of each pair held between
/// verify and commit (`rotate::after-verify=sleep(400)`): PostgreSQL and Redis, the admin with
/// its own password and with the target's (`{target: true}`). After each pair the target's
/// password must log in. `SOAK_PAIRS` (default 100), `SOAK_WAIT` (`--wait-for-lock`, default
/// 0: the loser is refused with 221; >0: it waits and rotates after the first).
#[test]
#[ignore = "benchmark: bash bench/rotate-soak.sh"]
fn soak_concurrent_pairs() {
    let pairs: usize = env_or("SOAK_PAIRS", 100);
    let wait: u64 = env_or("SOAK_WAIT", 0);
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    let redis = Redis::start(&[("app", "old-redis-password")]);
    let mut pg_password = "old-app-password".to_owned();
    let mut redis_password = "old-redis-password".to_owned();
    let mut total_lost = 0;
    for (engine, admin) in [
        ("postgres", "own"),
        ("postgres", "target"),
        ("redis", "own"),
        ("redis", "target"),
    ] {
        let (user, password) = match engine {
            "postgres" => ("app_user", pg_password.clone()),
            _ => ("app", redis_password.clone()),
        };
        let s = Soak::new(user, &password);
        let (url, strategy) = match (engine, admin) {
            ("postgres", "own") => (pg.url(), "in-place"),
            ("postgres", _) => (pg.url().replace("postgres@", "app_user@"), "in-place"),
            ("redis", "own") => (redis.url(), "dual"),
            _ => (redis.url().replace("default@", "app@"), "dual"),
        };
        let admin_password = match (engine, admin) {
            (_, "target") => "{target: true}",
            ("postgres", _) => "{env: PG_ADMIN_PASSWORD}",
            _ => "{env: REDIS_ADMIN_PASSWORD}",
        };
        let plan = write(
            s.dir.path(),
            "plan.yaml",
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: app\n    engine: {engine}\n    strategy: {strategy}\n    role: {user}\n    target:\n      file:\n        path: db.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n        usernameKey: '[\"stringData\"][\"username\"]'\n    admin:\n      url: {url}\n      password: {admin_password}\n"
            ),
        );
        let run = |failpoint: bool| {
            let mut c = Cmd::credseal()
                .cwd(s.dir.path())
                .key(&s.key)
                .env("PG_ADMIN_PASSWORD", "admin-pw-for-tests")
                .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
                .args(["rotate", "--wait-for-lock", &wait.to_string(), "--plan"])
                .arg(&plan);
            if failpoint {
                c = c.env("FAILPOINTS", "rotate::after-verify=sleep(400)");
            }
            c.spawn(None)
        };
        let (mut both_ok, mut refused, mut other, mut lost, mut pending_left) = (0, 0, 0, 0, 0);
        let pending = s.dir.path().join(".db.enc.yaml.credseal-pending.yaml");
        let start = Instant::now();
        let mut last_generation = read_target(&s.target(), &s.ring).2;
        for _ in 0..pairs {
            let (mut a, mut b) = (run(true), run(false));
            let codes = [
                a.child.wait().unwrap().code(),
                b.child.wait().unwrap().code(),
            ];
            match codes {
                [Some(0), Some(0)] => both_ok += 1,
                [Some(0), Some(221)] | [Some(221), Some(0)] => refused += 1,
                _ => other += 1,
            }
            let (u, p, generation) = read_target(&s.target(), &s.ring);
            let logs_in = match engine {
                "postgres" => pg.can_login(&u, &p),
                _ => redis.can_login(&u, &p),
            };
            if !logs_in {
                lost += 1;
            }
            if pending.exists() {
                pending_left += 1;
            }
            if codes == [Some(0), Some(0)] {
                assert_eq!(
                    generation,
                    last_generation + 2,
                    "both rotated, one after the other"
                );
            }
            last_generation = generation;
            match engine {
                "postgres" => pg_password = p,
                _ => redis_password = p,
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "BENCH soak engine={engine} admin={admin} wait={wait} pairs={pairs} both_ok={both_ok} refused_221={refused} other_exits={other} lost={lost} pending_left={pending_left} wall_s={secs:.1} generation={last_generation}"
        );
        total_lost += lost + other + pending_left;
    }
    assert_eq!(
        total_lost, 0,
        "no lost password, failed run or leftover pending record"
    );
}

/// A TCP forwarder to `port` counting the bytes sent back to clients (TLS records included).
fn counting_proxy(port: u16) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            let count = count.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    if c_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (proxy_port, served)
}

const NS: &str = "crowded";

/// A Deployment about the size of a real small one (labels, annotations, probes, resources,
/// env from other Secrets), not reading the rotated Secret unless `secret` names it.
fn deployment(name: &str, secret: &str) -> Value {
    let env: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("VAR_{i}"), "valueFrom": {"secretKeyRef": {"name": secret, "key": format!("key-{i}")}}}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "bench", "team": "payments"},
            "annotations": {"deployment.kubernetes.io/revision": "3", "owner": "team-payments@example.com"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:1.2.3"),
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": env,
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}, "periodSeconds": 10}}]}}}})
}

/// One Secret-target rotation against the in-process API server with `SCALE_SECRETS`
/// unrelated Secrets and `SCALE_DEPLOYMENTS` unrelated Deployments in the namespace (default
/// 10,000 and 5,000) and one consumer: peak RSS of the credseal process (GNU time's %M), bytes
/// the API served (through a counting proxy) and the number of requests.
#[test]
#[ignore = "benchmark: bash bench/rotate-scale.sh"]
fn scale_secret_target_rotation() {
    let secrets: usize = env_or("SCALE_SECRETS", 10_000);
    let deployments: usize = env_or("SCALE_DEPLOYMENTS", 5_000);
    let time = crate::support::require("time");
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[("app", "old-redis-password")]);
    let api = KubeApi::start();
    let setup = Instant::now();
    api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-credentials", "namespace": NS},
               "data": {"username": b64("app"), "password": b64("old-redis-password")}}),
    );
    for i in 0..secrets {
        api.put(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": format!("unrelated-{i:05}"), "namespace": NS, "labels": {"team": "payments"}},
                   "data": {"key-0": b64(&format!("value-{i}-{}", "x".repeat(40))), "key-1": b64("another value")}}),
        );
    }
    for i in 0..deployments {
        api.put(
            "deployments",
            deployment(
                &format!("svc-{i:05}"),
                &format!("unrelated-{:05}", i % secrets.max(1)),
            ),
        );
    }
    let mut consumer = deployment("consumer", "redis-credentials");
    consumer["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
        ["key"] = json!("password");
    api.put("deployments", consumer);
    let setup_secs = setup.elapsed().as_secs_f64();
    let (proxy, served) = counting_proxy(api.port);
    let kubeconfig = api.kubeconfig(dir.path(), NS);
    let text = std::fs::read_to_string(&kubeconfig).unwrap().replace(
        &format!("127.0.0.1:{}", api.port),
        &format!("127.0.0.1:{proxy}"),
    );
    std::fs::write(&kubeconfig, text).unwrap();
    let plan = write(
        dir.path(),
        "plan.yaml",
        format!(
            "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: cache\n    engine: redis\n    strategy: dual\n    role: app\n    target:\n      secret: {{namespace: {NS}, name: redis-credentials, key: password, usernameKey: username}}\n    admin:\n      url: {}\n      password: {{env: REDIS_ADMIN_PASSWORD}}\n    rollout:\n      timeout: 30s\n",
            redis.url()
        ),
    );
    let rss_file = dir.path().join("rss");
    let requests_before = api.requests().len();
    let start = Instant::now();
    let (out, redis_connections) = redis.connections_during(|| {
        Cmd::tool(time.to_str().unwrap())
            .cwd(dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
            .args(["-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(credseal_bin())
            .args(["rotate", "--plan"])
            .arg(&plan)
            .run()
    });
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let password = unb64(&api.get("secrets", NS, "redis-credentials").unwrap()["data"]["password"]);
    assert!(
        redis.can_login("app", &password),
        "the rotated password logs in"
    );
    let rss_kb: u64 = std::fs::read_to_string(&rss_file)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let requests = &api.requests()[requests_before..];
    let lists = requests
        .iter()
        .filter(|r| r.method == "GET" && r.query.contains_key("limit"))
        .count();
    println!(
        "BENCH scale secrets={secrets} deployments={deployments} peak_rss_kb={rss_kb} api_bytes={} requests={} paged_list_requests={lists} redis_connections={redis_connections} wall_s={secs:.2} setup_s={setup_secs:.1}",
        served.load(Ordering::Relaxed),
        requests.len()
    );
}

/// Connections one `rotate --plan` opens for `CONN_CREDENTIALS` (default 5) credentials on one
/// PostgreSQL (in-place) and as many on one Redis (dual), as the servers count them: total,
/// and (PostgreSQL) admin logins; the admin with its own password, then with the target's.
#[test]
#[ignore = "benchmark: bash bench/rotate-connections.sh"]
fn connections_per_admin_url() {
    let n: usize = env_or("CONN_CREDENTIALS", 5);
    for admin in ["own", "target"] {
        let pg = Postgres::start();
        let users: Vec<(String, String)> = (0..n)
            .map(|i| (format!("app_{i}"), format!("old-pg-password-{i}")))
            .collect();
        let redis_users: Vec<(String, String)> = (0..n)
            .map(|i| (format!("r{i}"), format!("old-redis-password-{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = redis_users
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        let redis = Redis::start(&pairs);
        for (u, p) in &users {
            pg.create_role(u, p);
        }
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = new_key(dir.path(), "k");
        let mut body = String::new();
        let all = users
            .iter()
            .map(|c| ("postgres", c))
            .chain(redis_users.iter().map(|c| ("redis", c)));
        for (i, (engine, (u, p))) in all.enumerate() {
            let plain = write(
                dir.path(),
                "plain.yaml",
                format!("stringData:\n    username: {u}\n    password: {p}\n"),
            );
            let out = Cmd::credseal()
                .cwd(dir.path())
                .args(["encrypt", "--age", &recipient])
                .arg(&plain)
                .run()
                .ok();
            write(dir.path(), &format!("c{i}.enc.yaml"), out.stdout);
            let (url, strategy, password) = match (engine, admin) {
                ("postgres", "own") => (pg.url(), "in-place", "{env: PG_ADMIN_PASSWORD}"),
                ("postgres", _) => (
                    pg.url().replace("postgres@", &format!("{u}@")),
                    "in-place",
                    "{target: true}",
                ),
                ("redis", "own") => (redis.url(), "dual", "{env: REDIS_ADMIN_PASSWORD}"),
                _ => (
                    redis.url().replace("default@", &format!("{u}@")),
                    "dual",
                    "{target: true}",
                ),
            };
            body.push_str(&format!(
                "  - name: c{i}\n    engine: {engine}\n    strategy: {strategy}\n    role: {u}\n    target:\n      file:\n        path: c{i}.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n    admin:\n      url: {url}\n      password: {password}\n"
            ));
        }
        let plan = write(
            dir.path(),
            "plan.yaml",
            format!("apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n{body}"),
        );
        let (pg_before, admin_before) = (pg.connections(), pg.logins("postgres"));
        let (out, redis_opened) = redis.connections_during(|| {
            Cmd::credseal()
                .cwd(dir.path())
                .key(&key)
                .env("PG_ADMIN_PASSWORD", "admin-pw-for-tests")
                .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
                .args(["rotate", "--plan"])
                .arg(&plan)
                .run()
        });
        assert_eq!(out.code, 0, "{}", out.stderr);
        let pg_opened = pg.connections() - pg_before;
        let pg_admin = pg.logins("postgres") - admin_before;
        println!(
            "BENCH connections admin={admin} credentials_per_server={n} postgres_connections={pg_opened} postgres_superuser_logins={pg_admin} redis_connections={redis_opened}"
        );
    }
}

/// The soak with a Secret target (the lock is a Lease) against the in-process API server:
/// `SOAK_PAIRS` pairs per engine and admin mode, as [`soak_concurrent_pairs`]; no consumers,
/// so no rollout waits.
#[test]
#[ignore = "benchmark: bash bench/rotate-soak.sh"]
fn soak_concurrent_pairs_secret_target() {
    const NS: &str = "soak";
    let pairs: usize = env_or("SOAK_PAIRS", 100);
    let wait: u64 = env_or("SOAK_WAIT", 0);
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    let redis = Redis::start(&[("app", "old-redis-password")]);
    let api = KubeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path(), NS);
    let mut total_bad = 0;
    for (engine, admin) in [
        ("postgres", "own"),
        ("postgres", "target"),
        ("redis", "own"),
        ("redis", "target"),
    ] {
        let (user, secret) = match engine {
            "postgres" => ("app_user", "pg-credentials"),
            _ => ("app", "redis-credentials"),
        };
        let initial = match engine {
            "postgres" => "old-app-password",
            _ => "old-redis-password",
        };
        if api.get("secrets", NS, secret).is_none() {
            api.put(
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": NS},
                       "data": {"username": b64(user), "password": b64(initial)}}),
            );
        }
        let (url, strategy, admin_password) = match (engine, admin) {
            ("postgres", "own") => (pg.url(), "in-place", "{env: PG_ADMIN_PASSWORD}"),
            ("postgres", _) => (
                pg.url().replace("postgres@", "app_user@"),
                "in-place",
                "{target: true}",
            ),
            ("redis", "own") => (redis.url(), "dual", "{env: REDIS_ADMIN_PASSWORD}"),
            _ => (
                redis.url().replace("default@", "app@"),
                "dual",
                "{target: true}",
            ),
        };
        let plan = write(
            dir.path(),
            "plan.yaml",
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: app\n    engine: {engine}\n    strategy: {strategy}\n    role: {user}\n    target:\n      secret: {{namespace: {NS}, name: {secret}, key: password, usernameKey: username}}\n    admin:\n      url: {url}\n      password: {admin_password}\n"
            ),
        );
        let run = |failpoint: bool| {
            let mut c = Cmd::credseal()
                .cwd(dir.path())
                .env("KUBECONFIG", &kubeconfig)
                .env("PG_ADMIN_PASSWORD", "admin-pw-for-tests")
                .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
                .args(["rotate", "--wait-for-lock", &wait.to_string(), "--plan"])
                .arg(&plan);
            if failpoint {
                c = c.env("FAILPOINTS", "rotate::after-verify=sleep(400)");
            }
            c.spawn(None)
        };
        let (mut both_ok, mut refused, mut other, mut lost, mut pending_left) = (0, 0, 0, 0, 0);
        let start = Instant::now();
        for _ in 0..pairs {
            let (mut a, mut b) = (run(true), run(false));
            let codes = [
                a.child.wait().unwrap().code(),
                b.child.wait().unwrap().code(),
            ];
            match codes {
                [Some(0), Some(0)] => both_ok += 1,
                [Some(0), Some(221)] | [Some(221), Some(0)] => refused += 1,
                _ => other += 1,
            }
            let data = &api.get("secrets", NS, secret).unwrap()["data"];
            let (u, p) = (unb64(&data["username"]), unb64(&data["password"]));
            let logs_in = match engine {
                "postgres" => pg.can_login(&u, &p),
                _ => redis.can_login(&u, &p),
            };
            if !logs_in {
                lost += 1;
            }
            if api
                .get("secrets", NS, &format!("{secret}-credseal-pending"))
                .is_some()
            {
                pending_left += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "BENCH soak-secret engine={engine} admin={admin} wait={wait} pairs={pairs} both_ok={both_ok} refused_221={refused} other_exits={other} lost={lost} pending_left={pending_left} wall_s={secs:.1}"
        );
        total_bad += lost + other + pending_left;
    }
    assert_eq!(
        total_bad, 0,
        "no lost password, failed run or leftover pending record"
    );
}
