//! Day one on a cluster, as far as a machine without one can show: the rendered platform is
//! loaded into the API fake with its RBAC enforced, and every step runs the rendered container
//! as the kubelet would (pod runner: empty read-only root, its mounts, its UID, its
//! ServiceAccount's token in-cluster, Service names in /etc/hosts) against real servers on
//! their real ports: the deploy hook applies the Secrets from git, the PostgreSQL init script
//! and the Redis ACL init container set the databases up from them, and the rotator rotates
//! both and rolls what reads them.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Value, json};

use crate::manifests::{of_kind, render};
use crate::support::kube_api::KubeApi;
use crate::support::kubelet;
use crate::support::pod::Pod;
use crate::support::servers::{Postgres, redis_cli_at, redis_server, wait_for};
use crate::support::{b64, unb64};

const NS: &str = "platform-services";
/// Each Service gets a loopback address of its own, so the servers listen on the ports the
/// manifests name (5432, 6379) without colliding with other tests.
const PG_IP: &str = "127.0.3.1";
const REDIS_IP: &str = "127.0.3.2";

/// A ConfigMap or Secret volume of `spec`, laid out as the kubelet does.
fn volume(api: &KubeApi, objects: &[Value], spec: &PodSpec, name: &str) -> tempfile::TempDir {
    kubelet::volume(api, objects, spec, name, NS)
}

/// Lays the volume's current content into `dir`, as the kubelet refreshes a mounted volume.
fn update_volume(api: &KubeApi, objects: &[Value], spec: &PodSpec, name: &str, dir: &Path) {
    kubelet::update_volume(api, objects, spec, name, NS, dir)
}

/// The backend container's readiness probe, run as the kubelet runs an exec probe: in the app
/// container (its image, UID, fsGroup, mounts, env), against the servers by Service name.
fn backend_ready(spec: &PodSpec, credentials: &Path) -> crate::support::Out {
    let app = &spec.containers[0];
    let probe = app.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
    let mut as_probe = app.clone();
    as_probe.command = probe.command.clone();
    as_probe.args = None;
    Pod::distro(0)
        .fs_group(spec.security_context.as_ref().and_then(|s| s.fs_group))
        .host("postgres.platform-services.svc.cluster.local", PG_IP)
        .container(&as_probe, &[("credentials", credentials)], &|_, _| None)
        .run()
}

fn secret_value(api: &KubeApi, name: &str, key: &str) -> String {
    unb64(&api.get("secrets", NS, name).unwrap()["data"][key])
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_platform_deploys_and_rotates_with_its_own_rbac_in_empty_roots() {
    let objects = render("manifests/base");
    let api = KubeApi::start();
    api.load(&objects);
    // The namespace's cluster key: its example key, which base's files are encrypted to
    // (beside the admin key, which stays out of the cluster).
    let example_key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("keys-example/platform-services.agekey"),
    )
    .unwrap();
    api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "sops-age", "namespace": NS},
               "data": {"age.agekey": b64(&example_key)}}),
    );

    // 1. The deploy hook, as its ServiceAccount.
    let job: Job = of_kind::<Job>(&objects, "Job").remove(0);
    let spec = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(true));
    let sa = api.service_account(NS, spec.service_account_name.as_deref().unwrap());
    let secrets_cm = volume(&api, &objects, &spec, "credseal-secrets");
    let cluster_key = volume(&api, &objects, &spec, "cluster-key");
    let deploy_hook = || {
        Pod::credseal_under_test()
            .in_cluster(&api, sa.path())
            .container(
                &spec.containers[0],
                &[
                    ("credseal-secrets", secrets_cm.path()),
                    ("cluster-key", cluster_key.path()),
                ],
                &|_, _| None,
            )
            .run()
    };
    let out = deploy_hook();
    assert_eq!(out.code, 0, "the deploy hook failed: {}", out.stderr);
    let pg_password = secret_value(&api, "postgres-credentials", "password");
    let redis_password = secret_value(&api, "redis-credentials", "password");

    // 2. PostgreSQL: initdb, then the init script of the StatefulSet, as the image runs it.
    let pg = Postgres::start_at(PG_IP, 5432);
    pg.psql("CREATE DATABASE saas_platform").unwrap();
    let pg_spec = crate::manifests::pod_spec(&objects, "postgres");
    let init = volume(&api, &objects, &pg_spec, "init");
    let app = volume(&api, &objects, &pg_spec, "app");
    let out = Pod::distro(70)
        .ro(init.path(), "/docker-entrypoint-initdb.d")
        .ro(app.path(), "/run/secrets/app")
        .env("PGHOST", PG_IP)
        .env("PGPASSWORD", &pg.superuser_password)
        .cmd_at(
            "/docker-entrypoint-initdb.d/10-app-role.sh",
            Vec::<String>::new(),
        )
        .run();
    assert_eq!(
        out.code, 0,
        "the PostgreSQL init script failed: {}",
        out.stderr
    );
    assert!(pg.can_login("app_user", &pg_password));

    // 3. Redis: the ACL init container, then the server on that data volume.
    let redis_spec = crate::manifests::pod_spec(&objects, "redis");
    let data = tempfile::tempdir().unwrap();
    let password_volume = volume(&api, &objects, &redis_spec, "password");
    let out = Pod::distro(999)
        .container(
            &redis_spec.init_containers.as_ref().unwrap()[0],
            &[("data", data.path()), ("password", password_volume.path())],
            &|_, _| None,
        )
        .run();
    assert_eq!(
        out.code, 0,
        "the Redis ACL init container failed: {}",
        out.stderr
    );
    let _redis = Server(
        Command::new(redis_server())
            .args(["--bind", REDIS_IP, "--port", "6379", "--save", ""])
            .arg("--dir")
            .arg(data.path())
            .arg("--aclfile")
            .arg(data.path().join("users.acl"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(REDIS_IP, 6379, "redis-server");
    assert_eq!(
        redis_cli_at(REDIS_IP, 6379, Some(&redis_password), &["PING"]).trim(),
        "PONG"
    );

    // 4. The backend: its credseal sidecar renders DATABASE_URL from the Secret volumes, and
    // the app's readiness probe logs in with it.
    let backend = crate::manifests::pod_spec(&objects, "backend");
    let sidecar = &backend.init_containers.as_ref().unwrap()[0];
    let pg_volume = volume(&api, &objects, &backend, "postgres-credentials");
    let redis_volume = volume(&api, &objects, &backend, "redis-credentials");
    let rendered = tempfile::tempdir().unwrap();
    let _sidecar = Pod::credseal_under_test()
        .namespace(NS)
        .fs_group(backend.security_context.as_ref().and_then(|s| s.fs_group))
        .own_network()
        .container(
            sidecar,
            &[
                ("postgres-credentials", pg_volume.path()),
                ("redis-credentials", redis_volume.path()),
                ("credentials", rendered.path()),
            ],
            &|_, _| None,
        )
        .spawn(None);
    let url = rendered.path().join("DATABASE_URL");
    crate::materialize::eventually("the sidecar rendered DATABASE_URL", || url.exists());
    let ready = backend_ready(&backend, rendered.path());
    assert_eq!(ready.code, 0, "the backend is not ready: {}", ready.stderr);

    // 5. The rotator, as its ServiceAccount, reaching the databases by Service name.
    let spec = crate::manifests::pod_spec(&objects, "credseal-rotate");
    let sa = api.service_account(NS, spec.service_account_name.as_deref().unwrap());
    let plan = volume(&api, &objects, &spec, "plan");
    let out = Pod::credseal_under_test()
        .in_cluster(&api, sa.path())
        .host("postgres.platform-services.svc.cluster.local", PG_IP)
        .host("redis.platform-services.svc.cluster.local", REDIS_IP)
        .container(&spec.containers[0], &[("plan", plan.path())], &|_, _| None)
        .run();
    assert_eq!(out.code, 0, "the rotator failed: {}", out.stderr);
    assert_eq!(
        out.text(),
        "app-db: rotated (generation 1)\napp-cache: rotated (generation 1)\n"
    );
    let new_pg = secret_value(&api, "postgres-credentials", "password");
    let new_redis = secret_value(&api, "redis-credentials", "password");
    assert_ne!(new_pg, pg_password);
    assert_ne!(new_redis, redis_password);
    assert!(
        pg.can_login("app_user", &new_pg),
        "the new PostgreSQL password logs in"
    );
    assert!(
        !pg.can_login("app_user", &pg_password),
        "the old one does not"
    );
    assert_eq!(
        redis_cli_at(REDIS_IP, 6379, Some(&new_redis), &["PING"]).trim(),
        "PONG"
    );
    // The next sync runs the deploy hook with git still behind: it keeps the rotated values,
    // applies the rest, and succeeds (it used to fail every sync from here on).
    let out = deploy_hook();
    assert_eq!(
        out.code, 0,
        "the deploy hook after a rotation: {}",
        out.stderr
    );
    assert!(out.stderr.contains("kept password"), "{}", out.stderr);
    assert_eq!(
        secret_value(&api, "postgres-credentials", "password"),
        new_pg
    );
    assert_eq!(
        secret_value(&api, "redis-credentials", "password"),
        new_redis
    );

    // The kubelet refreshes the Secret volumes; the sidecar renders the new URL and the
    // backend logs in with it.
    update_volume(
        &api,
        &objects,
        &backend,
        "postgres-credentials",
        pg_volume.path(),
    );
    update_volume(
        &api,
        &objects,
        &backend,
        "redis-credentials",
        redis_volume.path(),
    );
    crate::materialize::eventually("the sidecar rendered the rotated URL", || {
        std::fs::read_to_string(&url).is_ok_and(|u| u.contains(&new_pg))
    });
    let ready = backend_ready(&backend, rendered.path());
    assert_eq!(
        ready.code, 0,
        "the backend is not ready after the rotation: {}",
        ready.stderr
    );
    // What reads the Secrets was rolled (the databases opted out).
    let backend = api.get("deployments", NS, "backend").unwrap();
    assert!(
        backend["spec"]["template"]["metadata"]["annotations"]
            .as_object()
            .is_some_and(|a| a.keys().any(|k| k.starts_with("credseal.dev/"))),
        "{backend}"
    );
}

/// `reporting`, a workload of `kind` that reads postgres-credentials, with `spec` merged into
/// its spec.
fn reporting(kind: &str, spec: Value) -> Value {
    let mut w = json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": "reporting", "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "reporting"}},
                 "template": {"metadata": {"labels": {"app": "reporting"}},
                              "spec": {"containers": [{"name": "r", "image": "r:1",
                                       "envFrom": [{"secretRef": {"name": "postgres-credentials"}}]}]}}}});
    for (k, v) in spec.as_object().unwrap() {
        w["spec"][k] = v.clone();
    }
    w
}

/// The rendered `objects` in an API server with the two credential Secrets and `consumer` (a
/// `resource`), and the rotator CronJob's container run once in it as the kubelet would.
fn rotate_beside(
    objects: &[Value],
    resource: &str,
    consumer: Value,
) -> (KubeApi, crate::support::Out) {
    let api = KubeApi::start();
    api.load(objects);
    for name in ["postgres-credentials", "redis-credentials"] {
        api.put(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
                   "data": {"password": b64("unchanged-password"), "username": b64("app_user")}}),
        );
    }
    api.put(resource, consumer);
    let spec = crate::manifests::pod_spec(objects, "credseal-rotate");
    let sa = api.service_account(NS, spec.service_account_name.as_deref().unwrap());
    let plan = volume(&api, objects, &spec, "plan");
    let out = Pod::credseal_under_test()
        .in_cluster(&api, sa.path())
        .container(&spec.containers[0], &[("plan", plan.path())], &|_, _| None)
        .run();
    (api, out)
}

/// A consumer the rotator's Role does not cover (a Deployment added after the Role was
/// written) is found before anything changes: the run exits 211 with the Role rule to add,
/// and the Secret, the databases and the lock are as they were.
#[test]
fn a_consumer_the_role_does_not_cover_stops_the_rotation_before_it_starts() {
    let objects = render("manifests/base");
    let (api, out) = rotate_beside(&objects, "deployments", reporting("Deployment", json!({})));
    assert_eq!(out.code, 211, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            r#"resources: ["deployments"], resourceNames: ["reporting"], verbs: ["patch"]"#
        ),
        "names the rule to add: {}",
        out.stderr
    );
    assert_eq!(
        secret_value(&api, "postgres-credentials", "password"),
        "unchanged-password"
    );
    assert!(
        api.get("secrets", NS, "postgres-credentials-credseal-pending")
            .is_none()
    );
    assert!(
        api.get("leases", NS, "postgres-credentials-credseal-rotation")
            .is_none()
    );
}

/// An `OnDelete` StatefulSet that reads the Secret is rolled by deleting its pods, which needs
/// `list` and `delete` on pods: a Role that covers the set but not its pods is found before
/// anything changes (it used to fail with a 403 after the password had changed).
#[test]
fn an_on_delete_consumer_needs_its_pods_in_the_role_before_anything_changes() {
    let mut objects = render("manifests/base");
    let role = objects
        .iter_mut()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "credseal-rotator")
        .expect("the rotator's Role");
    role["rules"].as_array_mut().unwrap().push(json!({
        "apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["reporting"],
        "verbs": ["get", "patch", "watch"]}));
    let on_delete = json!({"serviceName": "reporting", "updateStrategy": {"type": "OnDelete"}});
    let (api, out) = rotate_beside(
        &objects,
        "statefulsets",
        reporting("StatefulSet", on_delete),
    );
    assert_eq!(out.code, 211, "{}", out.stderr);
    for verb in ["list", "delete"] {
        let rule = format!(r#"resources: ["pods"], verbs: ["{verb}"]"#);
        assert!(
            out.stderr.contains(&rule),
            "names the rule to add ({rule}): {}",
            out.stderr
        );
    }
    assert_eq!(
        secret_value(&api, "postgres-credentials", "password"),
        "unchanged-password"
    );
    assert!(
        api.get("secrets", NS, "postgres-credentials-credseal-pending")
            .is_none()
    );
    let patched: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.contains("selfsubjectaccessreviews"))
        .filter(|r| !r.path.contains("/events") && !r.path.contains("/leases"))
        .collect();
    assert!(patched.is_empty(), "nothing changed: {patched:?}");
}
