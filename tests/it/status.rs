//! `status`: a plan's credentials as they stand — fresh, after a rotation, mid-rotation with
//! another run holding the lock — for file targets (no cluster) and Secret targets (the
//! in-process API server), with real Redis rotations in between. It reads only.

use std::path::{Path, PathBuf};

use credseal::sops::tree::Timestamp;
use serde_json::{Value, json};

use crate::support::kube_api::KubeApi;
use crate::support::servers::Redis;
use crate::support::{Cmd, Out, b64, new_key, unb64, write};

const NS: &str = "platform-services";
const POLICY_SECS: i64 = 20 * 3600;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unix(v: &Value) -> i64 {
    Timestamp::parse_rfc3339(v.as_str().unwrap())
        .unwrap_or_else(|| panic!("not RFC 3339: {v}"))
        .unix()
}

fn json_of(out: &Out) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.text()))
}

/// The table's rows as columns split on runs of two or more spaces.
fn rows(out: &Out) -> Vec<Vec<String>> {
    let re = regex::Regex::new(r" {2,}").unwrap();
    out.text()
        .lines()
        .map(|l| re.split(l).map(str::to_owned).collect())
        .collect()
}

struct Files {
    dir: tempfile::TempDir,
    key: PathBuf,
    redis: Redis,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = new_key(dir.path(), "k");
        let plain = write(
            dir.path(),
            "plain.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n    name: cache-credentials\n    namespace: platform-services\ntype: Opaque\nstringData:\n    password: old-redis-password\n",
        );
        let out = Cmd::credseal()
            .args(["encrypt", "--age", &recipient])
            .arg(&plain)
            .run()
            .ok();
        std::fs::remove_file(plain).unwrap();
        write(dir.path(), "cache.enc.yaml", out.stdout);
        let redis = Redis::start(&[("app", "old-redis-password")]);
        Files { dir, key, redis }
    }

    /// The plan; `rotate_after` e.g. `"    rotateAfter: 20h\n"` or empty.
    fn plan(&self, name: &str, rotate_after: &str) -> PathBuf {
        write(
            self.dir.path(),
            name,
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: app-cache\n    engine: redis\n    strategy: in-place\n    role: app\n{rotate_after}    target:\n      file: {{path: cache.enc.yaml, key: '[\"stringData\"][\"password\"]'}}\n    admin:\n      url: {}\n      password: {{env: REDIS_ADMIN_PASSWORD}}\n",
                self.redis.url()
            ),
        )
    }

    fn cmd(&self, args: &[&str], plan: &Path) -> Cmd {
        Cmd::credseal()
            .cwd(self.dir.path())
            .key(&self.key)
            .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
            .args(args)
            .arg("--plan")
            .arg(plan)
    }

    fn password(&self) -> String {
        Cmd::credseal()
            .key(&self.key)
            .args(["decrypt", "--extract", "[\"stringData\"][\"password\"]"])
            .arg(self.dir.path().join("cache.enc.yaml"))
            .run()
            .ok()
            .text()
    }
}

#[test]
fn a_file_target_fresh_then_rotated_then_not_due() {
    let f = Files::new();
    let plan = f.plan("plan.yaml", "    rotateAfter: 20h\n");
    let out = f.cmd(&["status"], &plan).run().ok();
    assert_eq!(
        rows(&out),
        [
            vec![
                "NAME",
                "TARGET",
                "GENERATION",
                "LAST ROTATION",
                "NEXT DUE",
                "PENDING",
                "LOCK"
            ],
            vec![
                "app-cache",
                "file cache.enc.yaml",
                "0",
                "never",
                "now (never rotated)",
                "-",
                "free"
            ],
        ]
    );
    // Columns line up: every cell starts where its header does.
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    for header in ["TARGET", "GENERATION", "LAST ROTATION", "NEXT DUE", "LOCK"] {
        let at = lines[0].find(header).unwrap();
        assert_ne!(&lines[1][at..=at], " ", "{header} column aligned");
        assert_eq!(&lines[1][at - 2..at], "  ", "{header} column aligned");
    }

    let before = now();
    f.cmd(&["rotate"], &plan).run().ok();
    let after = now();
    let new = f.password();
    let out = f.cmd(&["status", "--format", "json"], &plan).run().ok();
    out.never_shows(&new);
    out.never_shows("old-redis-password");
    let v = json_of(&out);
    let c = &v["credentials"][0];
    let last = unix(&c["lastRotation"]);
    assert!((before..=after).contains(&last), "{c}");
    assert_eq!(
        unix(&c["nextDue"]),
        last + POLICY_SECS,
        "last rotation + rotateAfter"
    );
    assert_eq!(
        *c,
        json!({
            "name": "app-cache",
            "target": {"kind": "file", "path": "cache.enc.yaml"},
            "generation": 1,
            "lastRotation": c["lastRotation"],
            "rotateAfterSeconds": POLICY_SECS,
            "nextDue": c["nextDue"],
            "due": false,
            "pending": null,
            "lock": {"state": "free", "holder": null, "pid": null, "expires": null},
            "errors": []
        })
    );
    let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "name",
            "target",
            "generation",
            "lastRotation",
            "rotateAfterSeconds",
            "nextDue",
            "due",
            "pending",
            "lock",
            "errors"
        ],
        "field names and order are stable"
    );
    // What status says, rotate does: not due.
    assert_eq!(
        f.cmd(&["rotate"], &plan).run().ok().text(),
        "app-cache: not due\n"
    );
    let row = &rows(&f.cmd(&["status"], &plan).run().ok())[1];
    assert_eq!(row[2], "1");
    assert_eq!(unix(&json!(row[3])), last);
    assert_eq!(
        row[4],
        Timestamp::from_unix(last + POLICY_SECS).to_rfc3339()
    );

    // Without rotateAfter: due at every run.
    let every = f.plan("every.yaml", "");
    let c = &json_of(&f.cmd(&["status", "--format", "json"], &every).run().ok())["credentials"][0];
    assert_eq!((&c["nextDue"], &c["due"]), (&Value::Null, &json!(true)));
    assert_eq!(
        rows(&f.cmd(&["status"], &every).run().ok())[1][4],
        "every run"
    );
}

/// While a run is between verify and commit, status shows its pending phase and the run
/// holding the lock (its name and, from /proc/locks, its PID) without taking the lock or
/// changing anything: the run finishes, the next one is not blocked.
#[test]
fn a_file_target_mid_rotation_shows_the_phase_and_the_holder() {
    let f = Files::new();
    let plan = f.plan("plan.yaml", "");
    let first = f
        .cmd(&["rotate"], &plan)
        .env("FAILPOINTS", "rotate::after-verify=sleep(3000)")
        .spawn(None);
    let pid = first.child.id();
    let pending = f.dir.path().join(".cache.enc.yaml.credseal-pending.yaml");
    let lock = f.dir.path().join(".cache.enc.yaml.credseal-lock");
    crate::materialize::eventually("the first run staged", || pending.exists());
    let (pending_before, lock_before) = (
        std::fs::read(&pending).unwrap(),
        std::fs::read(&lock).unwrap(),
    );

    let out = f.cmd(&["status", "--format", "json"], &plan).run().ok();
    let c = &json_of(&out)["credentials"][0];
    assert_eq!(
        c["pending"],
        json!({"phase": "staged", "generation": 1, "retireAfter": null})
    );
    assert_eq!(c["lock"]["state"], "held");
    assert_eq!(c["lock"]["pid"], json!(pid), "{c}");
    let holder = c["lock"]["holder"].as_str().unwrap();
    assert!(holder.contains(&format!("/pid-{pid}/")), "{holder}");
    assert_eq!(c["generation"], 0);
    let row = &rows(&f.cmd(&["status"], &plan).run().ok())[1];
    assert_eq!(row[5], "staged (generation 1)");
    assert_eq!(row[6], format!("held by {holder} (pid {pid})"));
    assert_eq!(
        std::fs::read(&pending).unwrap(),
        pending_before,
        "unchanged"
    );
    assert_eq!(std::fs::read(&lock).unwrap(), lock_before, "unchanged");

    let mut first = first;
    assert!(
        first.child.wait().unwrap().success(),
        "the run was not disturbed"
    );
    let c = &json_of(&f.cmd(&["status", "--format", "json"], &plan).run().ok())["credentials"][0];
    assert_eq!(
        (&c["generation"], &c["pending"], &c["lock"]["state"]),
        (&json!(1), &Value::Null, &json!("free"))
    );
    assert!(f.redis.can_login("app", &f.password()));
}

struct Cluster {
    dir: tempfile::TempDir,
    api: KubeApi,
    redis: Redis,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let redis = Redis::start(&[("app", "old-redis-password")]);
        let api = KubeApi::start();
        let kubeconfig = api.kubeconfig(dir.path(), NS);
        api.put(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-credentials", "namespace": NS},
                   "data": {"password": b64("old-redis-password")}}),
        );
        Cluster {
            dir,
            api,
            redis,
            kubeconfig,
        }
    }

    fn plan(&self, name: &str, rotate_after: &str) -> PathBuf {
        write(
            self.dir.path(),
            name,
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: cache\n    engine: redis\n    strategy: in-place\n    role: app\n{rotate_after}    target:\n      secret: {{namespace: {NS}, name: redis-credentials, key: password}}\n    admin:\n      url: {}\n      password: {{env: REDIS_ADMIN_PASSWORD}}\n",
                self.redis.url()
            ),
        )
    }

    fn cmd(&self, args: &[&str], plan: &Path) -> Cmd {
        Cmd::credseal()
            .cwd(self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
            .args(args)
            .arg("--plan")
            .arg(plan)
    }

    fn status_json(&self, plan: &Path) -> Value {
        let out = self.cmd(&["status", "--format", "json"], plan).run().ok();
        out.never_shows(&self.password());
        json_of(&out)["credentials"][0].clone()
    }

    fn password(&self) -> String {
        unb64(&self.api.get("secrets", NS, "redis-credentials").unwrap()["data"]["password"])
    }
}

#[test]
fn a_secret_target_fresh_rotated_mid_rotation_and_after_a_crash() {
    let k = Cluster::new();
    let plan = k.plan("plan.yaml", "    rotateAfter: 20h\n");
    let c = k.status_json(&plan);
    assert_eq!(
        c,
        json!({
            "name": "cache",
            "target": {"kind": "secret", "namespace": NS, "name": "redis-credentials"},
            "generation": 0,
            "lastRotation": null,
            "rotateAfterSeconds": POLICY_SECS,
            "nextDue": null,
            "due": true,
            "pending": null,
            "lock": {"state": "free", "holder": null, "pid": null, "expires": null},
            "errors": []
        })
    );

    let before = now();
    k.cmd(&["rotate"], &plan).run().ok();
    let after = now();
    let c = k.status_json(&plan);
    let last = unix(&c["lastRotation"]);
    assert!((before..=after).contains(&last), "{c}");
    assert_eq!(unix(&c["nextDue"]), last + POLICY_SECS);
    assert_eq!((&c["generation"], &c["due"]), (&json!(1), &json!(false)));

    // Another run (a plan without rotateAfter, so it is due) holds the Lease between verify
    // and commit: its phase and name are shown.
    let every = k.plan("every.yaml", "");
    let first = k
        .cmd(&["rotate"], &every)
        .env("FAILPOINTS", "rotate::after-verify=sleep(5000)")
        .spawn(None);
    let pid = first.child.id();
    crate::materialize::eventually("the other run staged", || {
        k.api
            .get("secrets", NS, "redis-credentials-credseal-pending")
            .is_some()
    });
    k.api.mark("status");
    let c = k.status_json(&plan);
    k.api.mark("status done");
    assert_eq!(
        c["pending"],
        json!({"phase": "staged", "generation": 2, "retireAfter": null})
    );
    assert_eq!(c["lock"]["state"], "held");
    let holder = c["lock"]["holder"].as_str().unwrap();
    assert!(holder.contains(&format!("/pid-{pid}/")), "{holder}");
    let expires = unix(&c["lock"]["expires"]);
    assert!(expires > now() && expires <= now() + 61, "{c}");
    let row = &rows(&k.cmd(&["status"], &plan).run().ok())[1];
    assert_eq!(row[5], "staged (generation 2)");
    assert_eq!(row[6], format!("held by {holder}"));
    // Reads only, and never a Secret's values: metadata of the two Secrets and the Lease.
    let reqs: Vec<_> = k
        .api
        .requests()
        .into_iter()
        .skip_while(|r| r.path != "/status")
        .skip(1)
        .take_while(|r| r.method != "MARK")
        .collect();
    let ours: Vec<_> = reqs
        .iter()
        .filter(|r| !r.path.contains("selfsubject"))
        .collect();
    assert!(!ours.is_empty());
    for r in &ours {
        if r.method != "GET" {
            // The other run's own writes (lease renewal) share the token; status makes none.
            assert!(r.path.contains("/leases/"), "{} {}", r.method, r.path);
            continue;
        }
        if r.path.contains("/secrets/") {
            assert!(
                r.accept.contains("as=PartialObjectMetadata"),
                "{} {}",
                r.path,
                r.accept
            );
        }
    }
    let mut first = first;
    assert!(
        first.child.wait().unwrap().success(),
        "the run was not disturbed"
    );
    let c = k.status_json(&plan);
    assert_eq!(
        (&c["generation"], &c["pending"], &c["lock"]["state"]),
        (&json!(2), &Value::Null, &json!("free"))
    );

    // A run that died holding the Lease: shown as expired once it lapsed.
    let lapsed = Timestamp::from_unix(now() - 120).to_rfc3339();
    k.api.put(
        "leases",
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "redis-credentials-credseal-rotation", "namespace": NS},
               "spec": {"holderIdentity": "rotator-x/pid-7/dead", "leaseDurationSeconds": 60,
                        "acquireTime": lapsed, "renewTime": lapsed}}),
    );
    let c = k.status_json(&plan);
    assert_eq!(c["lock"]["state"], "expired");
    assert_eq!(c["lock"]["holder"], "rotator-x/pid-7/dead");
    assert_eq!(
        rows(&k.cmd(&["status"], &plan).run().ok())[1][6],
        "expired (was rotator-x/pid-7/dead)"
    );
}

/// What cannot be read is shown as `?`, named on stderr, and sets the exit code from the
/// table: a missing Secret 210, a refused read 211. A pending record rotate would refuse
/// (not owned by the target) is reported too.
#[test]
fn what_cannot_be_read_sets_the_exit_code() {
    let k = Cluster::new();
    let plan = k.plan("plan.yaml", "");
    k.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
               "metadata": {"name": "redis-credentials-credseal-pending", "namespace": NS,
                            "annotations": {"credseal.dev/phase": "staged", "credseal.dev/generation": "1"}}}),
    );
    let out = k.cmd(&["status"], &plan).run().code(1);
    assert!(
        out.stderr.contains("not a credseal pending record")
            && out.stderr.contains("rotate refuses"),
        "{}",
        out.stderr
    );
    assert_eq!(rows(&out)[1][5], "?");

    let plan = write(
        k.dir.path(),
        "missing.yaml",
        std::fs::read_to_string(&plan)
            .unwrap()
            .replace("name: redis-credentials", "name: gone"),
    );
    let out = k
        .cmd(&["status", "--format", "json"], &plan)
        .run()
        .code(210);
    let c = &json_of(&out)["credentials"][0];
    assert_eq!((&c["generation"], &c["due"]), (&Value::Null, &Value::Null));
    assert_eq!(c["errors"], json!([format!("secret {NS}/gone: not found")]));
    assert!(
        out.stderr
            .contains("credential cache: secret platform-services/gone: not found"),
        "{}",
        out.stderr
    );

    k.api.deny("get", "secrets", NS);
    let out = k.cmd(&["status"], &plan).run().code(211);
    assert!(out.stderr.contains("forbidden"), "{}", out.stderr);
    assert_eq!(rows(&out)[1][2], "?");
}

/// status makes only `get` calls, all of which the shipped rotator Role grants: run as the
/// rotator's ServiceAccount over the base plan, it reads every credential.
#[test]
fn the_shipped_rotator_role_is_enough_and_print_role_lists_only_reads() {
    let k = Cluster::new();
    k.api.load(&crate::manifests::render("manifests/base"));
    k.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "postgres-credentials", "namespace": NS},
               "data": {"username": b64("app_user"), "password": b64("pg")}}),
    );
    let sa = k.api.service_account(NS, "credseal-rotator");
    let token = std::fs::read_to_string(sa.path().join("token")).unwrap();
    let kubeconfig = write(
        k.dir.path(),
        "sa-kubeconfig",
        std::fs::read_to_string(&k.kubeconfig)
            .unwrap()
            .replace("token: test-token", &format!("token: {token}")),
    );
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/rotation-plan.yaml");
    let out = Cmd::credseal()
        .env("KUBECONFIG", &kubeconfig)
        .args(["status", "--format", "json", "--plan"])
        .arg(&plan)
        .run()
        .ok();
    let v = json_of(&out);
    let names: Vec<&str> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app-db", "app-cache"]);
    let role = Cmd::credseal()
        .args(["status", "--print-role", "--plan"])
        .arg(&plan)
        .run()
        .ok();
    assert_eq!(
        role.text(),
        "# Role in namespace platform-services\nrules:\n  \
         - {apiGroups: [\"\"], resources: [\"secrets\"], resourceNames: [\"postgres-credentials\", \"postgres-credentials-credseal-pending\", \"redis-credentials\", \"redis-credentials-credseal-pending\"], verbs: [\"get\"]}\n  \
         - {apiGroups: [\"coordination.k8s.io\"], resources: [\"leases\"], resourceNames: [\"postgres-credentials-credseal-rotation\", \"redis-credentials-credseal-rotation\"], verbs: [\"get\"]}\n"
    );
}
