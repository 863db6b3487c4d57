//! The examples in `manifests/examples`, as shipped: each renders with the real kustomize, is
//! loaded into the API fake with its RBAC enforced, gets its Secrets the way its README says
//! (`credseal apply -n NS -f secrets` by an admin, its namespace's own key as `sops-age`), and its
//! credseal containers run through the pod runner (empty read-only root, its mounts, UID,
//! ServiceAccount token, Service names in /etc/hosts) against real servers on their real ports:
//! the CloudNativePG rotator with the test playing the operator, the managed-PostgreSQL
//! rotator over verify-full TLS, the Redis+Sentinel rotator against Redis and Sentinel started
//! from the example's own init containers, and the in-pod decryption example's sidecar and init
//! container with the stand-in apps' readiness probes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{Value, json};

use credseal::sops::tree::Node;
use credseal::sops::yaml;

use crate::manifests::{assert_restricted, of_kind, pod_specs, render};
use crate::materialize::eventually;
use crate::support::kube_api::KubeApi;
use crate::support::kubelet::volume;
use crate::support::pod::Pod;
use crate::support::servers::{Postgres, redis_cli_at, redis_server, wait_for};
use crate::support::{Cmd, Out, Running, b64, unb64};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (directory, namespace) of every example.
const EXAMPLES: [(&str, &str); 4] = [
    ("manifests/examples/cnpg", "databases"),
    ("manifests/examples/managed-postgres", "managed-postgres"),
    ("manifests/examples/redis-sentinel", "cache"),
    ("manifests/examples/sops-sidecar", "payments"),
];

/// The admin's key (in every `.sops.yaml` rule), on an admin's machine.
fn admin_key() -> PathBuf {
    repo().join("keys-example/age.agekey")
}

/// Secrets made outside credseal: the cluster key, and CloudNativePG's CA.
const MADE_ELSEWHERE: [&str; 2] = ["sops-age", "pg-ca"];

/// The names of the Secrets in the example's encrypted files.
fn encrypted_secrets(dir: &str) -> Vec<String> {
    let mut names = Vec::new();
    for p in crate::support::files_ending(&repo().join(dir), ".enc.yaml") {
        let tree = yaml::parse(&std::fs::read(&p).unwrap()).unwrap();
        for doc in tree.documents {
            let meta = doc.get("metadata").and_then(Node::as_map).unwrap();
            names.push(meta.get("name").and_then(Node::as_str).unwrap().to_owned());
        }
    }
    names
}

/// An example deployed as its kustomization's header says: rendered objects loaded into the
/// fake (RBAC included), the namespace's own key as `sops-age`, its encrypted Secrets applied
/// by an admin with `credseal apply`.
struct Deployed {
    objects: Vec<Value>,
    api: KubeApi,
    ns: &'static str,
    _dir: tempfile::TempDir,
}

fn deploy(dir: &str, ns: &'static str) -> Deployed {
    let objects = render(dir);
    let api = KubeApi::start();
    api.load(&objects);
    let key = std::fs::read_to_string(repo().join(format!("keys-example/{ns}.agekey"))).unwrap();
    api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sops-age", "namespace": ns},
               "data": {"age.agekey": b64(&key)}}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let secrets = repo().join(dir).join("secrets");
    if secrets.is_dir() {
        // An admin's kubeconfig, whose context namespace is not the example's.
        let kubeconfig = api.kubeconfig(tmp.path(), "default");
        Cmd::credseal()
            .env("KUBECONFIG", &kubeconfig)
            .key(admin_key())
            .args(["apply", "-n", ns, "-f"])
            .arg(&secrets)
            .run()
            .ok();
    }
    Deployed {
        objects,
        api,
        ns,
        _dir: tmp,
    }
}

impl Deployed {
    fn secret(&self, name: &str, key: &str) -> String {
        unb64(&self.api.get("secrets", self.ns, name).unwrap()["data"][key])
    }

    /// The rotator CronJob's pod spec.
    fn rotator(&self) -> PodSpec {
        crate::manifests::pod_spec(&self.objects, "credseal-rotate")
    }

    /// The rotator as its CronJob runs it: in-cluster as its ServiceAccount, its volumes laid
    /// out by the kubelet (`volumes` overrides some), env from Secrets, names in /etc/hosts.
    fn run_rotator(&self, hosts: &[(String, String)], volumes: &[(&str, &Path)]) -> Out {
        let spec = self.rotator();
        let sa = self
            .api
            .service_account(self.ns, spec.service_account_name.as_deref().unwrap());
        let laid: Vec<(String, tempfile::TempDir)> = spec
            .volumes
            .iter()
            .flatten()
            .filter(|v| !volumes.iter().any(|(n, _)| *n == v.name))
            .map(|v| {
                let d = volume(&self.api, &self.objects, &spec, &v.name, self.ns);
                (v.name.clone(), d)
            })
            .collect();
        let mut all: Vec<(&str, &Path)> =
            laid.iter().map(|(n, d)| (n.as_str(), d.path())).collect();
        all.extend_from_slice(volumes);
        let mut pod = Pod::credseal_under_test()
            .namespace(self.ns)
            .in_cluster(&self.api, sa.path());
        for (name, ip) in hosts {
            pod = pod.host(name, ip);
        }
        pod.container(&spec.containers[0], &all, &|name, key| {
            let s = self.api.get("secrets", self.ns, name)?;
            s["data"][key].as_str().map(|_| unb64(&s["data"][key]))
        })
        .run()
    }
}

fn config_map(objects: &[Value], name: &str) -> ConfigMap {
    of_kind::<ConfigMap>(objects, "ConfigMap")
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

/// The Service a cluster DNS name points at: `svc.ns.svc.cluster.local`, or a pod's
/// `pod.svc.ns.svc.cluster.local`.
fn service_of(host: &str, ns: &str) -> Option<String> {
    let suffix = format!(".{ns}.svc.cluster.local");
    let head = host.strip_suffix(&suffix)?;
    Some(head.rsplit('.').next().unwrap().to_owned())
}

/// Every example applies as shipped: its objects in its own namespace (a Namespace at the
/// restricted level), restricted pods on public images, every ConfigMap and Secret its pods
/// mount made by the example (or the cluster key), Roles with named resources only; a rotator
/// CronJob bound to its Role, mounting the plan ConfigMap kustomize generated (hashed name) and
/// every file and env the plan reads; the Services its plan names; NetworkPolicies that admit
/// its rotator and clients.
#[test]
fn every_example_ships_what_it_runs_on() {
    for (dir, ns) in EXAMPLES {
        let objects = render(dir);
        for o in &objects {
            if o["kind"] == "Namespace" {
                assert_eq!(o["metadata"]["name"], ns, "{dir}");
                assert_eq!(
                    o["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
                    "{dir}"
                );
            } else {
                assert_eq!(o["metadata"]["namespace"], ns, "{dir}: {o}");
            }
            assert_ne!(o["kind"], "Secret", "{dir}: no plaintext Secret objects");
        }
        let produced = encrypted_secrets(dir);
        let maps: Vec<String> = of_kind::<ConfigMap>(&objects, "ConfigMap")
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        let pods = pod_specs(&objects);
        assert!(!pods.is_empty(), "{dir}");
        for (name, spec) in &pods {
            for c in containers(spec) {
                assert_restricted(name, spec, c);
                let image = c.image.as_deref().unwrap();
                assert!(
                    !image.contains("ghcr.io/credseal/example"),
                    "{dir}: {name}/{}: {image} is built by nothing",
                    c.name
                );
                for e in c.env.iter().flatten() {
                    if let Some(r) = e
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                    {
                        assert!(produced.contains(&r.name), "{dir}: {name} env {}", r.name);
                    }
                }
            }
            for v in spec.volumes.iter().flatten() {
                if let Some(cm) = &v.config_map {
                    assert!(maps.contains(&cm.name), "{dir}: {name} mounts {}", cm.name);
                }
                if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
                    assert!(
                        produced.contains(&s) || MADE_ELSEWHERE.contains(&s.as_str()),
                        "{dir}: {name} mounts Secret {s}, which nothing makes"
                    );
                }
            }
        }
        for role in of_kind::<Role>(&objects, "Role") {
            for rule in role.rules.unwrap_or_default() {
                assert!(
                    !rule
                        .verbs
                        .iter()
                        .chain(rule.resources.iter().flatten())
                        .any(|s| s.contains('*')),
                    "{dir}: no wildcards: {rule:?}"
                );
                let named = rule.resource_names.as_ref().is_some_and(|n| !n.is_empty());
                assert!(
                    named || rule.verbs.iter().all(|v| v == "list" || v == "create"),
                    "{dir}: named resources: {rule:?}"
                );
            }
        }
        if dir.ends_with("sops-sidecar") {
            continue; // decrypts in the pod; nothing to rotate
        }

        // The rotator.
        let spec = crate::manifests::pod_spec(&objects, "credseal-rotate");
        let sa = spec.service_account_name.clone().unwrap();
        let binding = of_kind::<RoleBinding>(&objects, "RoleBinding")
            .into_iter()
            .find(|b| {
                b.subjects
                    .iter()
                    .flatten()
                    .any(|s| s.kind == "ServiceAccount" && s.name == sa)
            })
            .unwrap_or_else(|| panic!("{dir}: {sa} is bound to no Role"));
        assert!(
            of_kind::<Role>(&objects, "Role")
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())),
            "{dir}: the Role {} is rendered",
            binding.role_ref.name
        );
        let plan_volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "plan")
            .and_then(|v| v.config_map.clone())
            .unwrap();
        assert!(
            plan_volume.name.starts_with("credseal-rotation-plan-"),
            "{dir}: the CronJob mounts the generated (hashed) plan: {}",
            plan_volume.name
        );
        let plan =
            config_map(&objects, &plan_volume.name).data.unwrap()["rotation-plan.yaml"].clone();
        let parsed = credseal::rotate::plan::Plan::parse(plan.as_bytes())
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        // What the plan says, without its comments.
        let plan: String = plan
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!parsed.credentials.is_empty());
        let c = &spec.containers[0];
        let mounts: Vec<String> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();
        for word in plan.split(|ch: char| ch.is_whitespace() || "{},&?=".contains(ch)) {
            if let Some(path) = word.strip_prefix("/etc/credseal/") {
                let path = format!("/etc/credseal/{path}");
                assert!(
                    mounts.iter().any(|m| path.starts_with(&format!("{m}/"))),
                    "{dir}: the plan reads {path}, which the CronJob does not mount"
                );
            }
        }
        for (i, _) in plan.match_indices("{env: ") {
            let name = plan[i + 6..].split('}').next().unwrap().trim();
            assert!(
                c.env.iter().flatten().any(|e| e.name == name),
                "{dir}: the plan reads ${name}, which the CronJob does not set"
            );
        }
        for word in plan.split(|ch: char| ch.is_whitespace() || "@:/,".contains(ch)) {
            if let Some(service) = service_of(word, ns) {
                let ours = objects
                    .iter()
                    .any(|o| o["kind"] == "Service" && o["metadata"]["name"] == service.as_str());
                // CloudNativePG makes <cluster>-rw itself.
                assert!(
                    ours || service == "pg-rw",
                    "{dir}: the plan names the Service {service}, which is not rendered"
                );
            }
        }
        let labels = of_kind::<CronJob>(&objects, "CronJob")[0]
            .clone()
            .spec
            .unwrap()
            .job_template
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "credseal-rotate");
        // Every NetworkPolicy admits the rotator, and names only pods that exist.
        let pod_names: BTreeSet<String> = serde_json::to_string(&objects)
            .unwrap()
            .split("\"app.kubernetes.io/name\":\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_owned())
            .collect();
        for p in of_kind::<NetworkPolicy>(&objects, "NetworkPolicy") {
            let from: Vec<String> = p.spec.unwrap().ingress.unwrap()[0]
                .from
                .iter()
                .flatten()
                .filter(|peer| peer.namespace_selector.is_none())
                .map(|peer| {
                    peer.pod_selector
                        .as_ref()
                        .unwrap()
                        .match_labels
                        .as_ref()
                        .unwrap()["app.kubernetes.io/name"]
                        .clone()
                })
                .collect();
            assert!(
                from.contains(&"credseal-rotate".to_owned()),
                "{dir}: {from:?}"
            );
            for f in &from {
                assert!(pod_names.contains(f), "{dir}: no pod {f}");
            }
        }
    }
    // Redis with Sentinel: replication and monitoring pass the policies, and the Service the
    // plan and REDIS_URL clients use exists.
    let sentinel = render("manifests/examples/redis-sentinel");
    let policies = of_kind::<NetworkPolicy>(&sentinel, "NetworkPolicy");
    let admits = |policy: &str, who: &str| {
        policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(policy))
            .unwrap()
            .spec
            .clone()
            .unwrap()
            .ingress
            .unwrap()[0]
            .from
            .iter()
            .flatten()
            .any(|peer| {
                peer.pod_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|l| l.values().any(|v| v == who))
            })
    };
    for (policy, who) in [
        ("redis-clients", "redis"),
        ("redis-clients", "redis-sentinel"),
        ("redis-sentinel-clients", "redis-sentinel"),
    ] {
        assert!(admits(policy, who), "{policy} admits {who}");
    }
    for set in of_kind::<StatefulSet>(&sentinel, "StatefulSet") {
        assert_eq!(
            set.metadata.annotations.unwrap()["credseal.dev/roll"],
            "never"
        );
    }
}

const CNPG_IP: &str = "127.0.4.1";
const MANAGED_IP: &str = "127.0.4.2";

/// The CA volume of a rotator, holding `ca` under `file`.
fn ca_dir(ca: &Path, file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::materialize::kubelet_update(dir.path(), &[(file, std::fs::read(ca).unwrap())]);
    dir
}

/// CloudNativePG: the rotator writes the new password only to `app-role` and succeeds once the
/// operator (played by the test: it applies the Secret's password to the role) has applied it,
/// verified over verify-full TLS with the operator's CA mounted from `pg-ca` (ca.crt only).
#[test]
fn the_cnpg_rotator_waits_for_the_operator_over_verify_full() {
    let d = deploy("manifests/examples/cnpg", "databases");
    let old = d.secret("app-role", "password");
    assert_eq!(d.secret("app-role", "username"), "app");
    let pg = Arc::new(Postgres::start_tls_at(
        CNPG_IP,
        5432,
        "pg-rw.databases.svc.cluster.local",
    ));
    pg.create_role("app", &old);
    pg.psql("CREATE DATABASE app OWNER app").unwrap();
    // The operator's CA Secret: the certificate and its private key.
    let ca_pem = std::fs::read_to_string(pg.ca.as_ref().unwrap()).unwrap();
    d.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "pg-ca", "namespace": "databases"},
               "data": {"ca.crt": b64(&ca_pem), "ca.key": b64("the CA's private key")}}),
    );
    let ca = volume(&d.api, &d.objects, &d.rotator(), "ca", "databases");
    assert!(ca.path().join("ca.crt").exists());
    assert!(
        !ca.path().join("ca.key").exists(),
        "the CA's private key is not projected"
    );

    // The operator applies the password of app-role to the role `app`.
    let stop = Arc::new(AtomicBool::new(false));
    let api = Arc::new(d);
    let operator = {
        let (api, pg, stop) = (api.clone(), pg.clone(), stop.clone());
        let mut applied = old.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let want = api.secret("app-role", "password");
                if want != applied {
                    std::thread::sleep(Duration::from_millis(500));
                    let verifier = postgres_protocol::password::scram_sha_256(want.as_bytes());
                    pg.psql(&format!("ALTER ROLE app PASSWORD '{verifier}'"))
                        .unwrap();
                    applied = want;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let out = api.run_rotator(
        &[(
            "pg-rw.databases.svc.cluster.local".into(),
            CNPG_IP.to_owned(),
        )],
        &[],
    );
    stop.store(true, Ordering::Relaxed);
    operator.join().unwrap();
    assert_eq!(out.code, 0, "the rotator failed: {}", out.stderr);
    assert_eq!(out.text(), "cnpg-app: rotated (generation 1)\n");
    let new = api.secret("app-role", "password");
    out.never_shows(&new);
    out.never_shows(&old);
    assert_ne!(new, old);
    assert!(pg.can_login("app", &new), "the operator's password logs in");
    assert!(!pg.can_login("app", &old));
    assert_eq!(
        pg.log().matches("ALTER ROLE").count(),
        1,
        "only the operator changed the role"
    );
}

/// Managed PostgreSQL: the rotator, with the admin password from `managed-postgres-admin` in
/// its env and the provider's CA mounted from the ConfigMap, alternates the app role over
/// verify-full TLS. With the shipped CA (the real DigiCert root, which did not sign the test
/// server) it refuses before changing anything: the CA is what it verifies with.
#[test]
fn the_managed_postgres_rotator_alternates_over_verify_full() {
    let d = deploy("manifests/examples/managed-postgres", "managed-postgres");
    let host = "example-server.postgres.database.azure.com";
    let pg = Postgres::start_tls_at(MANAGED_IP, 5432, host);
    pg.psql("CREATE DATABASE saas_platform").unwrap();
    let admin = d.secret("managed-postgres-admin", "password");
    let verifier = postgres_protocol::password::scram_sha_256(admin.as_bytes());
    pg.psql(&format!(
        "CREATE ROLE credseal_admin LOGIN CREATEROLE PASSWORD '{verifier}'"
    ))
    .unwrap();
    let old = d.secret("managed-postgres-credentials", "password");
    pg.create_role("app_user", &old);
    pg.psql("GRANT app_user TO credseal_admin WITH ADMIN OPTION")
        .unwrap();
    let hosts = [(host.to_owned(), MANAGED_IP.to_owned())];

    // As shipped, the provider's root: the test server's certificate does not chain to it.
    let refused = d.run_rotator(&hosts, &[]);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);
    assert_eq!(d.secret("managed-postgres-credentials", "password"), old);

    // The test server's CA in the file the plan names.
    let ca = ca_dir(pg.ca.as_ref().unwrap(), "DigiCertGlobalRootG2.crt.pem");
    let out = d.run_rotator(&hosts, &[("ca", ca.path())]);
    assert_eq!(out.code, 0, "the rotator failed: {}", out.stderr);
    assert_eq!(out.text(), "managed-app-db: rotated (generation 1)\n");
    out.never_shows(&admin);
    let user = d.secret("managed-postgres-credentials", "username");
    let new = d.secret("managed-postgres-credentials", "password");
    out.never_shows(&new);
    assert!(user == "app_user_a" || user == "app_user_b", "{user}");
    assert!(pg.can_login(&user, &new), "the new role logs in");
    assert!(
        pg.can_login("app_user", &old),
        "the old role keeps working through the roll"
    );
}

const REDIS_IPS: [&str; 3] = ["127.0.5.1", "127.0.5.2", "127.0.5.3"];
const SENTINEL_IPS: [&str; 3] = ["127.0.5.11", "127.0.5.12", "127.0.5.13"];

/// Redis and Sentinel: three nodes and three Sentinels started from the example's own init
/// containers and container args (the Secret the admin applied, the pod's hostname and
/// namespace, cluster DNS names in /etc/hosts), each on its own loopback address; then the
/// rotator, as its CronJob runs it, changes the password on every node, the replicas'
/// masterauth and the Sentinels' auth-pass, and retires the old one.
#[test]
fn the_redis_sentinel_rotator_rotates_every_node_and_sentinel() {
    let d = deploy("manifests/examples/redis-sentinel", "cache");
    let ns = "cache";
    let old = d.secret("redis-credentials", "password");
    let mut hosts: Vec<(String, String)> = Vec::new();
    for (i, ip) in REDIS_IPS.iter().enumerate() {
        hosts.push((
            format!("redis-{i}.redis-headless.{ns}.svc.cluster.local"),
            ip.to_string(),
        ));
    }
    for (i, ip) in SENTINEL_IPS.iter().enumerate() {
        hosts.push((
            format!("redis-sentinel-{i}.redis-sentinel-headless.{ns}.svc.cluster.local"),
            ip.to_string(),
        ));
    }
    hosts.push((
        format!("redis.{ns}.svc.cluster.local"),
        REDIS_IPS[0].to_owned(),
    ));
    let logs = tempfile::tempdir().unwrap();
    let mut running: Vec<Running> = Vec::new();
    let mut data_dirs = Vec::new();
    for (set, ips, extra) in [
        ("redis", REDIS_IPS, vec![]),
        ("redis-sentinel", SENTINEL_IPS, vec!["--sentinel"]),
    ] {
        let spec = crate::manifests::pod_spec(&d.objects, set);
        let password = volume(&d.api, &d.objects, &spec, "password", ns);
        for (i, ip) in ips.iter().enumerate() {
            let pod = || {
                let mut p = Pod::distro(999)
                    .namespace(ns)
                    .env("HOSTNAME", format!("{set}-{i}"));
                for (name, ip) in &hosts {
                    p = p.host(name, ip);
                }
                p
            };
            let data = tempfile::tempdir().unwrap();
            let init = &spec.init_containers.as_ref().unwrap()[0];
            let out = pod()
                .container(
                    init,
                    &[("data", data.path()), ("password", password.path())],
                    &|_, _| None,
                )
                .run();
            assert_eq!(out.code, 0, "{set}-{i} init: {}", out.stderr);
            // The server container as the image runs it; the pod's own address stands in for
            // its network namespace.
            let mut server = spec.containers[0].clone();
            server.command = Some(vec![redis_server().to_owned()]);
            let mut args = server.args.clone().unwrap();
            args.extend(extra.iter().map(|s| s.to_string()));
            args.extend(["--bind".to_owned(), ip.to_string()]);
            server.args = Some(args);
            running.push(
                pod()
                    .container(&server, &[("data", data.path())], &|_, _| None)
                    .spawn(Some(&logs.path().join(format!("{set}-{i}.log")))),
            );
            data_dirs.push(data);
        }
    }
    for ip in REDIS_IPS {
        wait_for(ip, 6379, "redis");
    }
    for ip in SENTINEL_IPS {
        wait_for(ip, 26379, "redis-sentinel");
    }
    let replicas_linked = |password: &str| {
        REDIS_IPS[1..].iter().all(|ip| {
            redis_cli_at(ip, 6379, Some(password), &["INFO", "replication"])
                .contains("master_link_status:up")
        })
    };
    let sentinels_see_all = || {
        SENTINEL_IPS.iter().all(|ip| {
            let master = redis_cli_at(ip, 26379, None, &["SENTINEL", "MASTER", "mymaster"]);
            let replicas = redis_cli_at(ip, 26379, None, &["SENTINEL", "REPLICAS", "mymaster"]);
            master.contains("flags\nmaster\n")
                && replicas.contains("redis-1.redis-headless")
                && replicas.contains("redis-2.redis-headless")
        })
    };
    let end = Instant::now() + Duration::from_secs(60);
    while !(replicas_linked(&old) && sentinels_see_all()) {
        assert!(
            Instant::now() < end,
            "the set did not come up: {:?}",
            std::fs::read_dir(logs.path())
                .unwrap()
                .flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let out = d.run_rotator(&hosts, &[]);
    assert_eq!(out.code, 0, "the rotator failed: {}", out.stderr);
    assert_eq!(out.text(), "cache: rotated (generation 1)\n");
    let new = d.secret("redis-credentials", "password");
    assert_ne!(new, old);
    out.never_shows(&new);
    out.never_shows(&old);
    for ip in REDIS_IPS {
        assert_eq!(
            redis_cli_at(ip, 6379, Some(&new), &["PING"]).trim(),
            "PONG",
            "{ip}"
        );
        assert_ne!(
            redis_cli_at(ip, 6379, Some(&old), &["PING"]).trim(),
            "PONG",
            "{ip}: the old password is retired"
        );
    }
    eventually("replicas linked with the new masterauth", || {
        replicas_linked(&new)
    });
    eventually(
        "Sentinels see a healthy master with the new auth-pass",
        sentinels_see_all,
    );
    // Persisted where each node restarts from (the init containers write only on first boot).
    for data in &data_dirs {
        let dir = data.path();
        for conf in ["redis.conf", "sentinel.conf"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(conf)) {
                assert!(!text.contains(&old), "{conf} keeps no old password");
            }
        }
    }
    drop(running);
}

/// In-pod decryption in the namespace payments: each credseal container runs with its own
/// arguments and mounts, the payments namespace's key as `sops-age`, and renders the files
/// the stand-in apps read; each stand-in's readiness probe fails before and passes after.
/// The key and the SOPS files reach only credseal, the values only a memory volume.
#[test]
fn the_sops_sidecar_example_renders_what_its_stand_in_apps_read() {
    let d = deploy("manifests/examples/sops-sidecar", "payments");
    let deployments = of_kind::<Deployment>(&d.objects, "Deployment");
    assert_eq!(deployments.len(), 2);
    let mut sidecars = 0;
    for dep in deployments {
        let name = dep.metadata.name.clone().unwrap();
        let spec = dep.spec.unwrap().template.spec.unwrap();
        let volumes = spec.volumes.clone().unwrap();
        let vol = |n: &str| volumes.iter().find(|v| v.name == n).unwrap().clone();
        assert_eq!(
            vol("credentials").empty_dir.unwrap().medium.as_deref(),
            Some("Memory"),
            "{name}: values only on a memory volume"
        );
        assert_eq!(
            vol("cluster-key").secret.unwrap().secret_name.as_deref(),
            Some("sops-age")
        );
        for c in &spec.containers {
            assert!(
                c.volume_mounts
                    .iter()
                    .flatten()
                    .all(|m| m.name == "credentials" && m.read_only == Some(true)),
                "{name}/{}: sees only the rendered values, read-only",
                c.name
            );
        }
        let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
        let sops = volume(&d.api, &d.objects, &spec, "sops-files", "payments");
        let key = volume(&d.api, &d.objects, &spec, "cluster-key", "payments");
        let rendered = tempfile::tempdir().unwrap();
        let app = &spec.containers[0];
        let ready = || {
            let probe = app.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
            let mut as_probe = app.clone();
            as_probe.command = probe.command.clone();
            as_probe.args = None;
            Pod::distro(0)
                .fs_group(fs_group)
                .own_network()
                .container(&as_probe, &[("credentials", rendered.path())], &|_, _| None)
                .run()
        };
        assert_ne!(ready().code, 0, "{name}: not ready before the render");
        let credseal = &spec.init_containers.as_ref().unwrap()[0];
        let pod = Pod::credseal_under_test()
            .namespace("payments")
            .fs_group(fs_group)
            .own_network();
        let mounts = [
            ("sops-files", sops.path()),
            ("cluster-key", key.path()),
            ("credentials", rendered.path()),
        ];
        let _sidecar = if credseal.restart_policy.as_deref() == Some("Always") {
            sidecars += 1;
            let running = pod.container(credseal, &mounts, &|_, _| None).spawn(None);
            eventually("the sidecar rendered", || {
                rendered.path().join("payments-provider").exists()
            });
            Some(running)
        } else {
            let out = pod.container(credseal, &mounts, &|_, _| None).run();
            assert_eq!(out.code, 0, "{name}: {}", out.stderr);
            None
        };
        let out = ready();
        assert_eq!(
            out.code, 0,
            "{name}: the stand-in is not ready: {}",
            out.stderr
        );
        let mut read = 0;
        for e in app
            .env
            .iter()
            .flatten()
            .filter(|e| e.name.ends_with("_FILE"))
        {
            let path = e.value.as_deref().unwrap();
            let local = rendered
                .path()
                .join(path.strip_prefix("/run/credseal/").unwrap());
            let value = std::fs::read_to_string(&local).unwrap();
            assert!(value.starts_with("example-"), "{name}: {path} decrypted");
            read += 1;
        }
        assert!(read > 0, "{name}: the app reads rendered files");
    }
    assert_eq!(sidecars, 1, "one native sidecar and one init container");
}
