//! Rotation with a Kubernetes Secret target and health-gated rollouts, through kube::Client
//! against the in-process API server (whose simulated controllers finish rollouts unless told
//! not to), with a real Redis server as the engine.

use serde_json::{Value, json};

use crate::support::kube_api::KubeApi;
use crate::support::servers::Redis;
use crate::support::{Cmd, Out, b64, unb64, write};

pub(crate) const NS: &str = "platform-services";
const STAMP: &str = "credseal.dev/rotated.redis-credentials";

pub(crate) fn pod(env_secret: Option<&str>, volume: Option<Value>) -> Value {
    let mut container = json!({"name": "app", "image": "app:1"});
    if let Some(s) = env_secret {
        container["env"] = json!([{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": s, "key": "password"}}}]);
    }
    let mut spec = json!({"containers": [container]});
    if let Some(v) = volume {
        spec["volumes"] = json!([v]);
    }
    json!({"metadata": {"labels": {"app": "x"}}, "spec": spec})
}

pub(crate) fn workload(kind: &str, name: &str, template: Value) -> Value {
    let spec = match kind {
        "CronJob" => {
            json!({"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": template}}})
        }
        _ => {
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "x"}}, "template": template})
        }
    };
    let api_version = if kind == "CronJob" {
        "batch/v1"
    } else {
        "apps/v1"
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) api: KubeApi,
    pub(crate) redis: Redis,
    pub(crate) plan: std::path::PathBuf,
    pub(crate) kubeconfig: std::path::PathBuf,
}

pub(crate) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&[("app", "old-redis-password")]);
    let api = KubeApi::start();
    let kubeconfig = api.kubeconfig(dir.path(), NS);
    api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-credentials", "namespace": NS},
               "data": {"username": b64("app"), "password": b64("old-redis-password")}}),
    );
    let secret_volume = json!({"name": "creds", "secret": {"secretName": "redis-credentials"}});
    let projected = json!({"name": "creds", "projected": {"sources": [{"secret": {"name": "redis-credentials"}}]}});
    api.put(
        "statefulsets",
        workload("StatefulSet", "redis", pod(Some("redis-credentials"), None)),
    );
    api.put(
        "deployments",
        workload(
            "Deployment",
            "backend",
            pod(Some("redis-credentials"), None),
        ),
    );
    api.put(
        "daemonsets",
        workload("DaemonSet", "agent", pod(None, Some(projected))),
    );
    api.put(
        "cronjobs",
        workload("CronJob", "backup", pod(None, Some(secret_volume))),
    );
    api.put(
        "deployments",
        workload("Deployment", "unrelated", pod(Some("other-secret"), None)),
    );
    let plan = write(
        dir.path(),
        "plan.yaml",
        format!(
            "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: cache\n    engine: redis\n    strategy: dual\n    role: app\n    target:\n      secret: {{namespace: {NS}, name: redis-credentials, key: password, usernameKey: username}}\n    admin:\n      url: {}\n      password: {{env: REDIS_ADMIN_PASSWORD}}\n    rollout:\n      timeout: 3s\n      also:\n        - {{kind: StatefulSet, namespace: {NS}, name: redis}}\n",
            redis.url()
        ),
    );
    Setup {
        dir,
        api,
        redis,
        plan,
        kubeconfig,
    }
}

impl Setup {
    pub(crate) fn rotate(&self, extra: &[&str]) -> Out {
        Cmd::credseal()
            .cwd(self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
            .args(["rotate", "--plan"])
            .arg(&self.plan)
            .args(extra)
            .run()
    }

    pub(crate) fn password(&self) -> String {
        unb64(&self.api.get("secrets", NS, "redis-credentials").unwrap()["data"]["password"])
    }

    pub(crate) fn stamp(&self, resource: &str, name: &str) -> Value {
        let o = self.api.get(resource, NS, name).unwrap();
        let t = if resource == "cronjobs" {
            &o["spec"]["jobTemplate"]["spec"]["template"]
        } else {
            &o["spec"]["template"]
        };
        t["metadata"]["annotations"][STAMP].clone()
    }

    fn patched(&self) -> Vec<String> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && !r.path.contains("/secrets/"))
            .map(|r| {
                r.path
                    .rsplit('/')
                    .take(2)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }
}

#[test]
fn rotates_the_secret_and_rolls_database_tier_then_consumers() {
    let s = setup();
    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    let new = s.password();
    assert_ne!(new, "old-redis-password");
    out.never_shows(&new);
    assert!(s.redis.can_login("app", &new));
    assert!(
        !s.redis.can_login("app", "old-redis-password"),
        "retired after the roll"
    );
    let secret = s.api.get("secrets", NS, "redis-credentials").unwrap();
    assert_eq!(
        secret["metadata"]["annotations"]["credseal.dev/generation"],
        "1"
    );
    assert!(
        s.api
            .get("secrets", NS, "redis-credentials-credseal-pending")
            .is_none(),
        "pending cleared"
    );
    // The database tier first, then the consumers found by reference, each stamped once.
    assert_eq!(
        s.patched(),
        [
            "statefulsets/redis",
            "deployments/backend",
            "daemonsets/agent",
            "cronjobs/backup"
        ]
    );
    for (r, n) in [
        ("statefulsets", "redis"),
        ("deployments", "backend"),
        ("daemonsets", "agent"),
        ("cronjobs", "backup"),
    ] {
        assert_eq!(s.stamp(r, n), "1", "{r}/{n}");
    }
    assert!(
        s.stamp("deployments", "unrelated").is_null(),
        "unrelated workloads are left alone"
    );
    // Commits are updates guarded by resourceVersion; events were recorded.
    let reqs = s.api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.method == "PUT" && r.path.ends_with("/secrets/redis-credentials"))
    );
    assert!(
        reqs.iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/events"))
    );
    assert!(
        out.stderr.contains("step=commit outcome=ok generation=1"),
        "{}",
        out.stderr
    );
    // Events name their object by uid and carry timestamps: `kubectl describe` selects them by
    // involvedObject uid and sorts them by lastTimestamp.
    let described = Cmd::tool("kubectl")
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["describe", "cronjob", "backup"])
        .run()
        .ok()
        .text();
    let events = described.split("\nEvents:").nth(1).unwrap_or("");
    assert!(
        events.contains("CredentialRolled") && events.contains("credseal"),
        "{described}"
    );
    // kubectl describe has no Events section for a Secret: check the Event itself.
    let uid = secret["metadata"]["uid"].as_str().unwrap().to_owned();
    let event = s
        .api
        .list("events", NS)
        .into_iter()
        .find(|e| e["reason"] == "CredentialRotated")
        .expect("an Event on the Secret");
    assert_eq!(event["involvedObject"]["uid"], uid.as_str(), "{event}");
    assert!(
        event["lastTimestamp"].is_string() && event["firstTimestamp"].is_string(),
        "{event}"
    );
}

#[test]
fn a_stuck_rollout_stops_the_line_and_a_rerun_finishes() {
    let s = setup();
    s.api.stick("deployments", NS, "backend");
    let out = s.rotate(&[]).code(220);
    assert!(
        out.stderr.contains("Deployment/platform-services/backend"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("StatefulSet/platform-services/redis"),
        "names what was rolled: {}",
        out.stderr
    );
    assert_eq!(
        s.patched(),
        ["statefulsets/redis", "deployments/backend"],
        "nothing further touched"
    );
    let new = s.password();
    // dual: both passwords still work, so the consumers not yet restarted keep working.
    assert!(s.redis.can_login("app", &new));
    assert!(s.redis.can_login("app", "old-redis-password"));
    let pending = s
        .api
        .get("secrets", NS, "redis-credentials-credseal-pending")
        .unwrap();
    assert_eq!(
        pending["metadata"]["annotations"]["credseal.dev/phase"],
        "committed"
    );
    assert_eq!(
        pending["metadata"]["ownerReferences"][0]["name"],
        "redis-credentials"
    );
    // The workload recovers; the rerun resumes the roll and retires the old password.
    s.api.unstick("deployments", NS, "backend");
    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert_eq!(
        s.password(),
        new,
        "the same rotation finished, no new password"
    );
    assert!(!s.redis.can_login("app", "old-redis-password"));
    assert_eq!(s.stamp("cronjobs", "backup"), "1");
}

/// Two runs at once (the CronJob and a `kubectl create job --from`, or a laptop): the second
/// finds the first's Lease, says who holds it, exits 221 and changes nothing; the first
/// finishes, and the password it committed logs in.
#[test]
fn a_second_run_is_refused_while_the_first_holds_the_lease() {
    let s = setup();
    let first = Cmd::credseal()
        .cwd(s.dir.path())
        .env("KUBECONFIG", &s.kubeconfig)
        .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
        .env("FAILPOINTS", "rotate::after-verify=sleep(2000)")
        .args(["rotate", "--plan"])
        .arg(&s.plan)
        .spawn(None);
    crate::materialize::eventually("the first run holds the lease", || {
        s.api
            .get("leases", NS, "redis-credentials-credseal-rotation")
            .is_some()
            && s.api
                .get("secrets", NS, "redis-credentials-credseal-pending")
                .is_some()
    });
    let pending_before = s
        .api
        .get("secrets", NS, "redis-credentials-credseal-pending");
    let second = s.rotate(&[]).code(221);
    assert!(
        second
            .stderr
            .contains("redis-credentials-credseal-rotation is held by")
            && second.stderr.contains("/pid-"),
        "names the holder: {}",
        second.stderr
    );
    assert_eq!(
        s.api
            .get("secrets", NS, "redis-credentials-credseal-pending"),
        pending_before,
        "the second run changed nothing"
    );
    let mut first = first;
    let status = first.child.wait().unwrap();
    assert!(status.success(), "the first run finished");
    let password = s.password();
    assert!(s.redis.can_login("app", &password));
    assert!(
        s.api
            .get("leases", NS, "redis-credentials-credseal-rotation")
            .is_none(),
        "released at the end"
    );
}

/// Many pairs started together: whoever loses the race for the Lease exits 221; no pair ever
/// leaves the Secret with a password that does not log in.
#[test]
fn concurrent_pairs_never_lose_the_password() {
    let s = setup();
    let mut refused = 0;
    for pair in 0..25 {
        let spawn = || {
            Cmd::credseal()
                .cwd(s.dir.path())
                .env("KUBECONFIG", &s.kubeconfig)
                .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
                .env("FAILPOINTS", "rotate::after-verify=sleep(100)")
                .args(["rotate", "--plan"])
                .arg(&s.plan)
                .spawn(None)
        };
        let (mut a, mut b) = (spawn(), spawn());
        let codes = [
            a.child.wait().unwrap().code(),
            b.child.wait().unwrap().code(),
        ];
        assert!(
            codes.iter().all(|c| matches!(c, Some(0) | Some(221))) && codes.contains(&Some(0)),
            "pair {pair}: {codes:?}"
        );
        refused += codes.iter().filter(|c| **c == Some(221)).count();
        let password = s.password();
        assert!(
            s.redis.can_login("app", &password),
            "pair {pair}: the Secret's password logs in"
        );
        assert!(
            s.api
                .get("secrets", NS, "redis-credentials-credseal-pending")
                .is_none(),
            "pair {pair}: nothing left pending"
        );
    }
    assert!(
        refused > 0,
        "the race was run: some second runs were refused"
    );
}

/// The pending record is created create-only: one that appears between our read and our
/// create (written outside the lock) is never overwritten, and nothing else changes.
#[test]
fn a_pending_record_this_run_did_not_write_is_never_overwritten() {
    let s = setup();
    s.api.race_next_create(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "redis-credentials-credseal-pending", "namespace": NS,
                            "annotations": {"credseal.dev/credential": "cache", "credseal.dev/phase": "staged",
                                            "credseal.dev/generation": "1"}},
               "stringData": {"password": "someone-elses-password"}}),
    );
    let out = s.rotate(&[]).code(220);
    assert!(out.stderr.contains("did not write"), "{}", out.stderr);
    let pending = s
        .api
        .get("secrets", NS, "redis-credentials-credseal-pending")
        .unwrap();
    assert_eq!(
        unb64(&pending["data"]["password"]),
        "someone-elses-password"
    );
    assert_eq!(s.password(), "old-redis-password");
    assert!(s.redis.can_login("app", "old-redis-password"));
}

/// Whatever already holds the pending record's name must be credseal's: a service-account
/// token planted there (to have the rotator write into it, or read it back) is refused, and
/// nothing changes.
#[test]
fn a_foreign_secret_under_the_pending_name_is_refused() {
    let s = setup();
    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
               "metadata": {"name": "redis-credentials-credseal-pending", "namespace": NS,
                            "annotations": {"kubernetes.io/service-account.name": "deployer"}}}),
    );
    let out = s.rotate(&[]).code(220);
    assert!(
        out.stderr.contains("not a credseal pending record")
            && out.stderr.contains("kubernetes.io/service-account-token"),
        "{}",
        out.stderr
    );
    assert_eq!(s.password(), "old-redis-password");
    let planted = s
        .api
        .get("secrets", NS, "redis-credentials-credseal-pending")
        .unwrap();
    assert!(
        planted["data"].is_null(),
        "nothing written into it: {planted}"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let s = setup();
    let out = s.rotate(&["--dry-run"]).ok();
    assert_eq!(out.text(), "cache: would rotate (dry run)\n");
    let writes: Vec<_> = s
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(s.password(), "old-redis-password");
    assert!(s.redis.can_login("app", "old-redis-password"));
}

/// A crash right after each step with a Secret target, then a rerun: the Secret's password logs
/// in, the companion pending Secret is gone, and a further rerun changes nothing.
#[test]
fn crash_after_every_step_then_rerun() {
    for step in ["stage", "apply", "verify", "commit", "roll"] {
        let s = setup();
        let plan = std::fs::read_to_string(&s.plan).unwrap().replace(
            "    rollout:\n",
            "    rotateAfter: 1h\n    lockDuration: 1s\n    rollout:\n",
        );
        std::fs::write(&s.plan, plan).unwrap();
        let out = Cmd::credseal()
            .cwd(s.dir.path())
            .env("KUBECONFIG", &s.kubeconfig)
            .env("REDIS_ADMIN_PASSWORD", "redis-admin-pw")
            .env("FAILPOINTS", format!("rotate::after-{step}=panic"))
            .args(["rotate", "--plan"])
            .arg(&s.plan)
            .run();
        assert_ne!(out.code, 0, "{step}: stopped by the failpoint");
        assert!(
            s.api
                .get("secrets", NS, "redis-credentials-credseal-pending")
                .is_some(),
            "{step}: pending kept"
        );
        // The crashed run's lock expires after lockDuration; the rerun waits for it.
        let out = s.rotate(&["--wait-for-lock", "30"]).ok();
        assert_eq!(out.text(), "cache: rotated (generation 1)\n", "{step}");
        let password = s.password();
        assert!(
            s.redis.can_login("app", &password),
            "{step}: the Secret's password logs in"
        );
        assert!(
            !s.redis.can_login("app", "old-redis-password"),
            "{step}: old one retired"
        );
        assert!(
            s.api
                .get("secrets", NS, "redis-credentials-credseal-pending")
                .is_none(),
            "{step}"
        );
        let before = s.api.get("secrets", NS, "redis-credentials").unwrap();
        assert_eq!(s.rotate(&[]).ok().text(), "cache: not due\n", "{step}");
        assert_eq!(
            s.api.get("secrets", NS, "redis-credentials").unwrap(),
            before,
            "{step}: nothing changed"
        );
    }
}

#[test]
fn an_on_delete_statefulset_has_its_pods_deleted_highest_ordinal_first() {
    let s = setup();
    let mut set = workload("StatefulSet", "redis", pod(Some("redis-credentials"), None));
    set["spec"]["replicas"] = json!(11);
    set["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    s.api.put("statefulsets", set);
    for i in 0..11 {
        s.api.put(
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("redis-{i}"), "namespace": NS,
                                "labels": {"app": "x", "controller-revision-hash": "rev-1"}},
                   "spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}),
        );
    }
    // A pod of another workload matches no selector of the set and is left alone.
    s.api.put(
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "other-0", "namespace": NS, "labels": {"app": "other"}},
               "spec": {"containers": [{"name": "c", "image": "c:1"}]}}),
    );
    let plan = std::fs::read_to_string(&s.plan).unwrap();
    std::fs::write(&s.plan, plan.replace("timeout: 3s", "timeout: 20s")).unwrap();

    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert_eq!(s.stamp("statefulsets", "redis"), "1");
    let deleted: Vec<String> = s
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..11).rev().map(|i| format!("redis-{i}")).collect();
    assert_eq!(deleted, want, "one at a time, by ordinal, never twice");
    // The real controller never advances currentRevision for OnDelete: the pods decided.
    let set = s.api.get("statefulsets", NS, "redis").unwrap();
    assert_ne!(
        set["status"]["currentRevision"],
        set["status"]["updateRevision"]
    );
    assert_eq!(
        s.api.violations(),
        Vec::<String>::new(),
        "never a pod deleted while another was not ready"
    );
    assert!(s.api.get("pods", NS, "other-0").is_some());
    let new = s.password();
    assert!(s.redis.can_login("app", &new));
    assert!(!s.redis.can_login("app", "old-redis-password"));
}

/// A partitioned StatefulSet moves only the pods at or above its partition, and its
/// currentRevision stays: the rollout is done when those are updated and every pod is ready,
/// as kubectl's rollout status says.
#[test]
fn a_partitioned_statefulset_is_done_when_its_partition_is_updated() {
    let s = setup();
    let mut set = workload("StatefulSet", "redis", pod(Some("redis-credentials"), None));
    set["spec"]["replicas"] = json!(3);
    set["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    s.api.put("statefulsets", set);
    let plan = std::fs::read_to_string(&s.plan).unwrap();
    std::fs::write(&s.plan, plan.replace("timeout: 3s", "timeout: 10s")).unwrap();
    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    let set = s.api.get("statefulsets", NS, "redis").unwrap();
    assert_eq!(set["status"]["updatedReplicas"], 1, "{set}");
    assert_ne!(
        set["status"]["currentRevision"],
        set["status"]["updateRevision"]
    );
}

/// Consumers are found in pages (the list's memory does not grow with the namespace), also
/// past hundreds of unrelated workloads and across a continue token the server expired
/// mid-list (410 Gone restarts the list).
#[test]
fn consumers_are_listed_in_pages_and_an_expired_list_restarts() {
    let s = setup();
    for i in 0..600 {
        s.api.put(
            "deployments",
            workload("Deployment", &format!("unrelated-{i:03}"), pod(None, None)),
        );
    }
    s.api.expire_next_continue_token();
    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert_eq!(
        s.stamp("deployments", "backend"),
        "1",
        "the consumer after the unrelated ones"
    );
    assert!(s.stamp("deployments", "unrelated-000").is_null());
    let lists: Vec<_> = s
        .api
        .requests()
        .into_iter()
        .filter(|r| {
            // A watch of one deployment (the rollout) is no list.
            r.method == "GET" && r.path.ends_with("/deployments") && !r.query.contains_key("watch")
        })
        .collect();
    assert!(
        lists.iter().all(|r| r.query.contains_key("limit")),
        "every list is paged: {lists:?}"
    );
    let fresh = lists
        .iter()
        .filter(|r| !r.query.contains_key("continue"))
        .count();
    // Two discoveries (the permission preflight and the roll), the first started again.
    assert_eq!(fresh, 3, "the expired list was started again");
}

#[test]
fn the_admin_ca_can_come_from_a_secret() {
    let s = setup();
    let redis = Redis::start_tls(&[("app", "old-redis-password")]);
    let pem = std::fs::read_to_string(redis.ca.as_ref().unwrap()).unwrap();
    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-ca", "namespace": NS},
               "data": {"ca.crt": b64(&pem)}}),
    );
    let plan = std::fs::read_to_string(&s.plan)
        .unwrap()
        .replace(&s.redis.url(), &redis.url())
        .replace(
            "      password: {env: REDIS_ADMIN_PASSWORD}\n",
            &format!(
                "      password: {{env: REDIS_ADMIN_PASSWORD}}\n      ca: {{secret: {{namespace: {NS}, name: redis-ca, key: ca.crt}}}}\n"
            ),
        );
    assert!(plan.contains("rediss://") && plan.contains("name: redis-ca"));
    std::fs::write(&s.plan, &plan).unwrap();

    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert!(redis.can_login("app", &s.password()));
    assert!(!redis.can_login("app", "old-redis-password"));

    // A key the Secret does not have is named, and nothing changes.
    std::fs::write(&s.plan, plan.replace("key: ca.crt", "key: tls.crt")).unwrap();
    let before = s.password();
    let out = s.rotate(&[]).code(220);
    assert!(
        out.stderr
            .contains(&format!("secret {NS}/redis-ca has no key tls.crt")),
        "{}",
        out.stderr
    );
    assert_eq!(s.password(), before);
}

/// Dual with a grace and a Secret target: the deadline lives on the pending Secret, and the
/// first run after it retires the old password and removes the record.
#[test]
fn a_grace_deadline_is_kept_on_the_pending_secret() {
    let s = setup();
    let plan = std::fs::read_to_string(&s.plan)
        .unwrap()
        .replace("    rollout:\n", "    grace: 1h\n    rollout:\n");
    std::fs::write(&s.plan, plan).unwrap();
    let pending = "redis-credentials-credseal-pending";

    let out = s.rotate(&[]).ok();
    assert!(out.text().contains("stays valid until"), "{}", out.text());
    let new = s.password();
    assert!(s.redis.can_login("app", &new));
    assert!(s.redis.can_login("app", "old-redis-password"));
    let mut record = s.api.get("secrets", NS, pending).unwrap();
    let deadline = record["metadata"]["annotations"]["credseal.dev/retire-after"].clone();
    assert!(deadline.is_string(), "{record}");

    // An hour later.
    record["metadata"]["annotations"]["credseal.dev/retire-after"] = json!("2001-01-01T00:00:00Z");
    s.api.put("secrets", record);
    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: old password retired (generation 1)\n");
    assert!(s.redis.can_login("app", &new));
    assert!(!s.redis.can_login("app", "old-redis-password"));
    assert!(s.api.get("secrets", NS, pending).is_none());
    assert_eq!(s.password(), new);
}
