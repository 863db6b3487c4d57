//! The controllers behind the fake API, with the behaviour of the real ones that our code has
//! to live with: status settles some time after a change (observedGeneration lags, a deleted
//! pod comes back not ready and readyReplicas drops), a partitioned StatefulSet updates only
//! the pods at or above its partition and keeps its currentRevision, and an `OnDelete`
//! StatefulSet never advances `status.currentRevision` (kubernetes#73492, #106055): only the
//! pods' `controller-revision-hash` labels and readiness say a rollout is done.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{State, settle};

/// How long a controller takes to observe a change and write status.
const STATUS_LAG: Duration = Duration::from_millis(250);
/// How long a recreated pod takes to become ready.
const POD_START: Duration = Duration::from_millis(400);

pub(super) enum Event {
    /// A workload's controller observed its new template.
    Observed {
        resource: String,
        ns: String,
        name: String,
    },
    /// A StatefulSet's controller recounts its pods into status.
    Recount {
        ns: String,
        name: String,
    },
    PodReady {
        ns: String,
        name: String,
    },
}

fn key(resource: &str, ns: &str, name: &str) -> (String, String, String) {
    (resource.to_owned(), ns.to_owned(), name.to_owned())
}

fn bump(st: &mut State, obj: &mut Value) {
    st.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
}

/// Applies every event that is due.
pub(super) fn tick(st: &mut State) {
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.pending)
        .into_iter()
        .partition(|(at, _)| *at <= now);
    st.pending = later;
    for (_, event) in due {
        match event {
            Event::Observed { resource, ns, name } => observed(st, &resource, &ns, &name),
            Event::Recount { ns, name } => recount(st, &ns, &name),
            Event::PodReady { ns, name } => {
                if let Some(mut pod) = st.objects.get(&key("pods", &ns, &name)).cloned() {
                    pod["status"] = running();
                    bump(st, &mut pod);
                    st.objects.insert(key("pods", &ns, &name), pod);
                }
                if let Some(set) = owner(st, &ns, &name) {
                    recount(st, &ns, &set);
                }
            }
        }
    }
}

pub(super) fn running() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn is_on_delete(set: &Value) -> bool {
    set["spec"]["updateStrategy"]["type"] == "OnDelete"
}

/// A workload's template changed (its generation was bumped): its controller observes it a
/// little later, unless the test made it stuck.
pub(super) fn template_changed(st: &mut State, resource: &str, ns: &str, name: &str) {
    if st.stuck.contains(&key(resource, ns, name)) {
        return;
    }
    st.pending.push((
        Instant::now() + STATUS_LAG,
        Event::Observed {
            resource: resource.to_owned(),
            ns: ns.to_owned(),
            name: name.to_owned(),
        },
    ));
}

fn observed(st: &mut State, resource: &str, ns: &str, name: &str) {
    let Some(mut obj) = st.objects.get(&key(resource, ns, name)).cloned() else {
        return;
    };
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    if resource == "statefulsets" {
        let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        let rev = format!("rev-{generation}");
        obj["status"]["observedGeneration"] = json!(generation);
        obj["status"]["updateRevision"] = json!(rev);
        if is_on_delete(&obj) {
            // The controller waits for pods to be deleted; currentRevision stays as it was.
            obj["status"]["updatedReplicas"] = json!(0);
        } else {
            let partition = obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
                .as_i64()
                .unwrap_or(0);
            obj["status"]["replicas"] = json!(replicas);
            obj["status"]["readyReplicas"] = json!(replicas);
            obj["status"]["availableReplicas"] = json!(replicas);
            obj["status"]["updatedReplicas"] = json!((replicas - partition).max(0));
            if partition == 0 {
                obj["status"]["currentRevision"] = json!(rev);
            }
        }
    } else {
        settle(resource, &mut obj);
    }
    bump(st, &mut obj);
    st.objects.insert(key(resource, ns, name), obj);
}

/// The OnDelete StatefulSet that owns pod `name` (by its selector), if any.
fn owner(st: &State, ns: &str, pod: &str) -> Option<String> {
    let pod = st.objects.get(&key("pods", ns, pod))?;
    owner_of(st, ns, pod)
}

fn owner_of(st: &State, ns: &str, pod: &Value) -> Option<String> {
    st.objects
        .iter()
        .find(|((r, n, _), set)| {
            r == "statefulsets"
                && n == ns
                && is_on_delete(set)
                && set["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| pod["metadata"]["labels"][k] == *v))
        })
        .map(|((_, _, name), _)| name.clone())
}

fn pods_of<'a>(st: &'a State, ns: &str, set: &Value) -> Vec<&'a Value> {
    st.objects
        .iter()
        .filter(|((r, n, _), p)| {
            r == "pods"
                && n == ns
                && set["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
        })
        .map(|(_, p)| p)
        .collect()
}

fn recount(st: &mut State, ns: &str, name: &str) {
    let Some(mut set) = st.objects.get(&key("statefulsets", ns, name)).cloned() else {
        return;
    };
    let rev = set["status"]["updateRevision"].clone();
    let pods = pods_of(st, ns, &set);
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let updated = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["controller-revision-hash"] == rev)
        .count();
    set["status"]["replicas"] = json!(pods.len());
    set["status"]["readyReplicas"] = json!(ready);
    set["status"]["availableReplicas"] = json!(ready);
    set["status"]["updatedReplicas"] = json!(updated);
    bump(st, &mut set);
    st.objects.insert(key("statefulsets", ns, name), set);
}

/// A pod of an OnDelete StatefulSet was deleted: the controller recreates it at the update
/// revision, not ready yet; status notices a little later. Deleting a pod while another pod
/// of the set is not ready takes two replicas down at once: that is recorded as a violation.
pub(super) fn pod_deleted(st: &mut State, ns: &str, pod: Value) {
    let Some(set_name) = owner_of(st, ns, &pod) else {
        return;
    };
    let set = st.objects[&key("statefulsets", ns, &set_name)].clone();
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let down: Vec<String> = pods_of(st, ns, &set)
        .into_iter()
        .filter(|p| !pod_ready(p))
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    if !down.is_empty() {
        st.violations.push(format!(
            "pod {name} of statefulset {set_name} deleted while {down:?} not ready"
        ));
    }
    let mut pod = pod;
    pod["metadata"]["labels"]["controller-revision-hash"] = set["status"]["updateRevision"].clone();
    pod["status"] =
        json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]});
    bump(st, &mut pod);
    st.objects.insert(key("pods", ns, &name), pod);
    let now = Instant::now();
    st.pending.push((
        now + STATUS_LAG,
        Event::Recount {
            ns: ns.to_owned(),
            name: set_name,
        },
    ));
    st.pending.push((
        now + POD_START,
        Event::PodReady {
            ns: ns.to_owned(),
            name,
        },
    ));
}
