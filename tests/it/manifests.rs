//! The manifests render with the real kustomize (kubectl 1.32's), parse into k8s-openapi types,
//! meet the restricted Pod Security level, and their encrypted credentials open with the
//! example key through `materialize`, as the pods would.

use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use serde_json::Value;

use credseal::sops::tree::Node;
use credseal::sops::yaml;

use crate::support::Cmd;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize DIR`, every object as JSON.
pub fn render(dir: &str) -> Vec<Value> {
    let out = Cmd::tool("kubectl")
        .arg("kustomize")
        .arg(repo().join(dir))
        .run()
        .ok();
    let tree = yaml::parse(&out.stdout).unwrap();
    tree.documents
        .iter()
        .map(|d| Node::Map(d.clone()).to_json())
        .collect()
}

pub fn of_kind<T: serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(|o| serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{kind}: {e}")))
        .collect()
}

pub fn pod_specs(objects: &[Value]) -> Vec<(String, PodSpec)> {
    let mut out = Vec::new();
    for s in of_kind::<StatefulSet>(objects, "StatefulSet") {
        out.push((
            s.metadata.name.unwrap(),
            s.spec.unwrap().template.spec.unwrap(),
        ));
    }
    for d in of_kind::<Deployment>(objects, "Deployment") {
        out.push((
            d.metadata.name.unwrap(),
            d.spec.unwrap().template.spec.unwrap(),
        ));
    }
    for c in of_kind::<CronJob>(objects, "CronJob") {
        let job = c.spec.unwrap().job_template.spec.unwrap();
        out.push((c.metadata.name.unwrap(), job.template.spec.unwrap()));
    }
    for j in of_kind::<Job>(objects, "Job") {
        out.push((
            j.metadata.name.unwrap(),
            j.spec.unwrap().template.spec.unwrap(),
        ));
    }
    out
}

/// The pod template of the workload (StatefulSet, Deployment, CronJob or Job) `name`.
pub fn pod_spec(objects: &[Value], name: &str) -> PodSpec {
    pod_specs(objects)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no workload {name}"))
        .1
}

pub fn assert_restricted(pod: &str, spec: &PodSpec, c: &Container) {
    let what = format!("{pod}/{}", c.name);
    let sc = c
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no securityContext"));
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    assert!(
        sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true),
        "{what}: runAsNonRoot"
    );
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "{what}: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc.allow_privilege_escalation,
        Some(false),
        "{what}: allowPrivilegeEscalation"
    );
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()]),
        "{what}: drop ALL"
    );
    let seccomp = sc
        .seccomp_profile
        .clone()
        .or(pod_sc.seccomp_profile)
        .map(|s| s.type_);
    assert_eq!(
        seccomp.as_deref(),
        Some("RuntimeDefault"),
        "{what}: seccomp"
    );
    let r = c
        .resources
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no resources"));
    assert!(
        r.requests.is_some() && r.limits.is_some(),
        "{what}: requests and limits"
    );
    let image = c.image.as_deref().unwrap_or("");
    assert!(
        image.contains(':') && !image.ends_with(":latest"),
        "{what}: image pinned to a tag"
    );
}

#[test]
fn base_renders_restricted_pods_and_named_rbac() {
    for dir in [
        "manifests/base",
        "manifests/overlays/dev",
        "manifests/overlays/prod",
    ] {
        restricted_and_named(dir);
    }
    // prod sizes the database as the reference platform does.
    let prod = render("manifests/overlays/prod");
    let pg: StatefulSet = of_kind::<StatefulSet>(&prod, "StatefulSet")
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some("postgres"))
        .unwrap();
    let r = pg.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let q = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
             k: &str| { m.as_ref().unwrap()[k].0.clone() };
    assert_eq!(
        (q(&r.requests, "memory"), q(&r.requests, "cpu")),
        ("512Mi".into(), "500m".into())
    );
    assert_eq!(
        (q(&r.limits, "memory"), q(&r.limits, "cpu")),
        ("2Gi".into(), "2".into())
    );
    let claim = &pg_claim(&prod);
    assert_eq!(claim, "5Gi");
}

fn pg_claim(objects: &[Value]) -> String {
    let pg = objects
        .iter()
        .find(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == "postgres")
        .unwrap();
    pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn restricted_and_named(dir: &str) {
    let objects = render(dir);
    assert!(
        !objects.iter().any(|o| o["kind"] == "Secret"),
        "no plaintext Secret objects"
    );
    let pods = pod_specs(&objects);
    assert_eq!(
        pods.len(),
        6,
        "postgres, redis, backend, backup, deploy hook, rotator"
    );
    for (name, spec) in &pods {
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            assert_restricted(name, spec, c);
            // The cluster key is mounted only into credseal containers.
            let mounts_key = c
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "cluster-key");
            assert!(
                !mounts_key || c.name == "credseal",
                "{name}/{}: only credseal mounts the cluster key",
                c.name
            );
        }
    }
    // The sidecar and the init container need no API access.
    for (name, spec) in &pods {
        if name != "credseal-apply" && name != "credseal-rotate" {
            assert_eq!(spec.automount_service_account_token, Some(false), "{name}");
        }
    }
    let (_, backend) = pods.iter().find(|(n, _)| n == "backend").unwrap();
    let sidecar = &backend.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        sidecar.restart_policy.as_deref(),
        Some("Always"),
        "native sidecar"
    );
    let memory = backend
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "credentials")
        .unwrap();
    assert_eq!(
        memory.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    for role in of_kind::<Role>(&objects, "Role") {
        for rule in role.rules.unwrap_or_default() {
            let all: Vec<&String> = rule
                .verbs
                .iter()
                .chain(rule.resources.iter().flatten())
                .collect();
            assert!(
                !all.iter().any(|s| s.contains('*')),
                "no wildcards: {rule:?}"
            );
            // Only list and create (names unknown when they are authorized) may go unnamed.
            let named = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
            assert!(
                named || rule.verbs.iter().all(|v| v == "list" || v == "create"),
                "named resources: {rule:?}"
            );
        }
    }
}

/// The ConfigMap of encrypted Secret files the deploy hook and the sidecar read.
fn encrypted_secrets(objects: &[Value]) -> ConfigMap {
    of_kind::<ConfigMap>(objects, "ConfigMap")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("credseal-secrets"))
        .unwrap()
}

#[test]
fn encrypted_credentials_render_with_the_example_key() {
    let objects = render("manifests/base");
    let cm = encrypted_secrets(&objects);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    for (name, text) in cm.data.unwrap() {
        assert!(
            text.contains("ENC[AES256_GCM") && text.contains("sops:"),
            "{name} is encrypted"
        );
        std::fs::write(source.join(name), text).unwrap();
    }
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::copy(
        repo().join("keys-example/age.agekey"),
        keys.join("age.agekey"),
    )
    .unwrap();
    let out = dir.path().join("out");
    Cmd::credseal()
        .args(["materialize", "--once", "--namespace", "platform-services"])
        .arg("--source")
        .arg(&source)
        .arg("--keys")
        .arg(&keys)
        .arg("--out")
        .arg(&out)
        .args(["--template", "DATABASE_URL=postgresql://{{postgres-credentials/username}}:{{postgres-credentials/password}}@postgres:5432/saas_platform"])
        .run()
        .ok();
    assert_eq!(
        std::fs::read_to_string(out.join("postgres-credentials/username")).unwrap(),
        "app_user"
    );
    assert!(
        std::fs::read_to_string(out.join("DATABASE_URL"))
            .unwrap()
            .starts_with("postgresql://app_user:")
    );
    assert!(out.join("redis-credentials/password").exists());
}

#[test]
fn the_repository_passes_check_and_a_plaintext_secret_fails_it() {
    let out = Cmd::credseal()
        .cwd(repo())
        .key(repo().join("keys-example/age.agekey"))
        .arg("check")
        .run()
        .ok();
    assert!(
        out.stderr
            .contains("8 encrypted (8 MAC-verified), 0 finding(s)"),
        "{}",
        out.stderr
    );
    // A copy of the platform with a plaintext Secret added beside the encrypted ones.
    let copy = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args(["-r", "manifests", ".sops.yaml"])
        .arg(copy.path())
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        copy.path().join("manifests/base/secrets/leak.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: leak}\nstringData: {password: leaked-value-123}\n",
    )
    .unwrap();
    let out = Cmd::credseal()
        .cwd(copy.path())
        .arg("check")
        .run()
        .code(230);
    out.never_shows("leaked-value-123");
    assert!(
        out.text().starts_with(
            "manifests/base/secrets/leak.yaml: document 1: plaintext-secret: Secret leak"
        ),
        "{}",
        out.text()
    );
}

#[test]
fn rotation_cronjob_and_plan() {
    let objects = render("manifests/base");
    let cron: CronJob = of_kind::<CronJob>(&objects, "CronJob")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("credseal-rotate"))
        .unwrap();
    assert_eq!(
        cron.spec.as_ref().unwrap().concurrency_policy.as_deref(),
        Some("Forbid")
    );
    let cm: ConfigMap = of_kind::<ConfigMap>(&objects, "ConfigMap")
        .into_iter()
        .find(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("credseal-rotation-plan"))
        })
        .unwrap();
    let plan = cm.data.unwrap()["rotation-plan.yaml"].clone();
    let plan =
        credseal::rotate::plan::Plan::parse(plan.as_bytes()).expect("the example plan is valid");
    assert_eq!(plan.credentials.len(), 2);
}

/// Every Secret a pod reads is made by the deploy hook (a document in the encrypted files) or
/// is the cluster key (`credseal cluster-key init`); none is a plaintext manifest.
#[test]
fn every_referenced_secret_is_produced_by_credseal() {
    let objects = render("manifests/base");
    let cm = encrypted_secrets(&objects);
    let mut produced: Vec<String> = vec!["sops-age".into()];
    for text in cm.data.unwrap().values() {
        for doc in yaml::parse(text.as_bytes()).unwrap().documents {
            let meta = doc.get("metadata").and_then(Node::as_map).unwrap();
            produced.push(meta.get("name").and_then(Node::as_str).unwrap().to_owned());
        }
    }
    for (pod, spec) in pod_specs(&objects) {
        let mut names = Vec::new();
        for v in spec.volumes.iter().flatten() {
            if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                names.push(s);
            }
        }
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for e in c.env.iter().flatten() {
                if let Some(r) = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                {
                    names.push(r.name.clone());
                }
            }
        }
        for n in names {
            assert!(
                produced.contains(&n),
                "{pod} reads Secret {n}, which nothing produces"
            );
        }
    }
}

/// The databases accept connections only from the named clients, whose pods carry those labels.
#[test]
fn network_policies_admit_only_named_clients() {
    let objects = render("manifests/base");
    let policies: Vec<NetworkPolicy> = of_kind(&objects, "NetworkPolicy");
    for (db, port, clients) in [
        (
            "postgres",
            5432,
            vec!["backend", "postgres-backup", "credseal-rotate"],
        ),
        ("redis", 6379, vec!["backend", "credseal-rotate"]),
    ] {
        let p = policies
            .iter()
            .find(|p| {
                p.spec
                    .as_ref()
                    .unwrap()
                    .pod_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .and_then(|l| l.get("app.kubernetes.io/name"))
                    .map(String::as_str)
                    == Some(db)
            })
            .unwrap_or_else(|| panic!("no policy selects {db}"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_owned()][..])
        );
        let rules = spec.ingress.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        let from: Vec<String> = rules[0]
            .from
            .iter()
            .flatten()
            .map(|peer| {
                assert!(
                    peer.namespace_selector.is_none() && peer.ip_block.is_none(),
                    "{db}: only pods of this namespace"
                );
                peer.pod_selector
                    .as_ref()
                    .unwrap()
                    .match_labels
                    .as_ref()
                    .unwrap()["app.kubernetes.io/name"]
                    .clone()
            })
            .collect();
        assert_eq!(from, clients, "{db}");
        let ports: Vec<_> = rules[0]
            .ports
            .iter()
            .flatten()
            .map(|p| p.port.clone())
            .collect();
        assert_eq!(
            ports,
            vec![Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)
            )]
        );
    }
    // The named clients exist as pod labels.
    let text = serde_json::to_string(&objects).unwrap();
    for client in ["backend", "postgres-backup", "credseal-rotate"] {
        assert!(
            text.contains(&format!("\"app.kubernetes.io/name\":\"{client}\"")),
            "{client}"
        );
    }
}

/// Rotation's consumer discovery over these manifests: the PostgreSQL credential's consumers are
/// the backend and the backup job (the database itself opted out of restarts).
#[test]
fn rotation_finds_the_consumers_of_the_postgres_credential() {
    let objects = render("manifests/base");
    let found = credseal::k8s::workloads::consumers(
        "platform-services",
        "postgres-credentials",
        &of_kind::<StatefulSet>(&objects, "StatefulSet"),
        &of_kind::<Deployment>(&objects, "Deployment"),
        &of_kind::<DaemonSet>(&objects, "DaemonSet"),
        &of_kind::<CronJob>(&objects, "CronJob"),
    );
    let names: Vec<String> = found
        .iter()
        .map(|w| format!("{}/{}", w.kind.as_str(), w.name))
        .collect();
    assert_eq!(names, ["Deployment/backend", "CronJob/postgres-backup"]);
}

/// The PostgreSQL init script as the postgres image runs it (its own file from the
/// ConfigMap, the app password from the mounted Secret, UID 70 in a read-only root) against a
/// real server: afterwards the application logs in with the rendered password, and the
/// password never reaches the server log.
#[test]
fn the_postgres_init_script_creates_the_app_role() {
    use crate::support::pod::Pod;
    use crate::support::servers::Postgres;
    let objects = render("manifests/base");
    let cm = of_kind::<ConfigMap>(&objects, "ConfigMap")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("postgres-init"))
        .expect("the postgres-init ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("initdb.d");
    std::fs::create_dir(&init).unwrap();
    for (name, body) in cm.data.unwrap() {
        crate::support::write(&init, &name, body);
        std::fs::set_permissions(
            init.join(&name),
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
    }
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    let password = "it's a 'quoted'; DROP ROLE postgres; --pw";
    crate::support::write(&app, "password", password);

    let pg = Postgres::start();
    pg.psql("CREATE DATABASE saas_platform").unwrap();
    let out = Pod::distro(70)
        .ro(&init, "/docker-entrypoint-initdb.d")
        .ro(&app, "/run/secrets/app")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGPASSWORD", &pg.superuser_password)
        .cmd_at(
            "/docker-entrypoint-initdb.d/10-app-role.sh",
            Vec::<String>::new(),
        )
        .run();
    assert_eq!(out.code, 0, "the init script failed: {}", out.stderr);
    assert!(
        pg.can_login("app_user", password),
        "app_user logs in with the mounted password"
    );
    assert!(
        !pg.log().contains("DROP ROLE"),
        "the password is not in the server log"
    );
    assert_eq!(
        pg.psql("SELECT has_database_privilege('app_user', 'saas_platform', 'CREATE')")
            .unwrap()
            .trim(),
        "t"
    );
}

/// When an object is applied in an Argo CD sync: (phase, wave). Helm hook annotations count
/// where Argo CD's own are absent, as Argo CD maps them.
fn argo_slot(o: &Value) -> (u8, i64) {
    let a = &o["metadata"]["annotations"];
    let hook = a["argocd.argoproj.io/hook"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            a["helm.sh/hook"].as_str().map(|h| {
                if h.contains("pre-install") || h.contains("pre-upgrade") {
                    "PreSync".into()
                } else {
                    "PostSync".into()
                }
            })
        });
    let phase = match hook.as_deref() {
        Some("PreSync") => 0,
        None | Some("Sync") => 1,
        Some(_) => 2,
    };
    let wave = a["argocd.argoproj.io/sync-wave"]
        .as_str()
        .map_or(0, |w| w.parse().unwrap());
    (phase, wave)
}

/// Helm: (is a pre-install and pre-upgrade hook, weight).
fn helm_slot(o: &Value) -> (bool, i64) {
    let a = &o["metadata"]["annotations"];
    let pre = a["helm.sh/hook"]
        .as_str()
        .is_some_and(|h| h.contains("pre-install") && h.contains("pre-upgrade"));
    let weight = a["helm.sh/hook-weight"]
        .as_str()
        .map_or(0, |w| w.parse().unwrap());
    (pre, weight)
}

/// On Argo CD and Helm the deploy hook runs after everything it reads (its ServiceAccount,
/// RBAC, the ConfigMap of this commit, the Namespace) and before every workload that reads a
/// Secret it applies: an empty cluster's first sync succeeds, and each sync applies its own
/// commit's Secrets.
#[test]
fn the_deploy_hook_runs_after_its_inputs_and_before_its_consumers() {
    for dir in [
        "manifests/base",
        "manifests/overlays/dev",
        "manifests/overlays/prod",
    ] {
        let objects = render(dir);
        let named = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{dir}: no {kind} {name}"))
                .clone()
        };
        let job = objects
            .iter()
            .find(|o| o["kind"] == "Job" && o["metadata"]["name"] == "credseal-apply")
            .unwrap()
            .clone();
        let spec: PodSpec =
            serde_json::from_value(job["spec"]["template"]["spec"].clone()).unwrap();
        let sa = spec.service_account_name.clone().unwrap();
        let mut inputs = vec![named("ServiceAccount", &sa)];
        for rb in objects.iter().filter(|o| o["kind"] == "RoleBinding") {
            let binds_sa = rb["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa.as_str());
            if binds_sa {
                inputs.push(rb.clone());
                inputs.push(named("Role", rb["roleRef"]["name"].as_str().unwrap()));
            }
        }
        for v in spec.volumes.iter().flatten() {
            if let Some(cm) = &v.config_map {
                inputs.push(named("ConfigMap", &cm.name));
            }
        }
        assert!(
            inputs.len() >= 4,
            "{dir}: SA, RoleBinding, Role, ConfigMap found"
        );
        let namespace = named("Namespace", job["metadata"]["namespace"].as_str().unwrap());

        // The Secrets the hook applies, and the workloads that read them.
        let applied: Vec<String> = encrypted_secrets(&objects)
            .data
            .unwrap()
            .values()
            .map(|f| {
                let doc = &yaml::parse(f.as_bytes()).unwrap().documents[0];
                doc.get("metadata")
                    .unwrap()
                    .as_map()
                    .unwrap()
                    .get("name")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let consumers: Vec<(String, Value)> = pod_specs(&objects)
            .into_iter()
            .filter(|(_, spec)| {
                applied
                    .iter()
                    .any(|s| credseal::k8s::workloads::references_secret(spec, s))
            })
            .map(|(name, _)| {
                let o = objects
                    .iter()
                    .find(|o| {
                        o["metadata"]["name"] == name.as_str() && o["spec"]["template"].is_object()
                            || o["metadata"]["name"] == name.as_str() && o["kind"] == "CronJob"
                    })
                    .unwrap()
                    .clone();
                (name, o)
            })
            .collect();
        assert!(
            consumers.len() >= 3,
            "{dir}: postgres, redis, backup read them"
        );

        // Argo CD.
        let at = argo_slot(&job);
        assert_eq!(
            at.0, 1,
            "{dir}: the hook runs in the Sync phase, after the Namespace exists"
        );
        assert!(argo_slot(&namespace) < at, "{dir}: the Namespace first");
        for i in &inputs {
            assert!(
                argo_slot(i) < at,
                "{dir}: {} {} before the hook",
                i["kind"],
                i["metadata"]["name"]
            );
            assert!(
                argo_slot(i) > argo_slot(&namespace),
                "{dir}: {} {} after its Namespace",
                i["kind"],
                i["metadata"]["name"]
            );
        }
        for (name, c) in &consumers {
            assert!(argo_slot(c) > at, "{dir}: {name} after the hook");
        }
        // Helm.
        let (pre, weight) = helm_slot(&job);
        assert!(pre, "{dir}: the Job is a pre-install/pre-upgrade hook");
        for i in &inputs {
            let (pre, w) = helm_slot(i);
            assert!(
                pre && w < weight,
                "{dir}: {} {} is an earlier Helm hook",
                i["kind"],
                i["metadata"]["name"]
            );
        }
        for (name, c) in &consumers {
            assert!(
                !helm_slot(c).0,
                "{dir}: {name} is a release resource, installed after the hooks"
            );
        }
    }
}

/// The backup CronJob as the postgres image runs it (its command, env and Secret refs, UID
/// 70, the claim mounted at /backup, the Service name resolved to the test's server): the dump
/// lands on the claim complete, only the newest BACKUP_KEEP stay, and it restores.
#[test]
fn the_backup_job_keeps_the_newest_dumps_and_they_restore() {
    use crate::support::pod::Pod;
    use crate::support::servers::Postgres;
    let objects = render("manifests/base");
    let spec = pod_spec(&objects, "postgres-backup");
    let claim = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "backup")
        .unwrap()
        .persistent_volume_claim
        .as_ref()
        .expect("backups on a PersistentVolumeClaim")
        .claim_name
        .clone();
    assert!(
        objects.iter().any(
            |o| o["kind"] == "PersistentVolumeClaim" && o["metadata"]["name"] == claim.as_str()
        ),
        "the claim {claim} is rendered"
    );

    let pg = Postgres::start();
    pg.create_role("app_user", "backup-test-pw");
    pg.psql("CREATE DATABASE saas_platform OWNER app_user")
        .unwrap();
    let app_psql = |db: &str, sql: &str| {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "app_user",
                "-d",
                db,
            ])
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", "backup-test-pw")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    app_psql(
        "saas_platform",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
    );

    let backup = tempfile::tempdir().unwrap();
    for day in 1..=8 {
        crate::support::write(
            backup.path(),
            &format!("saas_platform-202001{day:02}T000000Z.dump"),
            "old",
        );
    }
    crate::support::write(
        backup.path(),
        ".saas_platform-20200109T000000Z.dump.partial",
        "cut off",
    );
    let credentials = tempfile::tempdir().unwrap();
    crate::materialize::kubelet_update(
        credentials.path(),
        &[
            ("username", b"app_user".to_vec()),
            ("password", b"backup-test-pw".to_vec()),
        ],
    );
    let out = Pod::distro(0)
        .host("postgres.platform-services.svc.cluster.local", "127.0.0.1")
        // The test's server listens on a free port, not 5432.
        .env("PGPORT", pg.port.to_string())
        .container(
            &spec.containers[0],
            &[
                ("backup", backup.path()),
                ("credentials", credentials.path()),
            ],
            &|_, _| None,
        )
        .run();
    assert_eq!(out.code, 0, "the backup failed: {}", out.stderr);
    let mut names: Vec<String> = std::fs::read_dir(backup.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        7,
        "the newest 7 dumps, no partial file: {names:?}"
    );
    assert_eq!(names[0], "saas_platform-20200103T000000Z.dump", "{names:?}");
    let newest = backup.path().join(names.last().unwrap());
    assert!(
        !names.last().unwrap().starts_with("saas_platform-2020"),
        "{names:?}"
    );

    // README's restore: pg_restore into an empty database.
    pg.psql("CREATE DATABASE restored OWNER app_user").unwrap();
    let out = std::process::Command::new("pg_restore")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "app_user",
            "--no-owner",
            "-d",
            "restored",
        ])
        .arg(&newest)
        .env("PGPASSWORD", "backup-test-pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app_psql("restored", "SELECT v FROM t"), "kept");
}

/// Every kustomization renders objects that the Kubernetes 1.29 and 1.33 schemas accept,
/// strictly (no unknown fields). Custom resources (CloudNativePG's Cluster) have no schema
/// there and are only reported.
#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    let dirs = [
        "manifests/base",
        "manifests/overlays/dev",
        "manifests/overlays/prod",
        "manifests/examples/cnpg",
        "manifests/examples/managed-postgres",
        "manifests/examples/redis-sentinel",
        "manifests/examples/sops-sidecar",
    ];
    let tmp = tempfile::tempdir().unwrap();
    for dir in dirs {
        let rendered = Cmd::tool("kubectl")
            .arg("kustomize")
            .arg(repo().join(dir))
            .run()
            .ok();
        let file = crate::support::write(tmp.path(), "rendered.yaml", rendered.stdout);
        for version in ["1.29.0", "1.33.0"] {
            let out = Cmd::tool("kubernetes-validate")
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .run();
            let report = format!("{}{}", out.text(), out.stderr);
            let unexpected: Vec<&str> = report
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| !(l.starts_with("WARN") && l.contains("postgresql.cnpg.io")))
                .collect();
            assert!(
                out.code == 0 && unexpected.is_empty(),
                "{dir} against {version}:\n{report}"
            );
        }
    }
}

/// The rotator's Job is bounded in time: with `concurrencyPolicy: Forbid`, one hung run
/// would otherwise block every later rotation.
#[test]
fn the_rotator_job_has_a_deadline() {
    for dir in [
        "manifests/base",
        "manifests/examples/cnpg",
        "manifests/examples/managed-postgres",
        "manifests/examples/redis-sentinel",
    ] {
        let objects = render(dir);
        let cron: CronJob = of_kind::<CronJob>(&objects, "CronJob")
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some("credseal-rotate"))
            .unwrap_or_else(|| panic!("{dir}: no rotator"));
        let spec = cron.spec.unwrap();
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"), "{dir}");
        let deadline = spec.job_template.spec.unwrap().active_deadline_seconds;
        assert!(
            deadline.is_some_and(|d| d > 0 && d <= 6 * 3600),
            "{dir}: {deadline:?}"
        );
    }
}

/// `rotate --print-role` lists the calls the code makes (the same list the permission
/// preflight asks about); every shipped rotator Role grants each of them, and the README shows
/// the base plan's output as it is.
#[test]
fn every_rotator_role_grants_what_the_code_says_it_calls() {
    for (dir, plan) in [
        ("manifests/base", "manifests/base/rotation-plan.yaml"),
        (
            "manifests/examples/cnpg",
            "manifests/examples/cnpg/rotation-plan.yaml",
        ),
        (
            "manifests/examples/managed-postgres",
            "manifests/examples/managed-postgres/rotation-plan.yaml",
        ),
        (
            "manifests/examples/redis-sentinel",
            "manifests/examples/redis-sentinel/rotation-plan.yaml",
        ),
    ] {
        let printed = Cmd::credseal()
            .args(["rotate", "--print-role", "--plan"])
            .arg(repo().join(plan))
            .run()
            .ok()
            .text();
        if dir == "manifests/base" {
            let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
            assert!(
                readme.contains(&printed),
                "the README shows `credseal rotate --plan {plan} --print-role` as it is:\n{printed}"
            );
        }
        let wanted =
            Node::Map(yaml::parse(printed.as_bytes()).unwrap().documents.remove(0)).to_json();
        let objects = render(dir);
        let role: Role = of_kind::<Role>(&objects, "Role")
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some("credseal-rotator"))
            .unwrap_or_else(|| panic!("{dir}: no rotator Role"));
        let granted = |group: &str, resource: &str, name: Option<&str>, verb: &str| {
            role.rules.iter().flatten().any(|r| {
                let has = |list: Option<&Vec<String>>, want: &str| {
                    list.is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
                };
                has(r.api_groups.as_ref(), group)
                    && has(r.resources.as_ref(), resource)
                    && r.verbs.iter().any(|v| v == verb || v == "*")
                    && match (&r.resource_names, name) {
                        (None, _) => true,
                        (Some(n), _) if n.is_empty() => true,
                        (Some(n), Some(name)) => n.iter().any(|x| x == name),
                        (Some(_), None) => false,
                    }
            })
        };
        for rule in wanted["rules"].as_array().unwrap() {
            let s = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default()
            };
            let names = s("resourceNames");
            let names: Vec<Option<&str>> = if names.is_empty() {
                vec![None]
            } else {
                names.iter().map(|n| Some(n.as_str())).collect()
            };
            for verb in s("verbs") {
                for name in &names {
                    assert!(
                        granted(&s("apiGroups")[0], &s("resources")[0], *name, &verb),
                        "{dir}: the Role does not grant {verb} {}/{name:?}",
                        s("resources")[0]
                    );
                }
            }
        }
    }
}
