//! Finding the workloads that consume a Secret, restarting them by stamping their pod
//! template, and waiting until the rollout is healthy.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use serde_json::json;

use crate::k8s::error::K8sError;
use crate::k8s::watch::{self, ObjectWatch};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    StatefulSet,
    Deployment,
    DaemonSet,
    CronJob,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "StatefulSet" => Kind::StatefulSet,
            "Deployment" => Kind::Deployment,
            "DaemonSet" => Kind::DaemonSet,
            "CronJob" => Kind::CronJob,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::StatefulSet => "StatefulSet",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::CronJob => "CronJob",
        }
    }
}

/// A workload by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// A workload found reading a Secret, and whether rolling it means deleting its pods (a
/// StatefulSet or DaemonSet with the `OnDelete` update strategy, whose controller replaces a
/// pod only once it is deleted).
#[derive(Clone, Debug)]
pub struct Consumer {
    pub workload: Workload,
    pub deletes_pods: bool,
}

/// The names among `items` whose update strategy is `OnDelete`.
fn on_delete<'a>(items: impl Iterator<Item = (&'a ObjectMeta, Option<&'a str>)>) -> Vec<String> {
    items
        .filter(|(_, strategy)| *strategy == Some("OnDelete"))
        .filter_map(|(meta, _)| meta.name.clone())
        .collect()
}

fn with_strategy(found: Vec<Workload>, deleting: &[String]) -> Vec<Consumer> {
    found
        .into_iter()
        .map(|workload| Consumer {
            deletes_pods: deleting.contains(&workload.name),
            workload,
        })
        .collect()
}

/// Whether a pod spec reads the Secret: env `secretKeyRef`, `envFrom`, volumes, projected
/// volumes, in containers and init containers.
pub fn references_secret(spec: &PodSpec, secret: &str) -> bool {
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            if e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == secret)
            {
                return true;
            }
        }
        for e in c.env_from.iter().flatten() {
            if e.secret_ref.as_ref().is_some_and(|r| r.name == secret) {
                return true;
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(secret) {
            return true;
        }
        let projected = v.projected.as_ref().and_then(|p| p.sources.as_ref());
        if projected.is_some_and(|sources| {
            sources
                .iter()
                .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
        }) {
            return true;
        }
    }
    false
}

/// The consumers of `secret` among the given workloads, database tier first (StatefulSets),
/// then Deployments, DaemonSets and CronJobs, each by name.
pub fn consumers(
    namespace: &str,
    secret: &str,
    statefulsets: &[StatefulSet],
    deployments: &[Deployment],
    daemonsets: &[DaemonSet],
    cronjobs: &[CronJob],
) -> Vec<Workload> {
    let mut out = Vec::new();
    let mut add = |kind, meta: &ObjectMeta, spec: Option<&PodSpec>| {
        let name = &meta.name;
        // A workload can opt out (a database that reads the Secret only on first boot).
        let opted_out = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(ROLL_ANNOTATION))
            .is_some_and(|v| v == "never");
        if !opted_out && spec.is_some_and(|s| references_secret(s, secret)) {
            out.push(Workload {
                kind,
                namespace: namespace.to_owned(),
                name: name.clone().unwrap_or_default(),
            });
        }
    };
    for s in statefulsets {
        add(
            Kind::StatefulSet,
            &s.metadata,
            s.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        );
    }
    for d in deployments {
        add(
            Kind::Deployment,
            &d.metadata,
            d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        );
    }
    for d in daemonsets {
        add(
            Kind::DaemonSet,
            &d.metadata,
            d.spec.as_ref().and_then(|s| s.template.spec.as_ref()),
        );
    }
    for c in cronjobs {
        let spec = c
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .and_then(|j| j.template.spec.as_ref());
        add(Kind::CronJob, &c.metadata, spec);
    }
    out.sort();
    out
}

/// `credseal.dev/roll: never` on a workload keeps rotation from restarting it.
pub const ROLL_ANNOTATION: &str = "credseal.dev/roll";

/// The pod-template annotation that restarts a workload for one credential. Its value is the
/// rotation generation: it changes exactly when the credential does, reveals nothing about the
/// password, and stamping it again is a no-op.
pub fn stamp_key(secret: &str) -> String {
    let name = format!("rotated.{secret}");
    if name.len() <= 63 {
        format!("credseal.dev/{name}")
    } else {
        format!("credseal.dev/{}", &name[..63])
    }
}

pub struct Workloads {
    client: kube::Client,
}

/// A StatefulSet's pods.
#[derive(Debug)]
pub struct Members {
    /// `spec.replicas`: how many pods the set should have.
    pub replicas: i32,
    /// `spec.serviceName`: the headless Service that names each pod in DNS.
    pub service_name: Option<String>,
    /// By ordinal.
    pub pods: Vec<Member>,
}

#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub ip: Option<String>,
    pub ready: bool,
    pub terminating: bool,
}

/// A StatefulSet pod's ordinal: the number after the last `-` (`redis-10` is 10).
fn ordinal(pod: &str) -> u64 {
    pod.rsplit_once('-')
        .and_then(|(_, o)| o.parse().ok())
        .unwrap_or(0)
}

/// A label selector in the list-query syntax, `matchExpressions` included.
pub fn selector_string(s: &LabelSelector) -> String {
    let mut terms: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    terms.join(",")
}

fn err(w: &Workload) -> impl Fn(kube::Error) -> K8sError + '_ {
    move |e| K8sError::from_kube(w.to_string(), e)
}

impl Workloads {
    pub fn new(client: kube::Client) -> Workloads {
        Workloads { client }
    }

    /// Every workload in `namespace` whose pods read `secret`. Lists page by page and keeps
    /// only the consumers of each page, so memory does not grow with the namespace.
    pub async fn discover(&self, namespace: &str, secret: &str) -> Result<Vec<Consumer>, K8sError> {
        let lp = ListParams::default();
        let what = |k: &str| format!("list {k} in {namespace}");
        let c = &self.client;
        let plain = |found: Vec<Workload>| with_strategy(found, &[]);
        let mut out = list_filtered(
            &Api::<StatefulSet>::namespaced(c.clone(), namespace),
            &lp,
            |p| {
                let deleting = on_delete(p.iter().map(|s| {
                    let strategy = s.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
                    (&s.metadata, strategy.and_then(|u| u.type_.as_deref()))
                }));
                with_strategy(consumers(namespace, secret, &p, &[], &[], &[]), &deleting)
            },
        )
        .await
        .map_err(|e| K8sError::from_kube(what("statefulsets"), e))?;
        out.extend(
            list_filtered(
                &Api::<Deployment>::namespaced(c.clone(), namespace),
                &lp,
                |p| plain(consumers(namespace, secret, &[], &p, &[], &[])),
            )
            .await
            .map_err(|e| K8sError::from_kube(what("deployments"), e))?,
        );
        out.extend(
            list_filtered(
                &Api::<DaemonSet>::namespaced(c.clone(), namespace),
                &lp,
                |p| {
                    let deleting = on_delete(p.iter().map(|d| {
                        let strategy = d.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
                        (&d.metadata, strategy.and_then(|u| u.type_.as_deref()))
                    }));
                    with_strategy(consumers(namespace, secret, &[], &[], &p, &[]), &deleting)
                },
            )
            .await
            .map_err(|e| K8sError::from_kube(what("daemonsets"), e))?,
        );
        out.extend(
            list_filtered(
                &Api::<CronJob>::namespaced(c.clone(), namespace),
                &lp,
                |p| plain(consumers(namespace, secret, &[], &[], &[], &p)),
            )
            .await
            .map_err(|e| K8sError::from_kube(what("cronjobs"), e))?,
        );
        Ok(out)
    }

    /// Whether rolling `w` means deleting its pods (see [`Consumer`]), read from the object as
    /// it is now: for a workload a plan names, which discovery may not have listed.
    pub async fn rolls_by_deleting_pods(&self, w: &Workload) -> Result<bool, K8sError> {
        let what = || format!("{}", w);
        let strategy = match w.kind {
            Kind::StatefulSet => Api::<StatefulSet>::namespaced(self.client.clone(), &w.namespace)
                .get(&w.name)
                .await
                .map_err(|e| K8sError::from_kube(what(), e))?
                .spec
                .and_then(|s| s.update_strategy)
                .and_then(|u| u.type_),
            Kind::DaemonSet => Api::<DaemonSet>::namespaced(self.client.clone(), &w.namespace)
                .get(&w.name)
                .await
                .map_err(|e| K8sError::from_kube(what(), e))?
                .spec
                .and_then(|s| s.update_strategy)
                .and_then(|u| u.type_),
            Kind::Deployment | Kind::CronJob => None,
        };
        Ok(strategy.as_deref() == Some("OnDelete"))
    }

    /// Stamps the pod template (a merge patch of one annotation). Returns the object's uid, for
    /// the Events recorded on it.
    pub async fn stamp(
        &self,
        w: &Workload,
        key: &str,
        value: &str,
    ) -> Result<Option<String>, K8sError> {
        let annotations = json!({ key: value });
        let template = json!({"metadata": {"annotations": annotations}});
        let patch = match w.kind {
            Kind::CronJob => json!({"spec": {"jobTemplate": {"spec": {"template": template}}}}),
            _ => json!({"spec": {"template": template}}),
        };
        let pp = PatchParams::default();
        let p = Patch::Merge(&patch);
        let c = self.client.clone();
        match w.kind {
            Kind::Deployment => Api::<Deployment>::namespaced(c, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|o| o.metadata.uid),
            Kind::StatefulSet => Api::<StatefulSet>::namespaced(c, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|o| o.metadata.uid),
            Kind::DaemonSet => Api::<DaemonSet>::namespaced(c, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|o| o.metadata.uid),
            Kind::CronJob => Api::<CronJob>::namespaced(c, &w.namespace)
                .patch(&w.name, &pp, &p)
                .await
                .map(|o| o.metadata.uid),
        }
        .map_err(err(w))
    }

    /// Waits until the workload runs its current template everywhere and is available, as
    /// its controller reports it, following the object by a watch (not by polling); a failure
    /// that may pass (a dropped connection, 5xx, 429) is retried until `timeout`, a refusal is
    /// returned at once. `Ok(false)` when the time is up first. A CronJob has nothing to wait
    /// for: its next run uses the new template.
    pub async fn wait(&self, w: &Workload, timeout: Duration) -> Result<bool, K8sError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let c = self.client.clone();
        let what = w.to_string();
        let mut deleted_pods: Vec<String> = Vec::new();
        match w.kind {
            Kind::CronJob => Ok(true),
            Kind::Deployment => {
                let api = Api::<Deployment>::namespaced(c, &w.namespace);
                let watch = ObjectWatch::new(api, &w.name, &what, deadline);
                follow(watch, async |d: &Deployment| Ok(deployment_rolled(d))).await
            }
            Kind::DaemonSet => {
                let api = Api::<DaemonSet>::namespaced(c, &w.namespace);
                let watch = ObjectWatch::new(api, &w.name, &what, deadline);
                follow(watch, async |d: &DaemonSet| {
                    self.daemonset_rolled(d, &mut deleted_pods).await
                })
                .await
            }
            Kind::StatefulSet => {
                let api = Api::<StatefulSet>::namespaced(c, &w.namespace);
                let watch = ObjectWatch::new(api, &w.name, &what, deadline);
                follow(watch, async |s: &StatefulSet| {
                    self.statefulset_rolled(s, &mut deleted_pods).await
                })
                .await
            }
        }
    }

    /// Whether a StatefulSet runs its current template everywhere, as kubectl's rollout status
    /// judges it, and for `OnDelete` as its pods say: that controller never advances
    /// `status.currentRevision` (kubernetes#73492, #106055), so the pods' revision labels and
    /// readiness decide, and credseal deletes the outdated ones itself, highest ordinal first,
    /// one at a time and only while every other pod is ready (status lags behind the pods).
    async fn statefulset_rolled(
        &self,
        s: &StatefulSet,
        deleted_pods: &mut Vec<String>,
    ) -> Result<bool, K8sError> {
        let spec = s.spec.as_ref();
        let want = spec.and_then(|s| s.replicas).unwrap_or(1);
        let strategy = spec.and_then(|s| s.update_strategy.as_ref());
        let st = s.status.clone().unwrap_or_default();
        if st.observed_generation < s.metadata.generation || st.update_revision.is_none() {
            return Ok(false);
        }
        if strategy.and_then(|u| u.type_.as_deref()) == Some("OnDelete") {
            let selector = spec.map(|sp| &sp.selector);
            let pods = self.pods_of("StatefulSet", &s.metadata, selector).await?;
            let updated = |p: &Pod| revision_of(p) == st.update_revision;
            // Highest ordinal first. Ordinals compare as numbers: redis-10 goes before redis-9.
            let order = |p: &Pod| {
                std::cmp::Reverse(ordinal(p.metadata.name.as_deref().unwrap_or_default()))
            };
            return self
                .replace_outdated(&s.metadata, pods, want, updated, order, deleted_pods)
                .await;
        }
        let ready = st.ready_replicas.unwrap_or(0) >= want;
        let updated = st.updated_replicas.unwrap_or(0);
        match strategy
            .and_then(|u| u.rolling_update.as_ref())
            .and_then(|r| r.partition)
        {
            // Partitioned: only the pods at or above the partition move to the new revision,
            // and currentRevision stays until the partition is lowered.
            Some(partition) if partition > 0 => Ok(ready && updated >= want - partition),
            _ => Ok(ready && updated >= want && st.current_revision == st.update_revision),
        }
    }

    /// Whether a DaemonSet runs its current template on every node it should, as its
    /// controller counts it: the status of the current generation says every scheduled pod is
    /// updated and available (kubectl's rollout status). With `OnDelete` the controller
    /// replaces a pod only once it is deleted, and kubectl refuses to judge; credseal deletes
    /// the outdated pods itself, one at a time and only while every pod is ready, and is done
    /// when the pods agree with the status (it lags behind them). A pod is current as the
    /// controller decides (`IsPodUpdated`): its `pod-template-generation` label is the set's
    /// `deprecated.daemonset.template.generation` annotation, or its `controller-revision-hash`
    /// is the one the pods of that generation carry.
    async fn daemonset_rolled(
        &self,
        d: &DaemonSet,
        deleted_pods: &mut Vec<String>,
    ) -> Result<bool, K8sError> {
        let st = d.status.clone().unwrap_or_default();
        if st.observed_generation < d.metadata.generation {
            return Ok(false);
        }
        let desired = st.desired_number_scheduled;
        let counted = st.updated_number_scheduled.unwrap_or(0) >= desired
            && st.number_available.unwrap_or(0) >= desired;
        let spec = d.spec.as_ref();
        let on_delete = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        if !on_delete {
            return Ok(counted);
        }
        let Some(generation) = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_GENERATION))
            .filter(|g| g.parse::<i64>().is_ok())
            .cloned()
        else {
            return Err(K8sError::Unusable {
                what: format!("daemonset {}", meta_name(&d.metadata)),
                problem: format!(
                    "it has no {TEMPLATE_GENERATION} annotation (the API server sets it on every apps/v1 DaemonSet), so which pods run its current template cannot be told"
                ),
            });
        };
        let pods = self
            .pods_of("DaemonSet", &d.metadata, spec.map(|s| &s.selector))
            .await?;
        let current_hash = pods
            .iter()
            .find(|p| label(p, DAEMONSET_TEMPLATE_GENERATION) == Some(&generation))
            .and_then(revision_of);
        let updated = |p: &Pod| {
            label(p, DAEMONSET_TEMPLATE_GENERATION) == Some(&generation)
                || (current_hash.is_some() && revision_of(p) == current_hash)
        };
        let order = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        let pods_done = self
            .replace_outdated(&d.metadata, pods, desired, updated, order, deleted_pods)
            .await?;
        Ok(pods_done && counted)
    }

    /// Rolls a set whose controller replaces a pod only once it is deleted: when all `want`
    /// pods are there and ready, deletes the first outdated one by `order` (never the same
    /// name twice). Whether every pod is ready and current.
    async fn replace_outdated<O: Ord>(
        &self,
        owner: &ObjectMeta,
        pods: Vec<Pod>,
        want: i32,
        updated: impl Fn(&Pod) -> bool,
        order: impl Fn(&Pod) -> O,
        deleted: &mut Vec<String>,
    ) -> Result<bool, K8sError> {
        let all_ready = pods.len() >= want.max(0) as usize && pods.iter().all(pod_ready);
        if !all_ready {
            return Ok(false);
        }
        let mut outdated: Vec<&Pod> = pods.iter().filter(|p| !updated(p)).collect();
        if outdated.is_empty() {
            return Ok(true);
        }
        outdated.sort_by_key(|p| order(p));
        let ns = owner.namespace.clone().unwrap_or_default();
        let pname = outdated[0].metadata.name.clone().unwrap_or_default();
        if !deleted.contains(&pname) {
            Api::<Pod>::namespaced(self.client.clone(), &ns)
                .delete(&pname, &DeleteParams::default())
                .await
                .map_err(|e| K8sError::from_kube(format!("delete pod {ns}/{pname}"), e))?;
            deleted.push(pname);
        }
        Ok(false)
    }

    /// The pods of a `kind` controller (StatefulSet, DaemonSet), as it sees them: matched by
    /// its selector, and not owned by another controller.
    async fn pods_of(
        &self,
        kind: &str,
        owner: &ObjectMeta,
        selector: Option<&LabelSelector>,
    ) -> Result<Vec<Pod>, K8sError> {
        let ns = owner.namespace.clone().unwrap_or_default();
        let name = owner.name.clone().unwrap_or_default();
        let selector = selector.map(selector_string).unwrap_or_default();
        // An empty selector would match every pod in the namespace: never act on that.
        if selector.is_empty() {
            return Err(K8sError::Unusable {
                what: format!("{} {ns}/{name}", kind.to_lowercase()),
                problem: "spec.selector is empty, which would match every pod in the namespace"
                    .into(),
            });
        }
        let pods = list_filtered(
            &Api::<Pod>::namespaced(self.client.clone(), &ns),
            &ListParams::default().labels(&selector),
            |page| page,
        )
        .await
        .map_err(|e| {
            K8sError::from_kube(
                format!("list pods of {} {ns}/{name}", kind.to_lowercase()),
                e,
            )
        })?;
        Ok(pods
            .into_iter()
            .filter(|p| {
                p.metadata.owner_references.as_ref().is_none_or(|owners| {
                    owners
                        .iter()
                        .filter(|o| o.controller == Some(true))
                        .all(|o| o.kind == kind && o.name == name)
                })
            })
            .collect())
    }

    /// The pods of StatefulSet `namespace/name`, with the number it wants and its Service.
    pub async fn statefulset_members(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Members, K8sError> {
        let set = Api::<StatefulSet>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| K8sError::from_kube(format!("statefulset {namespace}/{name}"), e))?;
        let spec = set.spec.as_ref();
        let mut pods: Vec<Member> = self
            .pods_of("StatefulSet", &set.metadata, spec.map(|s| &s.selector))
            .await?
            .into_iter()
            .map(|p| {
                let status = p.status.unwrap_or_default();
                Member {
                    name: p.metadata.name.unwrap_or_default(),
                    ip: status.pod_ip.filter(|ip| !ip.is_empty()),
                    ready: status
                        .conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True"),
                    terminating: p.metadata.deletion_timestamp.is_some(),
                }
            })
            .collect();
        pods.sort_by_key(|m| ordinal(&m.name));
        Ok(Members {
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            service_name: spec.and_then(|s| s.service_name.clone()),
            pods,
        })
    }
}

/// Objects per list request: large namespaces arrive in pages of this size.
const PAGE: u32 = 250;

/// Lists page by page (`limit`/`continue`), keeping what `keep` returns of each page. A
/// continue token that expired (410 Gone, the server compacted past it) restarts the list:
/// a list stitched across that gap would not be consistent.
async fn list_filtered<K, T>(
    api: &Api<K>,
    lp: &ListParams,
    keep: impl Fn(Vec<K>) -> Vec<T>,
) -> Result<Vec<T>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut restarts = 0;
    'list: loop {
        let mut out = Vec::new();
        let mut page_params = lp.clone().limit(PAGE);
        loop {
            match api.list(&page_params).await {
                Ok(page) => {
                    let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
                    out.extend(keep(page.items));
                    match next {
                        Some(token) => page_params = page_params.continue_token(&token),
                        None => return Ok(out),
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 410 && restarts < 3 => {
                    restarts += 1;
                    continue 'list;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The revision a pod of a StatefulSet or DaemonSet runs (`controller-revision-hash`).
fn revision_of(p: &Pod) -> Option<String> {
    label(p, "controller-revision-hash").cloned()
}

fn label<'p>(p: &'p Pod, key: &str) -> Option<&'p String> {
    p.metadata.labels.as_ref().and_then(|l| l.get(key))
}

/// The DaemonSet's template generation, which the API server keeps in this annotation on
/// apps/v1 objects and bumps on every template change (not on other spec changes).
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
/// The template generation a DaemonSet pod was created from.
const DAEMONSET_TEMPLATE_GENERATION: &str = "pod-template-generation";

fn meta_name(m: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default()
    )
}

/// kubectl's rollout status for a Deployment: the current generation observed, every replica
/// updated and available, no old one left.
fn deployment_rolled(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = d.status.clone().unwrap_or_default();
    st.observed_generation >= d.metadata.generation
        && st.updated_replicas.unwrap_or(0) >= want
        && st.available_replicas.unwrap_or(0) >= want
        && st.replicas.unwrap_or(0) <= want
}

/// Feeds `judge` the object each time it changes until it says the rollout is done or the
/// deadline passes; its own transient failures (listing or deleting pods) are retried.
async fn follow<K>(
    mut watch: ObjectWatch<K>,
    mut judge: impl AsyncFnMut(&K) -> Result<bool, K8sError>,
) -> Result<bool, K8sError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    while let Some(obj) = watch.next().await? {
        // Listing or deleting pods is bounded by the deadline too, not only by each request's.
        let Ok(judged) = tokio::time::timeout_at(watch.deadline(), judge(&obj)).await else {
            return Ok(false);
        };
        match judged {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) if watch::is_transient(&e) => watch.retry_after_failure(e),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Ready and not terminating.
fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, EnvVar, EnvVarSource, ProjectedVolumeSource, SecretEnvSource,
        SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
    };

    fn spec_with(c: Container, volumes: Vec<Volume>) -> PodSpec {
        PodSpec {
            containers: vec![c],
            volumes: Some(volumes),
            ..PodSpec::default()
        }
    }

    #[test]
    fn selectors_keep_their_expressions() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let req = |key: &str, operator: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        };
        let s = LabelSelector {
            match_labels: Some([("app".to_owned(), "redis".to_owned())].into()),
            match_expressions: Some(vec![
                req("tier", "In", &["cache", "db"]),
                req("canary", "NotIn", &["true"]),
                req("owner", "Exists", &[]),
                req("legacy", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(
            selector_string(&s),
            "app=redis,tier in (cache,db),canary notin (true),owner,!legacy"
        );
        assert_eq!(selector_string(&LabelSelector::default()), "");
    }

    #[test]
    fn every_kind_of_reference_is_found() {
        let env = Container {
            env: Some(vec![EnvVar {
                name: "P".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "db".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            }]),
            ..Container::default()
        };
        assert!(references_secret(&spec_with(env, vec![]), "db"));
        let env_from = Container {
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "db".into(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            }]),
            ..Container::default()
        };
        assert!(references_secret(&spec_with(env_from, vec![]), "db"));
        let volume = Volume {
            name: "v".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("db".into()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        assert!(references_secret(
            &spec_with(Container::default(), vec![volume]),
            "db"
        ));
        let projected = Volume {
            name: "v".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    secret: Some(SecretProjection {
                        name: "db".into(),
                        ..SecretProjection::default()
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        };
        assert!(references_secret(
            &spec_with(Container::default(), vec![projected]),
            "db"
        ));
        assert!(!references_secret(
            &spec_with(Container::default(), vec![]),
            "db"
        ));
        assert!(stamp_key(&"x".repeat(100)).len() <= 13 + 63);
    }
}
