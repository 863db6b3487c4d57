//! Rollout health followed by watches, against the in-process API server: a read, then a
//! watch of the one object resumed from its resourceVersion, with no polling; transient
//! failures (a 5xx, a 429, a dropped connection, a watch that ends or expires) retried until
//! the rollout deadline, a refusal (403) not; and an `OnDelete` DaemonSet rolled as its real
//! controller reports it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::rotate_k8s::{NS, Setup, pod, setup, workload};
use crate::support::kube_api::{Fault, KubeApi, Request};

/// Reads of one object (not lists, not watches).
fn gets(api: &KubeApi, resource: &str, name: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/{resource}/{name}")))
        .count()
}

/// Watches of one object by name.
fn watches(api: &KubeApi, resource: &str, name: &str) -> Vec<Request> {
    api.requests()
        .into_iter()
        .filter(|r| {
            r.method == "GET"
                && r.path.ends_with(&format!("/{resource}"))
                && r.query.get("watch").is_some_and(|w| w == "true")
                && r.query.get("fieldSelector").map(String::as_str)
                    == Some(&format!("metadata.name={name}"))
        })
        .collect()
}

fn with_timeout(s: &Setup, timeout: &str) {
    let plan = std::fs::read_to_string(&s.plan).unwrap();
    std::fs::write(
        &s.plan,
        plan.replace("timeout: 3s", &format!("timeout: {timeout}")),
    )
    .unwrap();
}

/// Lets each stuck workload's controller finish `after` its `n`th watch request arrives (or
/// after 10 s without one, so a run of an old binary still ends).
fn unstick_after_watch(api: &KubeApi, workloads: &[(&str, &str)], n: usize, after: Duration) {
    for (resource, name) in workloads {
        let start = Instant::now();
        while watches(api, resource, name).len() < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(after);
        api.unstick(resource, NS, name);
    }
}

/// The rollout is seen through watch events: while a controller takes two seconds to
/// finish, credseal reads the workload once and then waits on its watch, instead of reading
/// it every 200 ms (about ten times here).
#[test]
fn a_rollout_is_followed_by_watching_not_polling() {
    let s = setup();
    with_timeout(&s, "20s");
    s.api.stick("deployments", NS, "backend");
    let started = Instant::now();
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            unstick_after_watch(
                &s.api,
                &[("deployments", "backend")],
                1,
                Duration::from_secs(2),
            )
        });
        s.rotate(&[])
    });
    let out = out.ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert!(started.elapsed() >= Duration::from_secs(2));
    for (resource, name) in [
        ("statefulsets", "redis"),
        ("deployments", "backend"),
        ("daemonsets", "agent"),
    ] {
        assert!(
            gets(&s.api, resource, name) <= 2,
            "{resource}/{name} read {} times: polled, not watched",
            gets(&s.api, resource, name)
        );
    }
    let w = watches(&s.api, "deployments", "backend");
    assert!(!w.is_empty(), "no watch of the deployment");
    for r in &w {
        assert!(
            r.query
                .get("resourceVersion")
                .is_some_and(|v| !v.is_empty() && v != "0"),
            "a watch resumes from the version read: {:?}",
            r.query
        );
        assert_eq!(
            r.query.get("allowWatchBookmarks").map(String::as_str),
            Some("true")
        );
        let t: u32 = r.query["timeoutSeconds"].parse().unwrap();
        assert!((1..=20).contains(&t), "{t}");
    }
    assert_eq!(gets(&s.api, "deployments", "backend"), 1);
}

/// Failures a real cluster has now and then, during the wait: a 500 on the first read, a
/// connection dropped under a watch or a read, a watch that ends early, a 429 with
/// Retry-After, a 500 on a watch. Each is retried and the rotation finishes; the change
/// made while no watch was open is not missed (the next watch resumes from the version seen).
#[test]
fn transient_failures_during_the_wait_are_retried() {
    let s = setup();
    with_timeout(&s, "20s");
    let all = [
        ("statefulsets", "redis"),
        ("deployments", "backend"),
        ("daemonsets", "agent"),
    ];
    for (resource, name) in all {
        s.api.stick(resource, NS, name);
    }
    s.api
        .fail_next("get", "statefulsets", 1, Fault::Status(500));
    s.api.fail_next("watch", "statefulsets", 1, Fault::Drop);
    s.api.fail_next("watch", "deployments", 1, Fault::EndWatch);
    s.api
        .fail_next("get", "daemonsets", 1, Fault::TooManyRequests(1));
    s.api
        .fail_next("watch", "daemonsets", 1, Fault::Status(500));
    let out = std::thread::scope(|scope| {
        scope.spawn(|| unstick_after_watch(&s.api, &all, 2, Duration::from_millis(100)));
        s.rotate(&[])
    });
    let out = out.ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    for (resource, name) in all {
        assert!(
            watches(&s.api, resource, name).len() >= 2,
            "{resource}/{name}: the failed watch was tried again"
        );
        assert_eq!(s.stamp(resource, name), "1");
    }
    assert!(
        gets(&s.api, "statefulsets", "redis") >= 2,
        "the 500 was retried"
    );
    let new = s.password();
    assert!(s.redis.can_login("app", &new));
    assert!(!s.redis.can_login("app", "old-redis-password"));
}

/// A watch whose resourceVersion the server compacted past (410 Gone) starts afresh: a watch
/// with no resourceVersion, which begins with the object as it is now (a list and a watch in
/// one call), not a watch from the object's own version, which may be as old.
#[test]
fn an_expired_watch_reads_the_object_afresh() {
    let s = setup();
    with_timeout(&s, "20s");
    s.api.stick("deployments", NS, "backend");
    s.api.fail_next("watch", "deployments", 1, Fault::Expired);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            unstick_after_watch(
                &s.api,
                &[("deployments", "backend")],
                2,
                Duration::from_millis(300),
            )
        });
        s.rotate(&[])
    });
    out.ok();
    assert_fresh_watch_after_410(&s.api);
}

fn assert_fresh_watch_after_410(api: &KubeApi) {
    assert_eq!(gets(api, "deployments", "backend"), 1);
    let w = watches(api, "deployments", "backend");
    let fresh = w
        .iter()
        .position(|r| r.query.get("resourceVersion").is_none_or(|v| v.is_empty()));
    assert!(
        fresh.is_some_and(|i| i > 0),
        "a fresh watch after the expired one: {w:?}"
    );
    assert!(
        w.len() <= 5,
        "no loop of expired watches: {} watches",
        w.len()
    );
}

/// The same after a real compaction: the watch open at the time ends (early, as a restarting
/// server ends it), and the next one, from the version read before, is answered 410. The
/// object itself has not changed since, so its own version is as old: a watch from it would
/// be answered 410 again and again.
#[test]
fn a_watch_after_compaction_reads_the_object_afresh() {
    let s = setup();
    with_timeout(&s, "20s");
    s.api.stick("deployments", NS, "backend");
    s.api.fail_next("watch", "deployments", 1, Fault::EndWatch);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            let start = Instant::now();
            while watches(&s.api, "deployments", "backend").is_empty()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Another client writes, then etcd compacts past the version credseal read.
            s.api.put(
                "configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": NS}}),
            );
            s.api.compact();
            unstick_after_watch(
                &s.api,
                &[("deployments", "backend")],
                3,
                Duration::from_millis(300),
            )
        });
        s.rotate(&[])
    });
    out.ok();
    assert_fresh_watch_after_410(&s.api);
}

/// A refusal is not something time fixes: a 403 on the watch stops the roll at once, naming
/// the verb; it is not retried until the deadline.
#[test]
fn a_forbidden_watch_is_not_retried() {
    let s = setup();
    with_timeout(&s, "30s");
    s.api.stick("deployments", NS, "backend");
    s.api.deny("watch", "deployments", NS);
    let started = Instant::now();
    // 211 as every 403 exits, whichever command meets it.
    let out = s.rotate(&[]).code(211);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(out.stderr.contains("cannot watch"), "{}", out.stderr);
    assert_eq!(watches(&s.api, "deployments", "backend").len(), 1);
}

fn agent_pod(name: &str, generation: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS,
                        "labels": {"app": "agent", "controller-revision-hash": format!("dsrev-{generation}"),
                                   "pod-template-generation": generation},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                             "uid": "uid-agent", "controller": true}]},
           "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}})
}

/// An `OnDelete` DaemonSet: its controller replaces a pod only when something deletes it
/// (kubectl's rollout status refuses to judge it), and counts `updatedNumberScheduled` by the
/// pods' template generation and hash. credseal deletes the outdated pods one at a time, each
/// once every pod is ready, and finishes when the pods and the status agree; a failed list of
/// the pods is retried.
#[test]
fn an_on_delete_daemonset_finishes_as_its_controller_reports() {
    let s = setup();
    with_timeout(&s, "10s");
    s.api.set_nodes(3);
    let projected = json!({"name": "creds", "projected": {"sources": [{"secret": {"name": "redis-credentials"}}]}});
    let mut template = pod(None, Some(projected));
    template["metadata"]["labels"] = json!({"app": "agent"});
    let mut ds = workload("DaemonSet", "agent", template);
    ds["spec"] = json!({"selector": {"matchLabels": {"app": "agent"}},
                        "updateStrategy": {"type": "OnDelete"},
                        "template": ds["spec"]["template"].clone()});
    s.api.put("daemonsets", ds);
    let old = ["agent-4xk2p", "agent-9qzt7", "agent-b7m1c"];
    for name in old {
        s.api.put("pods", agent_pod(name, "1"));
    }
    // Listing the pods fails once on the way: retried like the watch itself.
    s.api.fail_next("list", "pods", 1, Fault::Status(500));
    let out = s.rotate(&[]).ok();
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    assert_eq!(s.stamp("daemonsets", "agent"), "1");
    let deleted: Vec<String> = s
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(deleted, old, "each outdated pod once, one at a time");
    assert_eq!(
        s.api.violations(),
        Vec::<String>::new(),
        "never a pod deleted while another was not ready"
    );
    let set = s.api.get("daemonsets", NS, "agent").unwrap();
    assert_eq!(
        set["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "2"
    );
    let st = &set["status"];
    assert_eq!(st["updatedNumberScheduled"], 3, "{set}");
    assert_eq!(st["numberAvailable"], 3, "{set}");
    let pods = s.api.list("pods", NS);
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(
            p["metadata"]["labels"]["pod-template-generation"], "2",
            "{p}"
        );
    }
    assert!(gets(&s.api, "daemonsets", "agent") <= 2);
    let pod_lists = s
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/pods"))
        .count();
    assert!(pod_lists >= 2, "the failed list was tried again");
    let new = s.password();
    assert!(s.redis.can_login("app", &new));
    assert!(!s.redis.can_login("app", "old-redis-password"));
}
