//! What a rotation may do in the cluster, asked before it does anything: every call it will
//! make, the consumers found now included, checked with SelfSubjectAccessReviews, so a Role
//! that misses one is reported with the rule to add instead of failing with a 403 after the
//! password changed. The same list is what `rotate --print-role` prints.

use crate::k8s::access::{self, Access};
use crate::k8s::workloads::{Kind, Workload, Workloads};
use crate::rotate::plan::Credential;
use crate::rotate::{RotateError, Runner, lock};

impl Runner<'_> {
    /// Errs with every missing rule when this identity may not make a call the rotation of
    /// `cred` would; changes nothing.
    pub(crate) async fn may_do_everything(&mut self, cred: &Credential) -> Result<(), RotateError> {
        if self.dry_run || !cred.needs_cluster() {
            return Ok(());
        }
        let client = self.cluster(cred)?;
        let kube_err = |source| RotateError::Kube {
            credential: cred.name.clone(),
            source,
        };
        let mut missing = access::denied(&client, &cluster_calls(cred))
            .await
            .map_err(kube_err)?;
        // Each round needs what the one before allowed: listing finds the consumers (and
        // which of them roll by deleting their pods), which the next round asks about.
        if missing.is_empty() {
            let workloads = Workloads::new(client.clone());
            let consumers = match cred.target.secret() {
                Some(s) => workloads
                    .discover(&s.namespace, &s.name)
                    .await
                    .map_err(kube_err)?,
                None => Vec::new(),
            };
            let wanted: Vec<Access> = consumers
                .iter()
                .flat_map(|c| workload_calls(&c.workload))
                .collect();
            missing = access::denied(&client, &wanted).await.map_err(kube_err)?;
            if missing.is_empty() {
                let mut deleting: Vec<&Workload> = consumers
                    .iter()
                    .filter(|c| c.deletes_pods)
                    .map(|c| &c.workload)
                    .collect();
                for w in &cred.rollout.also {
                    let listed = consumers.iter().any(|c| &c.workload == w);
                    if !listed
                        && workloads
                            .rolls_by_deleting_pods(w)
                            .await
                            .map_err(kube_err)?
                    {
                        deleting.push(w);
                    }
                }
                let wanted: Vec<Access> = deleting
                    .iter()
                    .flat_map(|w| pod_calls(&w.namespace))
                    .collect();
                missing = access::denied(&client, &wanted).await.map_err(kube_err)?;
            }
        }
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        Err(RotateError::Forbidden {
            credential: cred.name.clone(),
            rules: missing
                .iter()
                .map(|a| format!("  {}", a.rule()))
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }
}

/// The calls a rotation of `cred` makes whatever its consumers are: its target Secret, the
/// pending record, its Lease, listing what may consume it, the plan's `also` workloads and
/// Secrets it reads PEMs or the admin password from. The one list the permission preflight
/// asks about and `rotate --print-role` prints.
pub fn cluster_calls(cred: &Credential) -> Vec<Access> {
    let mut calls = Vec::new();
    if let Some(s) = cred.target.secret() {
        let ns = s.namespace.as_str();
        let pending = format!("{}-credseal-pending", s.name);
        let lease = lock::lease_name(&s.name);
        for verb in ["get", "update"] {
            calls.push(Access::new(verb, "", "secrets", ns, Some(&s.name)));
        }
        for verb in ["get", "patch", "delete"] {
            calls.push(Access::new(verb, "", "secrets", ns, Some(&pending)));
        }
        calls.push(Access::new(
            "create",
            "coordination.k8s.io",
            "leases",
            ns,
            None,
        ));
        for verb in ["get", "update", "delete"] {
            calls.push(Access::new(
                verb,
                "coordination.k8s.io",
                "leases",
                ns,
                Some(&lease),
            ));
        }
        for (group, resource) in [
            ("apps", "deployments"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "cronjobs"),
        ] {
            calls.push(Access::new("list", group, resource, ns, None));
        }
    }
    calls.extend(cred.rollout.also.iter().flat_map(workload_calls));
    let secrets = [
        &cred.admin.ca,
        &cred.admin.client_cert,
        &cred.admin.client_key,
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.secret.as_ref())
    .chain(cred.admin.password.as_ref().and_then(|p| p.secret.as_ref()));
    for r in secrets {
        calls.push(Access::new(
            "get",
            "",
            "secrets",
            &r.namespace,
            Some(&r.name),
        ));
    }
    calls
}

/// Rolling an `OnDelete` StatefulSet or DaemonSet: list its pods, delete the outdated ones.
fn pod_calls(namespace: &str) -> Vec<Access> {
    ["list", "delete"]
        .into_iter()
        .map(|verb| Access::new(verb, "", "pods", namespace, None))
        .collect()
}

/// Rolling a workload: stamp its pod template, read its rollout status and watch it change
/// (a watch of one name, authorized by that name).
fn workload_calls(w: &Workload) -> Vec<Access> {
    let (group, resource) = match w.kind {
        Kind::Deployment => ("apps", "deployments"),
        Kind::StatefulSet => ("apps", "statefulsets"),
        Kind::DaemonSet => ("apps", "daemonsets"),
        Kind::CronJob => ("batch", "cronjobs"),
    };
    // A CronJob has no rollout to wait for: its next run uses the new template.
    let verbs: &[&'static str] = match w.kind {
        Kind::CronJob => &["patch"],
        _ => &["get", "patch", "watch"],
    };
    verbs
        .iter()
        .map(|verb| Access::new(verb, group, resource, &w.namespace, Some(&w.name)))
        .collect()
}
