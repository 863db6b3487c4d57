//! The controllers behind the fake API, with the behaviour of the real ones that our code has
//! to live with: status settles some time after a change (observedGeneration lags, a deleted
//! pod comes back not ready and readyReplicas drops), a partitioned StatefulSet updates only
//! the pods at or above its partition and keeps its currentRevision, and an `OnDelete`
//! StatefulSet never advances `status.currentRevision` (kubernetes#73492, #106055): only the
//! pods' `controller-revision-hash` labels and readiness say a rollout is done. An `OnDelete`
//! DaemonSet is the same: its controller replaces a pod only once something deletes it, with
//! the current `controller-revision-hash` and `pod-template-generation`, and counts
//! `updatedNumberScheduled` as the real one does (`IsPodUpdated`: the pod's template generation
//! is the set's `deprecated.daemonset.template.generation`, or its hash is the current one).
//! Every status write is a new resourceVersion and a watch event.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{State, settle};

/// How long a controller takes to observe a change and write status.
const STATUS_LAG: Duration = Duration::from_millis(250);
/// How long a recreated pod takes to become ready.
const POD_START: Duration = Duration::from_millis(400);

/// The annotation in which the API server keeps a DaemonSet's template generation.
pub(super) const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

pub(super) enum Event {
    /// A workload's controller observed its new template.
    Observed {
        resource: String,
        ns: String,
        name: String,
    },
    /// A StatefulSet's or DaemonSet's controller recounts its pods into status.
    Recount {
        resource: String,
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

/// Writes an object as a controller does: a new resourceVersion, and a watch event.
fn write(st: &mut State, resource: &str, ns: &str, name: &str, mut obj: Value) {
    st.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
    st.store(key(resource, ns, name), obj);
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
            Event::Recount { resource, ns, name } => recount(st, &resource, &ns, &name),
            Event::PodReady { ns, name } => {
                if let Some(mut pod) = st.objects.get(&key("pods", &ns, &name)).cloned() {
                    pod["status"] = running();
                    write(st, "pods", &ns, &name, pod);
                }
                if let Some((resource, set)) = owner(st, &ns, &name) {
                    recount(st, resource, &ns, &set);
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
    } else if resource == "daemonsets" && is_on_delete(&obj) {
        // The controller replaces no pod itself; what it counts changes with the revision.
        obj["status"]["observedGeneration"] = json!(generation);
        write(st, resource, ns, name, obj);
        recount(st, resource, ns, name);
        return;
    } else {
        settle(resource, &mut obj, st.nodes);
    }
    write(st, resource, ns, name, obj);
}

/// A DaemonSet's template generation (its annotation) and the revision hash of that template.
fn daemonset_revision(set: &Value) -> (String, String) {
    let generation = set["metadata"]["annotations"][TEMPLATE_GENERATION]
        .as_str()
        .unwrap_or("1")
        .to_owned();
    let hash = format!("dsrev-{generation}");
    (generation, hash)
}

/// The OnDelete StatefulSet or DaemonSet that owns pod `name` (by its selector), if any.
fn owner(st: &State, ns: &str, pod: &str) -> Option<(&'static str, String)> {
    let pod = st.objects.get(&key("pods", ns, pod))?;
    owner_of(st, ns, pod)
}

fn owner_of(st: &State, ns: &str, pod: &Value) -> Option<(&'static str, String)> {
    st.objects
        .iter()
        .find(|((r, n, _), set)| {
            (r == "statefulsets" || r == "daemonsets")
                && n == ns
                && is_on_delete(set)
                && set["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| pod["metadata"]["labels"][k] == *v))
        })
        .map(|((r, _, name), _)| {
            let r: &'static str = if r == "statefulsets" {
                "statefulsets"
            } else {
                "daemonsets"
            };
            (r, name.clone())
        })
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

fn recount(st: &mut State, resource: &str, ns: &str, name: &str) {
    let Some(mut set) = st.objects.get(&key(resource, ns, name)).cloned() else {
        return;
    };
    if resource == "daemonsets" {
        // As the DaemonSet controller's updateDaemonSetStatus: one pod per node, counted as
        // ready, available (minReadySeconds 0) and updated (IsPodUpdated).
        let (generation, hash) = daemonset_revision(&set);
        let pods = pods_of(st, ns, &set);
        let desired = st.nodes;
        let scheduled = (pods.len() as i64).min(desired);
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let updated = pods
            .iter()
            .filter(|p| {
                let l = &p["metadata"]["labels"];
                l["pod-template-generation"] == generation.as_str()
                    || l["controller-revision-hash"] == hash.as_str()
            })
            .count() as i64;
        set["status"]["desiredNumberScheduled"] = json!(desired);
        set["status"]["currentNumberScheduled"] = json!(scheduled);
        set["status"]["numberMisscheduled"] = json!(0);
        set["status"]["numberReady"] = json!(ready);
        set["status"]["numberAvailable"] = json!(ready);
        set["status"]["numberUnavailable"] = json!((desired - ready).max(0));
        set["status"]["updatedNumberScheduled"] = json!(updated.min(desired));
        write(st, resource, ns, name, set);
        return;
    }
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
    write(st, resource, ns, name, set);
}

/// A pod of an OnDelete StatefulSet or DaemonSet was deleted: the controller recreates it at
/// the current revision (a StatefulSet under the same name, a DaemonSet under a new one), not
/// ready yet; status notices a little later. Deleting a pod while another pod of the set is
/// not ready takes two replicas down at once: that is recorded as a violation.
pub(super) fn pod_deleted(st: &mut State, ns: &str, pod: Value) {
    let Some((resource, set_name)) = owner_of(st, ns, &pod) else {
        return;
    };
    let set = st.objects[&key(resource, ns, &set_name)].clone();
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
            "pod {name} of {resource} {set_name} deleted while {down:?} not ready"
        ));
    }
    let mut pod = pod;
    let name = if resource == "daemonsets" {
        let (generation, hash) = daemonset_revision(&set);
        pod["metadata"]["labels"]["controller-revision-hash"] = json!(hash);
        pod["metadata"]["labels"]["pod-template-generation"] = json!(generation);
        let fresh = format!("{set_name}-{:05x}", st.rv + 1);
        pod["metadata"]["name"] = json!(fresh);
        pod["metadata"]["uid"] = json!(format!("uid-{}", st.rv + 1));
        fresh
    } else {
        pod["metadata"]["labels"]["controller-revision-hash"] =
            set["status"]["updateRevision"].clone();
        name
    };
    pod["status"] =
        json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]});
    write(st, "pods", ns, &name, pod);
    let now = Instant::now();
    st.pending.push((
        now + STATUS_LAG,
        Event::Recount {
            resource: resource.to_owned(),
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
