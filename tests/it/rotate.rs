//! Rotation against real PostgreSQL and Redis servers started by the tests, with a SOPS file
//! as the target: logins before and after, crashes after every step, zero failed logins for
//! the two-password strategies, and the server log free of plaintext.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use credseal::sops::file::EncryptedFile;
use credseal::sops::keys::Keyring;
use credseal::sops::path;
use credseal::sops::store::Format;

use crate::support::servers::{Postgres, Redis};
use crate::support::{Cmd, Out, new_key, write};

struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = new_key(dir.path(), "k");
    Setup {
        dir,
        key,
        recipient,
    }
}

impl Setup {
    fn target(&self, username: &str, password: &str) -> PathBuf {
        self.target_named("db.enc.yaml", username, password)
    }

    fn target_named(&self, file: &str, username: &str, password: &str) -> PathBuf {
        let yaml = format!(
            "apiVersion: v1
kind: Secret
metadata:
    name: db-credentials
    namespace: platform-services
type: Opaque
stringData:
    username: {username}
    password: {password}
"
        );
        let enc = crate::support::encrypt_yaml(self.dir.path(), &self.recipient, &yaml);
        write(self.dir.path(), file, enc)
    }

    fn plan(&self, body: &str) -> PathBuf {
        write(
            self.dir.path(),
            "plan.yaml",
            format!("apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n{body}"),
        )
    }

    fn rotate_cmd(&self, plan: &Path) -> Cmd {
        Cmd::credseal()
            .cwd(self.dir.path())
            .key(&self.key)
            .env("PG_ADMIN_PASSWORD", "admin-pw-for-tests")
            .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
            .arg("rotate")
            .arg("--plan")
            .arg(plan)
    }

    fn rotate(&self, plan: &Path, failpoint: Option<&str>) -> Out {
        let mut cmd = self.rotate_cmd(plan);
        if let Some(fp) = failpoint {
            cmd = cmd.env("FAILPOINTS", format!("{fp}=panic"));
        }
        cmd.run()
    }
}

fn keyring(key: &Path) -> Keyring {
    let mut ring = Keyring::new();
    ring.add_identities(&std::fs::read_to_string(key).unwrap(), "test")
        .unwrap();
    ring
}

/// (username, password) the target file holds now, read the way a consumer would.
fn current(file: &Path, ring: &Keyring) -> (String, String) {
    let bytes = std::fs::read(file).unwrap();
    let opened = EncryptedFile::parse(&bytes, Format::Yaml)
        .unwrap()
        .open(ring, false)
        .unwrap();
    let doc = &opened.tree.documents[0];
    let get = |k: &str| {
        path::get(doc, &path::parse(k).unwrap())
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    };
    (
        get(r#"["stringData"]["username"]"#),
        get(r#"["stringData"]["password"]"#),
    )
}

fn pg_plan(pg: &Postgres, strategy: &str, extra: &str) -> String {
    format!(
        "  - name: app-db\n    engine: postgres\n    strategy: {strategy}\n    role: app_user\n    target:\n      file:\n        path: db.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n        usernameKey: '[\"stringData\"][\"username\"]'\n    admin:\n      url: {}\n      password: {{env: PG_ADMIN_PASSWORD}}\n{extra}",
        pg.url()
    )
}

fn redis_plan(r: &Redis, strategy: &str, extra: &str) -> String {
    format!(
        "  - name: app-cache\n    engine: redis\n    strategy: {strategy}\n    role: app\n    target:\n      file:\n        path: db.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n    admin:\n      url: {}\n      password: {{env: REDIS_ADMIN_PASSWORD}}\n{extra}",
        r.url()
    )
}

#[test]
fn postgres_in_place_rotation() {
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let plan = s.plan(&pg_plan(&pg, "in-place", "    rotateAfter: 1h\n"));
    let out = s.rotate(&plan, None).ok();
    assert_eq!(out.text(), "app-db: rotated (generation 1)\n");
    out.never_shows("old-app-password");
    let ring = keyring(&s.key);
    let (user, new) = current(&target, &ring);
    assert_eq!(user, "app_user");
    assert_eq!(new.len(), 32);
    out.never_shows(&new);
    assert!(pg.can_login("app_user", &new), "the new password logs in");
    assert!(
        !pg.can_login("app_user", "old-app-password"),
        "the old one does not"
    );
    let log = pg.log();
    assert!(
        log.contains("ALTER ROLE \"app_user\" PASSWORD 'SCRAM-SHA-256$"),
        "the verifier is what the server saw"
    );
    assert!(
        !log.contains(&new),
        "the server log never sees the plaintext"
    );
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains("credseal.dev/generation: \"1\""), "{text}");
    // Still opens with the real sops.
    let out = Cmd::sops()
        .cwd(s.dir.path())
        .key(&s.key)
        .args(["decrypt", "--extract", r#"["stringData"]["password"]"#])
        .arg(&target)
        .run()
        .ok();
    assert_eq!(out.text(), new);
    // Within rotateAfter a rerun changes nothing.
    let before = std::fs::read(&target).unwrap();
    let out = s.rotate(&plan, None).ok();
    assert_eq!(out.text(), "app-db: not due\n");
    assert_eq!(std::fs::read(&target).unwrap(), before);
}

#[test]
fn dry_run_changes_nothing() {
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let plan = s.plan(&pg_plan(&pg, "in-place", ""));
    let before = std::fs::read(&target).unwrap();
    let out = Cmd::credseal()
        .cwd(s.dir.path())
        .key(&s.key)
        .args(["rotate", "--dry-run", "--plan"])
        .arg(&plan)
        .run()
        .ok();
    assert_eq!(out.text(), "app-db: would rotate (dry run)\n");
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert!(pg.can_login("app_user", "old-app-password"));
    assert!(
        !s.dir
            .path()
            .join(".db.enc.yaml.credseal-pending.yaml")
            .exists(),
        "no pending record"
    );
}

/// A crash right after each step, then a rerun: the password in the target logs in, nothing
/// is lost, and a further rerun changes nothing.
#[test]
fn crash_after_every_step_then_rerun() {
    let pg = Postgres::start();
    let s = setup();
    let ring = keyring(&s.key);
    for (i, step) in ["stage", "apply", "verify", "commit", "roll"]
        .iter()
        .enumerate()
    {
        let role = format!("crash_{i}");
        pg.create_role(&role, "old-crash-password");
        let target = s.target(&role, "old-crash-password");
        let plan = s.plan(
            &pg_plan(&pg, "in-place", "    rotateAfter: 1h\n")
                .replace("role: app_user", &format!("role: {role}")),
        );
        let out = s.rotate(&plan, Some(&format!("rotate::after-{step}")));
        assert_ne!(out.code, 0, "{step}: the failpoint stopped the run");
        out.never_shows("old-crash-password");
        assert!(
            s.dir
                .path()
                .join(".db.enc.yaml.credseal-pending.yaml")
                .exists(),
            "{step}: pending record kept"
        );
        let out = s.rotate(&plan, None).ok();
        assert!(
            out.text().starts_with("app-db: rotated"),
            "{step}: {}",
            out.text()
        );
        let (_, password) = current(&target, &ring);
        assert!(
            pg.can_login(&role, &password),
            "{step}: the target's password logs in"
        );
        if *step != "stage" {
            assert_ne!(
                password, "old-crash-password",
                "{step}: the applied password was not lost"
            );
        }
        assert!(
            !s.dir
                .path()
                .join(".db.enc.yaml.credseal-pending.yaml")
                .exists(),
            "{step}: pending cleared"
        );
        let before = std::fs::read(&target).unwrap();
        assert_eq!(
            s.rotate(&plan, None).ok().text(),
            "app-db: not due\n",
            "{step}"
        );
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "{step}: a second rerun changes nothing"
        );
    }
}

/// A client that reconnects every few milliseconds with whatever the target holds. A login
/// that fails after the target changed under it (read the old password, the rotation committed
/// and retired before the connection was made) is retried once with what the target holds
/// now, as a client that re-reads its credentials on an auth error would; a failure with the
/// password the target still holds is a failure.
struct Hammer {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<u64>,
}

fn hammer(
    target: PathBuf,
    ring: Keyring,
    login: impl Fn(&str, &str) -> bool + Send + 'static,
) -> Hammer {
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let (stop2, attempts2) = (stop.clone(), attempts.clone());
    let thread = std::thread::spawn(move || {
        let mut failures = 0;
        while !stop2.load(Ordering::Relaxed) {
            let read = current(&target, &ring);
            if !login(&read.0, &read.1) {
                let now = current(&target, &ring);
                if now == read || !login(&now.0, &now.1) {
                    failures += 1;
                }
            }
            attempts2.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        failures
    });
    let h = Hammer {
        stop,
        attempts,
        thread,
    };
    // Logging in before anything changes, however slow the machine.
    h.wait_for(6);
    h
}

impl Hammer {
    /// Blocks until the client has made `more` further logins.
    fn wait_for(&self, more: u64) {
        let want = self.attempts.load(Ordering::Relaxed) + more;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.attempts.load(Ordering::Relaxed) < want {
            assert!(
                std::time::Instant::now() < end,
                "the client stopped logging in"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Lets the client log in a few more times with the final state, then stops it:
    /// (attempts, failures).
    fn finish(self) -> (u64, u64) {
        self.wait_for(6);
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.join().unwrap();
        (self.attempts.load(Ordering::Relaxed), failures)
    }
}

#[test]
fn redis_dual_rotation_has_zero_failed_logins() {
    let r = Arc::new(Redis::start(&[("app", "old-redis-password")]));
    let s = setup();
    let target = s.target("app", "old-redis-password");
    let plan = s.plan(&redis_plan(&r, "dual", ""));
    let r2 = r.clone();
    let client = hammer(target.clone(), keyring(&s.key), move |u, p| {
        r2.can_login(u, p)
    });
    for _ in 0..3 {
        let out = s.rotate(&plan, None).ok();
        assert!(
            out.stderr
                .contains("step=retire outcome=ok old password removed;")
                && out.stderr.contains(": ACL SAVE"),
            "{}",
            out.stderr
        );
    }
    let (attempts, failures) = client.finish();
    assert!(attempts > 10, "the client ran ({attempts} logins)");
    assert_eq!(failures, 0, "no failed login in {attempts}");
    let (_, new) = current(&target, &keyring(&s.key));
    assert!(r.can_login("app", &new));
    assert!(!r.can_login("app", "old-redis-password"));
    let acl = r.acl_file();
    assert!(!acl.contains(&new), "only hashes in the ACL file");
    assert_eq!(acl.matches("user app ").count(), 1);
    assert_eq!(
        acl.lines()
            .find(|l| l.starts_with("user app "))
            .unwrap()
            .matches('#')
            .count(),
        1,
        "one password left"
    );
}

#[test]
fn postgres_alternating_rotation_has_zero_failed_logins() {
    let pg = Arc::new(Postgres::start());
    pg.psql("CREATE ROLE app_user NOLOGIN; GRANT pg_read_all_data TO app_user")
        .unwrap();
    pg.create_role("app_user_a", "old-alt-password");
    pg.psql("GRANT app_user TO app_user_a").unwrap();
    let s = setup();
    let target = s.target("app_user_a", "old-alt-password");
    let plan = s.plan(&pg_plan(&pg, "alternating", "    grace: 1h\n"));
    let pg2 = pg.clone();
    let client = hammer(target.clone(), keyring(&s.key), move |u, p| {
        pg2.can_login(u, p)
    });
    let mut users = Vec::new();
    for _ in 0..3 {
        s.rotate(&plan, None).ok();
        users.push(current(&target, &keyring(&s.key)).0);
    }
    let (attempts, failures) = client.finish();
    assert!(attempts > 5, "the client ran ({attempts} logins)");
    assert_eq!(failures, 0, "no failed login in {attempts}");
    assert_eq!(
        users,
        ["app_user_b", "app_user_a", "app_user_b"],
        "the roles alternate"
    );
    // The retired role keeps working for its grace period only.
    let until = pg.psql("SELECT rolvaliduntil IS NOT NULL AND rolvaliduntil < 'infinity' FROM pg_roles WHERE rolname = 'app_user_a'").unwrap();
    assert_eq!(until.trim(), "t", "retired role expires");
    let active = pg
        .psql("SELECT rolvaliduntil = 'infinity' FROM pg_roles WHERE rolname = 'app_user_b'")
        .unwrap();
    assert_eq!(active.trim(), "t");
    let members = pg.psql("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE m.roleid = 'app_user'::regrole").unwrap();
    assert_eq!(
        members.trim(),
        "2",
        "both roles hold the base role's grants"
    );
}

/// in-place has a window where new connections with the old password fail; this reports it.
#[test]
fn postgres_in_place_failed_logins_are_reported() {
    let pg = Arc::new(Postgres::start());
    pg.create_role("app_user", "old-app-password");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let plan = s.plan(&pg_plan(&pg, "in-place", ""));
    let pg2 = pg.clone();
    let client = hammer(target.clone(), keyring(&s.key), move |u, p| {
        pg2.can_login(u, p)
    });
    for _ in 0..3 {
        s.rotate(&plan, None).ok();
    }
    let (attempts, failures) = client.finish();
    eprintln!("in-place: {failures} failed logins out of {attempts} during 3 rotations");
    assert!(attempts > 5);
}

/// PostgreSQL that accepts only TLS (`hostssl`): rotation over `verify-full` with the plan's CA
/// works; a wrong CA fails with the host and the reason and changes nothing; no sslmode makes
/// credseal talk to it in clear.
#[test]
fn postgres_over_verify_full_tls() {
    let pg = Postgres::start_tls();
    pg.create_role("app_user", "old-app-password");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let ca = pg.ca.clone().unwrap();
    std::fs::copy(&ca, s.dir.path().join("ca.pem")).unwrap();
    let plan_with = |url_extra: &str, ca_file: &str| {
        let body = pg_plan(&pg, "in-place", "")
            .replace(&pg.url(), &format!("{}{url_extra}", pg.url()))
            .replace(
                "      password: {env: PG_ADMIN_PASSWORD}\n",
                &format!("      password: {{env: PG_ADMIN_PASSWORD}}\n{ca_file}"),
            );
        s.plan(&body)
    };
    // A CA that did not sign the server's certificate.
    crate::support::servers::make_certs(s.dir.path(), "other");
    let wrong = plan_with("", "      ca: {file: other-ca.pem}\n");
    let before = std::fs::read(&target).unwrap();
    let out = s.rotate(&wrong, None).code(220);
    assert!(
        out.stderr.contains("127.0.0.1") && out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&target).unwrap(), before, "nothing changed");
    assert!(
        !s.dir
            .path()
            .join(".db.enc.yaml.credseal-pending.yaml")
            .exists(),
        "not even a pending record"
    );
    assert!(pg.can_login("app_user", "old-app-password"));
    // No way to connect in clear: disable is refused by the server, prefer by credseal.
    let out = s.rotate(&plan_with("?sslmode=disable", ""), None).code(220);
    assert!(out.stderr.contains("127.0.0.1"), "{}", out.stderr);
    let out = s.rotate(&plan_with("?sslmode=prefer", ""), None);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("falls back to plaintext"),
        "{}",
        out.stderr
    );
    // The right CA: verify-full by default.
    let out = s
        .rotate(&plan_with("", "      ca: {file: ca.pem}\n"), None)
        .ok();
    assert_eq!(out.text(), "app-db: rotated (generation 1)\n");
    let (_, new) = current(&target, &keyring(&s.key));
    assert!(pg.can_login("app_user", &new));
    assert!(!pg.can_login("app_user", "old-app-password"));
    // sslrootcert in the URL works the same way.
    let out = s
        .rotate(
            &plan_with(
                &format!("?sslmode=verify-full&sslrootcert={}", ca.display()),
                "",
            ),
            None,
        )
        .ok();
    assert_eq!(out.text(), "app-db: rotated (generation 2)\n");
}

/// Redis that accepts only TLS (`--port 0 --tls-port`): rotation over `rediss://` with the
/// plan's CA verifies the server and works; a wrong CA changes nothing.
#[test]
fn redis_over_tls() {
    let r = Redis::start_tls(&[("app", "old-redis-password")]);
    let s = setup();
    let target = s.target("app", "old-redis-password");
    std::fs::copy(r.ca.as_ref().unwrap(), s.dir.path().join("ca.pem")).unwrap();
    crate::support::servers::make_certs(s.dir.path(), "other");
    let plan = |ca: &str| {
        s.plan(&redis_plan(&r, "dual", "").replace(
            "      password: {env: REDIS_ADMIN_PASSWORD}\n",
            &format!("      password: {{env: REDIS_ADMIN_PASSWORD}}\n      ca: {{file: {ca}}}\n"),
        ))
    };
    let before = std::fs::read(&target).unwrap();
    let out = s.rotate(&plan("other-ca.pem"), None).code(220);
    assert!(out.stderr.contains("127.0.0.1"), "{}", out.stderr);
    assert_eq!(std::fs::read(&target).unwrap(), before, "nothing changed");
    let out = s.rotate(&plan("ca.pem"), None).ok();
    assert_eq!(out.text(), "app-cache: rotated (generation 1)\n");
    let (_, new) = current(&target, &keyring(&s.key));
    assert!(r.can_login("app", &new));
    assert!(!r.can_login("app", "old-redis-password"));
}

/// A master, a replica and three Sentinels: the `default` user (also the replication and
/// Sentinel user) is rotated on every node, `masterauth` and Sentinel's `auth-pass` follow,
/// the link stays up, Sentinel still sees a healthy master, a client never fails to log in,
/// and a restart of every node keeps the new password.
#[test]
fn redis_replication_and_sentinel() {
    use crate::support::servers::{RedisSet, redis_cli};
    let mut set = RedisSet::start("old-set-password");
    let s = setup();
    let target = s.target("default", "old-set-password");
    let sentinels: Vec<String> = set
        .sentinels
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let plan = s.plan(&format!(
        "  - name: cache\n    engine: redis\n    strategy: dual\n    role: default\n    target:\n      file:\n        path: db.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n    admin:\n      url: redis://default@127.0.0.1:{}/0\n      password: {{target: true}}\n    topology:\n      kind: sentinel\n      masterName: mymaster\n      sentinels: [{}]\n",
        set.master,
        sentinels.join(", ")
    ));
    let master = set.master;
    let client = hammer(target.clone(), keyring(&s.key), move |_u, p| {
        redis_cli(master, Some(p), &["PING"]).trim() == "PONG"
    });
    let out = s.rotate(&plan, None).ok();
    let (attempts, failures) = client.finish();
    assert_eq!(failures, 0, "no failed login in {attempts}");
    assert!(
        out.stderr.contains("masterauth updated, CONFIG REWRITE"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("sentinel auth-pass updated").count(),
        3,
        "{}",
        out.stderr
    );
    let (_, new) = current(&target, &keyring(&s.key));
    for port in [set.master, set.replica] {
        assert!(set.can_login(port, &new), "new password on {port}");
        assert!(
            !set.can_login(port, "old-set-password"),
            "old password gone on {port}"
        );
    }
    assert!(
        redis_cli(set.replica, Some(&new), &["INFO", "replication"])
            .contains("master_link_status:up")
    );
    for sp in &set.sentinels {
        let master = redis_cli(*sp, None, &["SENTINEL", "MASTER", "mymaster"]);
        assert!(
            master.lines().any(|l| l.trim() == "master"),
            "sentinel {sp} flags: {master}"
        );
    }
    // Every node restarts with the new password (ACL SAVE, CONFIG REWRITE, Sentinel's rewrite).
    set.restart();
    set.wait_ready(&new);
    for port in [set.master, set.replica] {
        assert!(
            set.can_login(port, &new),
            "after restart, new password on {port}"
        );
        assert!(
            !set.can_login(port, "old-set-password"),
            "after restart, old password on {port}"
        );
    }
}

/// Dual with a grace: the run that commits leaves the old password valid (consumers that read
/// the file only when they start keep working until they are redeployed); a run before the
/// grace ends changes nothing; the first run after it retires the old password.
#[test]
fn redis_dual_with_a_grace_retires_the_old_password_on_a_later_run() {
    let r = Redis::start(&[("app", "old-redis-password")]);
    let s = setup();
    let target = s.target("app", "old-redis-password");
    let plan = s.plan(&redis_plan(&r, "dual", "    grace: 2s\n"));
    let pending = s.dir.path().join(".db.enc.yaml.credseal-pending.yaml");

    let out = s.rotate(&plan, None).ok();
    assert!(
        out.text()
            .starts_with("app-cache: rotated (generation 1); the old password stays valid until "),
        "{}",
        out.text()
    );
    let (_, new) = current(&target, &keyring(&s.key));
    assert!(r.can_login("app", &new));
    assert!(
        r.can_login("app", "old-redis-password"),
        "kept for the grace"
    );
    assert!(
        std::fs::read_to_string(&pending)
            .unwrap()
            .contains("retireAfter:"),
        "the deadline is durable"
    );

    let out = s.rotate(&plan, None).ok();
    assert!(out.text().contains("stays valid until"), "{}", out.text());
    assert!(r.can_login("app", "old-redis-password"));

    std::thread::sleep(std::time::Duration::from_millis(3100));
    let out = s.rotate(&plan, None).ok();
    assert_eq!(
        out.text(),
        "app-cache: old password retired (generation 1)\n"
    );
    assert!(r.can_login("app", &new));
    assert!(!r.can_login("app", "old-redis-password"));
    assert!(!pending.exists(), "no pending record");
    assert_eq!(current(&target, &keyring(&s.key)).1, new);
}

/// Replication given as a StatefulSet: credseal lists the set's pods from the API (not a pod
/// of another controller that matches the labels), asks each whether it is the master, and
/// changes every node; a set with a pod that is not ready is refused before anything changes.
#[test]
fn redis_replication_by_statefulset_pods() {
    use crate::support::kube_api::KubeApi;
    use crate::support::servers::RedisPods;
    use serde_json::json;

    let pods = RedisPods::start(3, "old-pods-password");
    let api = KubeApi::start();
    let s = setup();
    let kubeconfig = api.kubeconfig(s.dir.path(), "cache");
    let pod = |name: &str, owner: &str, ip: &str, ready: bool| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "cache", "labels": {"app": "redis"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                 "name": owner, "uid": "u", "controller": true}]},
               "spec": {"containers": [{"name": "redis", "image": "redis:7"}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    };
    api.put(
        "statefulsets",
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "redis", "namespace": "cache"},
               "spec": {"replicas": 3, "serviceName": "redis",
                        "selector": {"matchLabels": {"app": "redis"}},
                        "template": {"metadata": {"labels": {"app": "redis"}},
                                     "spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}}}),
    );
    for (i, host) in pods.hosts.iter().enumerate() {
        api.put("pods", pod(&format!("redis-{i}"), "redis", host, i != 2));
    }
    // Nothing listens there: were it taken for a node, the rotation would fail.
    api.put("pods", pod("canary-0", "redis-canary", "127.0.0.99", true));
    let target = s.target("default", "old-pods-password");
    let plan = s.plan(&format!(
        "  - name: cache\n    engine: redis\n    strategy: dual\n    role: default\n    target:\n      file:\n        path: db.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n    admin:\n      url: redis://default@{}:{}/0\n      password: {{target: true}}\n    topology:\n      kind: replication\n      statefulSet: {{namespace: cache, name: redis}}\n",
        pods.hosts[0], pods.port
    ));
    let rotate = || s.rotate_cmd(&plan).env("KUBECONFIG", &kubeconfig).run();

    let out = rotate();
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("statefulset cache/redis: pod redis-2 is not ready"),
        "{}",
        out.stderr
    );
    for i in 0..3 {
        assert!(pods.can_login(i, "old-pods-password"), "node {i} unchanged");
    }
    assert_eq!(
        current(&target, &keyring(&s.key)).1,
        "old-pods-password",
        "the target still holds the working password"
    );

    api.put("pods", pod("redis-2", "redis", &pods.hosts[2], true));
    let out = rotate().ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert_eq!(
        out.stderr.matches("masterauth updated").count(),
        2,
        "both replicas follow: {}",
        out.stderr
    );
    let (_, new) = current(&target, &keyring(&s.key));
    for i in 0..3 {
        assert!(pods.can_login(i, &new), "new password on node {i}");
        assert!(
            !pods.can_login(i, "old-pods-password"),
            "old password gone on node {i}"
        );
    }
    assert!(pods.links_up(&new), "replication links stay up");

    // The admin URL still names redis-0's address after a failover made redis-1 the master:
    // the pods' own roles decide, so the master still gets the change.
    pods.cli(1, Some(&new), &["REPLICAOF", "NO", "ONE"]);
    pods.cli(0, Some(&new), &["CONFIG", "SET", "masterauth", &new]);
    for i in [0, 2] {
        pods.cli(
            i,
            Some(&new),
            &["REPLICAOF", &pods.hosts[1], &pods.port.to_string()],
        );
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ![0, 2].iter().all(|i| {
        pods.cli(*i, Some(&new), &["INFO", "replication"])
            .contains("master_link_status:up")
    }) {
        assert!(std::time::Instant::now() < end, "failover did not settle");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = rotate().ok();
    assert_eq!(out.text(), "cache: rotated (generation 2)\n");
    let (_, newer) = current(&target, &keyring(&s.key));
    for i in 0..3 {
        assert!(pods.can_login(i, &newer), "newest password on node {i}");
        assert!(
            !pods.can_login(i, &new),
            "previous password gone on node {i}"
        );
    }
}

/// A Redis that requires client certificates: the plan's `clientCert`/`clientKey` are used.
#[test]
fn redis_with_client_certificates() {
    let r = Redis::start_mtls(&[("app", "old-redis-password")]);
    let s = setup();
    let target = s.target("app", "old-redis-password");
    for f in ["redis-ca.pem", "redis-client.crt", "redis-client.key"] {
        std::fs::copy(r.dir.path().join(f), s.dir.path().join(f)).unwrap();
    }
    let with = |extra: &str| {
        s.plan(&redis_plan(&r, "dual", "").replace(
            "      password: {env: REDIS_ADMIN_PASSWORD}\n",
            &format!("      password: {{env: REDIS_ADMIN_PASSWORD}}\n      ca: {{file: redis-ca.pem}}\n{extra}"),
        ))
    };
    // Without the certificate the server refuses the handshake; nothing changes.
    let out = s.rotate(&with(""), None).code(220);
    assert!(out.stderr.contains("127.0.0.1"), "{}", out.stderr);
    let out = s
        .rotate(&with("      clientCert: {file: redis-client.crt}\n      clientKey: {file: redis-client.key}\n"), None)
        .ok();
    assert_eq!(out.text(), "app-cache: rotated (generation 1)\n");
    let (_, new) = current(&target, &keyring(&s.key));
    assert_ne!(new, "old-redis-password");
}

/// The rotator's image is `FROM scratch` and its CronJob has a read-only root: no `/tmp`, no
/// TMPDIR, nothing writable but its mounts. A rotation must need nothing else.
#[test]
fn rotator_runs_in_an_empty_read_only_root() {
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    s.plan(&pg_plan(&pg, "in-place", ""));
    let keys = s.dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::copy(&s.key, keys.join("age.agekey")).unwrap();
    let out = crate::support::pod::Pod::credseal_under_test()
        .rw(s.dir.path(), "/work")
        .ro(&keys, "/etc/credseal/keys")
        .env("SOPS_AGE_KEY_FILE", "/etc/credseal/keys/age.agekey")
        .env("PG_ADMIN_PASSWORD", "admin-pw-for-tests")
        .cmd(["rotate", "--plan", "/work/plan.yaml"])
        .run()
        .ok();
    assert_eq!(out.text(), "app-db: rotated (generation 1)\n");
    let (_, new) = current(&target, &keyring(&s.key));
    assert!(pg.can_login("app_user", &new), "the new password logs in");
}

/// A file target is locked beside the file: a second run while the first is between verify
/// and commit exits 221 naming it, and changes nothing; the first's password logs in. Before
/// the lock, both exited 0 and the file could hold a password that did not log in.
#[test]
fn a_second_run_on_a_file_target_waits_its_turn() {
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let plan = s.plan(&pg_plan(&pg, "in-place", ""));
    let first = s
        .rotate_cmd(&plan)
        .env("FAILPOINTS", "rotate::after-verify=sleep(2000)")
        .spawn(None);
    let pending = s.dir.path().join(".db.enc.yaml.credseal-pending.yaml");
    crate::materialize::eventually("the first run staged", || pending.exists());
    let staged = std::fs::read(&pending).unwrap();
    let second = s.rotate(&plan, None).code(221);
    assert!(
        second
            .stderr
            .contains(".db.enc.yaml.credseal-lock: held by")
            && second.stderr.contains("/pid-"),
        "{}",
        second.stderr
    );
    assert_eq!(
        std::fs::read(&pending).unwrap(),
        staged,
        "the second run changed nothing"
    );
    let mut first = first;
    assert!(first.child.wait().unwrap().success());
    let (_, new) = current(&target, &keyring(&s.key));
    assert!(pg.can_login("app_user", &new));
    // Once the first is done, the next run may rotate again.
    s.rotate(&plan, None).ok();
    let (_, newer) = current(&target, &keyring(&s.key));
    assert_ne!(newer, new);
    assert!(pg.can_login("app_user", &newer));
}

/// A database that accepts connections and never answers fails the run after the plan's
/// timeouts, before anything was staged; before, the run waited forever (and with
/// concurrencyPolicy: Forbid blocked every later rotation).
#[test]
fn a_database_that_never_answers_fails_the_run_within_its_timeouts() {
    let hole = crate::support::servers::blackhole();
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let before = std::fs::read(&target).unwrap();
    for (engine, url) in [
        (
            "postgres",
            format!("postgresql://postgres@127.0.0.1:{hole}/postgres"),
        ),
        ("redis", format!("redis://default@127.0.0.1:{hole}/0")),
    ] {
        let plan = s.plan(&format!(
            "  - name: app\n    engine: {engine}\n    strategy: in-place\n    role: app_user\n    target:\n      file:\n        path: db.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n    admin:\n      url: {url}\n      password: {{env: PG_ADMIN_PASSWORD}}\n    timeouts: {{connect: 1s, request: 1s}}\n"
        ));
        let (code, stderr) =
            crate::support::run_bounded(s.rotate_cmd(&plan), std::time::Duration::from_secs(30));
        assert_eq!(code, Some(220), "{engine}: {stderr}");
        assert!(
            stderr.contains("within 1s") || stderr.contains("timed out"),
            "{engine}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "{engine}: nothing changed"
        );
        assert!(
            !s.dir
                .path()
                .join(".db.enc.yaml.credseal-pending.yaml")
                .exists(),
            "{engine}: nothing staged"
        );
    }
}

/// A credential on `engine` with its own target file `<name>.enc.yaml`.
fn credential(
    name: &str,
    engine: &str,
    strategy: &str,
    role: &str,
    url: &str,
    admin: &str,
) -> String {
    format!(
        "  - name: {name}\n    engine: {engine}\n    strategy: {strategy}\n    role: {role}\n    target:\n      file:\n        path: {name}.enc.yaml\n        key: '[\"stringData\"][\"password\"]'\n        usernameKey: '[\"stringData\"][\"username\"]'\n    admin:\n      url: {url}\n      password: {admin}\n"
    )
}

/// Several credentials on one PostgreSQL and one Redis: one admin session per server for the
/// whole run, reused by every credential and step; what remains is one login per credential
/// as the rotated user with its new password (the verification). Before, each PostgreSQL
/// credential opened 3 connections (4 with alternating) and each Redis one 4.
#[test]
fn one_admin_connection_per_server_for_the_whole_plan() {
    let pg = Postgres::start();
    let users: Vec<(String, String)> = (1..=3)
        .map(|i| (format!("app_{i}"), format!("old-pg-password-{i}")))
        .collect();
    for (u, p) in &users {
        pg.create_role(u, p);
    }
    pg.create_role("app_alt", "old-alt-password");
    let redis_users = [("u1", "old-r1"), ("u2", "old-r2"), ("u3", "old-r3")];
    let redis = Redis::start(&redis_users);
    let s = setup();
    let mut body = String::new();
    for (i, (u, p)) in users.iter().enumerate() {
        let name = format!("pg{i}");
        s.target_named(&format!("{name}.enc.yaml"), u, p);
        body.push_str(&credential(
            &name,
            "postgres",
            "in-place",
            u,
            &pg.url(),
            "{env: PG_ADMIN_PASSWORD}",
        ));
    }
    s.target_named("alt.enc.yaml", "app_alt", "old-alt-password");
    body.push_str(&credential(
        "alt",
        "postgres",
        "alternating",
        "app_alt",
        &pg.url(),
        "{env: PG_ADMIN_PASSWORD}",
    ));
    for (i, (u, p)) in redis_users.iter().enumerate() {
        let name = format!("r{i}");
        s.target_named(&format!("{name}.enc.yaml"), u, p);
        body.push_str(&credential(
            &name,
            "redis",
            "dual",
            u,
            &redis.url(),
            "{env: REDIS_ADMIN_PASSWORD}",
        ));
    }
    let plan = s.plan(&body);
    let (pg_before, admin_before) = (pg.connections(), pg.logins("postgres"));
    let (out, redis_opened) = redis.connections_during(|| s.rotate(&plan, None));
    let out = out.ok();
    assert_eq!(out.text().lines().count(), 7, "{}", out.text());
    let pg_opened = pg.connections() - pg_before;
    let admin_opened = pg.logins("postgres") - admin_before;
    assert_eq!(
        admin_opened, 1,
        "one PostgreSQL admin session for 4 credentials"
    );
    for (u, _) in &users {
        assert_eq!(pg.logins(u), 1, "{u}: verified with one login");
    }
    assert_eq!(
        pg.logins("app_alt_a"),
        1,
        "app_alt_a: verified with one login"
    );
    assert_eq!(pg_opened, 1 + 4, "admin + one verification per credential");
    assert_eq!(
        redis_opened,
        1 + 3,
        "admin + one verification per credential"
    );
    let ring = keyring(&s.key);
    for (i, (u, _)) in users.iter().enumerate() {
        let (_, new) = current(&s.dir.path().join(format!("pg{i}.enc.yaml")), &ring);
        assert!(pg.can_login(u, &new), "{u}: the new password logs in");
    }
    for (i, (u, old)) in redis_users.iter().enumerate() {
        let (_, new) = current(&s.dir.path().join(format!("r{i}.enc.yaml")), &ring);
        assert!(redis.can_login(u, &new), "{u}: the new password logs in");
        assert!(!redis.can_login(u, old), "{u}: the old one is retired");
    }
}

/// The preflight finds a missing role or ACL user before anything is staged: exit 220 naming
/// the credential and the role, no pending record, the target untouched. Before, the run
/// staged a new password and failed at apply, leaving a pending record behind.
#[test]
fn a_missing_role_is_refused_before_anything_is_staged() {
    let pg = Postgres::start();
    let redis = Redis::start(&[("app", "old-redis-password")]);
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let before = std::fs::read(&target).unwrap();
    let pending = s.dir.path().join(".db.enc.yaml.credseal-pending.yaml");
    let cases = [
        (
            pg_plan(&pg, "in-place", ""),
            "role \"app_user\" does not exist on 127.0.0.1:",
        ),
        (
            pg_plan(&pg, "alternating", ""),
            "role \"app_user\" does not exist on 127.0.0.1:",
        ),
        (
            redis_plan(&redis, "dual", "").replace("role: app\n", "role: nobody\n"),
            "ACL user \"nobody\" does not exist on 127.0.0.1:",
        ),
    ];
    for (body, want) in cases {
        let plan = s.plan(&body);
        let out = s.rotate(&plan, None).code(220);
        assert!(
            out.stderr.contains(want) && out.stderr.contains("nothing was changed"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("credential app-"), "{}", out.stderr);
        assert!(!pending.exists(), "nothing staged: {}", out.stderr);
        assert_eq!(std::fs::read(&target).unwrap(), before, "target untouched");
    }
    assert!(
        !pg.log().contains("ALTER ROLE"),
        "no password was changed on the server"
    );
    assert!(redis.can_login("app", "old-redis-password"));
}

/// Alternating creates `<role>_a`/`_b`, so a missing one is fine when the admin may create
/// roles, and refused up front when it may not.
#[test]
fn alternating_needs_an_admin_that_may_create_the_next_role() {
    let pg = Postgres::start();
    pg.create_role("app_user", "old-app-password");
    pg.create_role("weak_admin", "weak-admin-pw");
    let s = setup();
    let target = s.target("app_user", "old-app-password");
    let before = std::fs::read(&target).unwrap();
    let body = pg_plan(&pg, "alternating", "")
        .replace("postgresql://postgres@", "postgresql://weak_admin@");
    let plan = s.plan(&body);
    let out = s
        .rotate_cmd(&plan)
        .env("PG_ADMIN_PASSWORD", "weak-admin-pw")
        .run()
        .code(220);
    assert!(
        out.stderr.contains("role \"app_user_a\" does not exist")
            && out.stderr.contains("neither CREATEROLE nor superuser"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert!(
        !s.dir
            .path()
            .join(".db.enc.yaml.credseal-pending.yaml")
            .exists()
    );
}

/// A lookup the admin may not make is an error, never "the user is absent" (and never a
/// reason to go on): the ACL user check fails with the server's refusal, nothing staged.
#[test]
fn a_failed_role_lookup_is_an_error_not_absent() {
    let redis = Redis::start(&[("app", "old-redis-password"), ("limited", "limited-pw")]);
    crate::support::servers::redis_cli(
        redis.port,
        Some("redis-admin-pw"),
        &["ACL", "SETUSER", "limited", "-acl"],
    );
    let s = setup();
    let target = s.target("app", "old-redis-password");
    let before = std::fs::read(&target).unwrap();
    let body = redis_plan(&redis, "dual", "").replace("redis://default@", "redis://limited@");
    let plan = s.plan(&body);
    let out = s
        .rotate_cmd(&plan)
        .env("REDIS_ADMIN_PASSWORD", "limited-pw")
        .run()
        .code(220);
    assert!(
        out.stderr.contains("ACL GETUSER app on") && out.stderr.contains("NOPERM"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("does not exist"), "{}", out.stderr);
    assert_eq!(std::fs::read(&target).unwrap(), before);
    assert!(
        !s.dir
            .path()
            .join(".db.enc.yaml.credseal-pending.yaml")
            .exists()
    );
}

/// Retiring the old role of an alternating pair looks it up first; a lookup the admin may not
/// make stops the run with the server's refusal and keeps the pending record, and the audit
/// never claims an expiry that did not happen. The next run, once the lookup works, retires it.
#[test]
fn a_failed_role_lookup_at_retire_stops_the_run_and_claims_nothing() {
    let pg = Postgres::start();
    pg.psql("CREATE ROLE app_user NOLOGIN").unwrap();
    pg.create_role("app_user_a", "old-alt-password");
    pg.psql("GRANT app_user TO app_user_a").unwrap();
    pg.psql("CREATE ROLE rotator LOGIN CREATEROLE PASSWORD 'rotator-pw'")
        .unwrap();
    let s = setup();
    let target = s.target("app_user_a", "old-alt-password");
    let plan = s.plan(
        &pg_plan(&pg, "alternating", "").replace("postgresql://postgres@", "postgresql://rotator@"),
    );
    let pending = s.dir.path().join(".db.enc.yaml.credseal-pending.yaml");
    let run = |failpoint: Option<&str>| {
        let mut cmd = s.rotate_cmd(&plan).env("PG_ADMIN_PASSWORD", "rotator-pw");
        if let Some(fp) = failpoint {
            cmd = cmd.env("FAILPOINTS", format!("{fp}=panic"));
        }
        cmd.run()
    };
    let out = run(Some("rotate::after-roll"));
    assert_ne!(out.code, 0, "stopped after the roll: {}", out.stderr);
    assert!(pending.exists());
    assert_eq!(current(&target, &keyring(&s.key)).0, "app_user_b");

    pg.psql("REVOKE SELECT ON pg_catalog.pg_roles FROM PUBLIC")
        .unwrap();
    let out = run(None).code(220);
    assert!(
        out.stderr.contains("look up role \"app_user_a\"")
            && out.stderr.contains("permission denied"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("valid until"), "{}", out.stderr);
    assert!(!out.stderr.contains("no longer exists"), "{}", out.stderr);
    assert!(pending.exists(), "the rotation is not over");
    let expiry = "SELECT rolvaliduntil IS NULL FROM pg_authid WHERE rolname = 'app_user_a'";
    assert_eq!(pg.psql(expiry).unwrap().trim(), "t", "nothing expired");

    pg.psql("GRANT SELECT ON pg_catalog.pg_roles TO PUBLIC")
        .unwrap();
    let out = run(None).ok();
    assert!(
        out.stderr
            .contains("step=retire outcome=ok role app_user_a valid until"),
        "{}",
        out.stderr
    );
    assert!(!pending.exists());
    assert_eq!(pg.psql(expiry).unwrap().trim(), "f", "expired now");
}

/// `--log-format json`: every stderr line is one JSON object (RFC 3339 timestamp, level,
/// target), the audit steps carry their fields as JSON values (the commit's generation a
/// number), and no value is in any of them.
#[test]
fn audit_lines_as_json_for_a_log_pipeline() {
    let r = Redis::start(&[("app", "old-redis-password")]);
    let s = setup();
    let target = s.target("app", "old-redis-password");
    let plan = s.plan(&redis_plan(&r, "dual", "    rotateAfter: 1h\n"));
    let out = s
        .rotate_cmd(&plan)
        .args(["--log-format", "json"])
        .run()
        .ok();
    assert_eq!(
        out.text(),
        "app-cache: rotated (generation 1)\n",
        "stdout stays text"
    );
    let (_, new) = current(&target, &keyring(&s.key));
    out.never_shows(&new);
    out.never_shows("old-redis-password");
    let rfc3339 =
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$").unwrap();
    let mut steps = Vec::new();
    for line in out.stderr.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{}", out.stderr));
        let timestamp = event["timestamp"].as_str().unwrap();
        assert!(rfc3339.is_match(timestamp), "{line}");
        assert_eq!(event["target"], "credseal::audit", "{line}");
        assert_eq!(event["level"], "INFO", "{line}");
        assert_eq!(event["credential"], "app-cache", "{line}");
        assert_eq!(event["engine"], "redis", "{line}");
        assert_eq!(event["role"], "app", "{line}");
        let step = event["step"].as_str().unwrap().to_owned();
        let outcome = event["outcome"].as_str().unwrap().to_owned();
        match step.as_str() {
            "commit" => {
                assert_eq!(event["generation"], 1, "{line}");
                assert_eq!(outcome, "ok");
            }
            _ => assert!(event.get("generation").is_none(), "{line}"),
        }
        steps.push((step, outcome));
    }
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "stage", "persist", "apply", "verify", "commit", "roll", "retire"
        ],
        "{}",
        out.stderr
    );
    assert!(
        steps[6].1.starts_with("ok old password removed;"),
        "{steps:?}"
    );

    // The same through the environment; a value clap does not know is a usage error.
    let out = s
        .rotate_cmd(&plan)
        .env("CREDSEAL_LOG_FORMAT", "json")
        .run()
        .ok();
    assert_eq!(out.text(), "app-cache: not due\n");
    let event: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(
        (&event["step"], &event["outcome"]),
        (&"check".into(), &"not-due".into())
    );
    s.rotate_cmd(&plan)
        .env("CREDSEAL_LOG_FORMAT", "yaml")
        .run()
        .code(2);
}
