//! apply and cluster-key through the real kube::Client against the in-process API server, and
//! kubectl (1.32) as a second, independent client of that server.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::json;

use crate::support::kube_api::KubeApi;
use crate::support::{Cmd, new_key, write};

const NS: &str = "platform-services";

struct Setup {
    dir: tempfile::TempDir,
    api: KubeApi,
    kubeconfig: PathBuf,
    key: PathBuf,
    recipient: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let api = KubeApi::start();
    let kubeconfig = api.kubeconfig(dir.path(), NS);
    let (key, recipient) = new_key(dir.path(), "k");
    Setup {
        dir,
        api,
        kubeconfig,
        key,
        recipient,
    }
}

/// Runs the kube::Client calls of a test.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn secret_yaml(ns: &str, password: &str, extra: &str, generation: Option<u64>) -> String {
    let annotations = generation
        .map(|g| format!("    annotations:\n        credseal.dev/generation: \"{g}\"\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n    name: postgres-credentials\n    namespace: {ns}\n{annotations}type: Opaque\nstringData:\n    username: app_user\n    password: {password}\n{extra}"
    )
}

impl Setup {
    fn encrypt(&self, name: &str, yaml: &str) -> PathBuf {
        let enc = crate::support::encrypt_yaml(self.dir.path(), &self.recipient, yaml);
        write(self.dir.path(), name, enc)
    }

    fn credseal(&self) -> Cmd {
        Cmd::credseal()
            .cwd(self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .key(&self.key)
    }

    /// A kube::Config for the fake (its CA trusted), as the admin unless a token is set.
    fn client_config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.api.url().parse().unwrap());
        config.root_cert = Some(vec![self.api.ca_der()]);
        config
    }

    fn cluster_key(&self, args: &[&str]) -> crate::support::Out {
        Cmd::credseal()
            .cwd(self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("cluster-key")
            .args(args)
            .run()
    }

    fn live_value(&self, key: &str) -> Option<String> {
        let s = self.api.get("secrets", NS, "postgres-credentials")?;
        let b64 = s["data"][key].as_str()?;
        Some(
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            )
            .unwrap(),
        )
    }
}

#[test]
fn apply_creates_updates_and_prunes_by_server_side_apply() {
    let s = setup();
    let file = s.encrypt(
        "db.enc.yaml",
        &secret_yaml(NS, "first-pw", "    dropped: soon\n", None),
    );
    let out = s.credseal().args(["apply", "-f"]).arg(&file).run().ok();
    assert_eq!(out.text(), "secret/postgres-credentials created\n");
    out.never_shows("first-pw");
    assert_eq!(s.live_value("password").as_deref(), Some("first-pw"));
    assert_eq!(s.live_value("dropped").as_deref(), Some("soon"));
    let apply = s
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    assert_eq!(
        apply.query.get("fieldManager").map(String::as_str),
        Some("credseal")
    );
    assert_eq!(apply.query.get("force").map(String::as_str), Some("true"));

    // The same file again: nothing changes.
    let out = s.credseal().args(["apply", "-f"]).arg(&file).run().ok();
    assert_eq!(out.text(), "secret/postgres-credentials unchanged\n");

    // A new value, and a key removed from the file disappears from the cluster.
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "second-pw", "", None));
    let out = s
        .credseal()
        .args(["apply", "-f"])
        .arg(s.dir.path().join("db.enc.yaml"))
        .run()
        .ok();
    assert_eq!(out.text(), "secret/postgres-credentials configured\n");
    assert_eq!(s.live_value("password").as_deref(), Some("second-pw"));
    assert_eq!(s.live_value("dropped"), None);
    let _ = file;
}

#[test]
fn apply_takes_directories_and_dry_run_persists_nothing() {
    let s = setup();
    let secrets = s.dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let file = s.encrypt("x.enc.yaml", &secret_yaml(NS, "pw", "", None));
    std::fs::rename(&file, secrets.join("db.enc.yaml")).unwrap();
    write(&secrets, "README.md", "not a secret");
    let out = s
        .credseal()
        .args(["apply", "--dry-run", "-f"])
        .arg(&secrets)
        .run()
        .ok();
    assert_eq!(
        out.text(),
        "secret/postgres-credentials created (server dry run)\n"
    );
    assert!(
        s.api.get("secrets", NS, "postgres-credentials").is_none(),
        "dry run stored nothing"
    );
    let patch = s
        .api
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(patch.query.get("dryRun").map(String::as_str), Some("All"));
}

#[test]
fn apply_refuses_to_downgrade_a_rotated_secret() {
    let s = setup();
    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "postgres-credentials", "namespace": NS,
                            "annotations": {"credseal.dev/generation": "3"}},
               "data": {"password": "cm90YXRlZA=="}}),
    );
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "stale-pw", "", Some(1)));
    let out = s
        .credseal()
        .args(["apply", "-f"])
        .arg(&file)
        .run()
        .code(213);
    assert!(
        out.stderr.contains("generation 3") && out.stderr.contains("generation 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("credseal.dev/generation"),
        "says how to bring the file up to date: {}",
        out.stderr
    );
    out.never_shows("stale-pw");
    assert_eq!(
        s.live_value("password").as_deref(),
        Some("rotated"),
        "untouched"
    );
    // A file at the live generation applies.
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "current-pw", "", Some(3)));
    s.credseal().args(["apply", "-f"]).arg(&file).run().ok();
    assert_eq!(s.live_value("password").as_deref(), Some("current-pw"));
}

/// After a rotation the cluster is newer than git: the deploy hook keeps the rotated values
/// (the keys the rotator names in credseal.dev/rotated-keys), applies everything else, says so
/// on stderr and as an Event, and succeeds; --force overwrites them.
#[test]
fn apply_keeps_what_a_later_rotation_set_and_applies_the_rest() {
    let s = setup();
    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "postgres-credentials", "namespace": NS,
                            "annotations": {"credseal.dev/generation": "3",
                                            "credseal.dev/rotated-keys": "password,username"}},
               "data": {"password": "cm90YXRlZA==", "username": "YXBwX3VzZXI="}}),
    );
    let file = s.encrypt(
        "db.enc.yaml",
        &secret_yaml(NS, "stale-pw", "    port: '5433'\n", Some(1)),
    );
    let out = s.credseal().args(["apply", "-f"]).arg(&file).run().ok();
    assert_eq!(out.text(), "secret/postgres-credentials configured\n");
    assert!(
        out.stderr
            .contains("kept password, username from rotation generation 3"),
        "{}",
        out.stderr
    );
    out.never_shows("stale-pw");
    assert_eq!(s.live_value("password").as_deref(), Some("rotated"), "kept");
    assert_eq!(
        s.live_value("port").as_deref(),
        Some("5433"),
        "the rest applied"
    );
    let live = s.api.get("secrets", NS, "postgres-credentials").unwrap();
    assert_eq!(
        live["metadata"]["annotations"]["credseal.dev/generation"],
        "3"
    );
    let event = s
        .api
        .list("events", NS)
        .into_iter()
        .find(|e| e["reason"] == "KeptRotatedValues")
        .expect("an Event on the Secret");
    assert_eq!(event["involvedObject"]["uid"], live["metadata"]["uid"]);
    // Every apply of an existing Secret is conditional on the resourceVersion it read.
    assert!(
        s.api
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.ends_with("/secrets/postgres-credentials")),
    );
    // --force overwrites.
    s.credseal()
        .args(["apply", "--force", "-f"])
        .arg(&file)
        .run()
        .ok();
    assert_eq!(s.live_value("password").as_deref(), Some("stale-pw"));
}

#[test]
fn apply_refuses_another_namespace_and_follows_the_context() {
    let s = setup();
    let file = s.encrypt("db.enc.yaml", &secret_yaml("kube-system", "pw", "", None));
    let out = s.credseal().args(["apply", "-f"]).arg(&file).run().code(1);
    assert!(
        out.stderr.contains("kube-system") && out.stderr.contains(NS),
        "{}",
        out.stderr
    );
    // The file's namespace is the target only through --namespace or the context.
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "pw", "", None));
    let out = s
        .credseal()
        .args(["apply", "--context", "other", "-f"])
        .arg(&file)
        .run()
        .code(1);
    assert!(out.stderr.contains("elsewhere"), "{}", out.stderr);
    s.credseal()
        .args(["apply", "--context", "other", "--namespace", NS, "-f"])
        .arg(&file)
        .run()
        .ok();
    assert!(s.api.get("secrets", NS, "postgres-credentials").is_some());
    // Tampering with the clear namespace breaks the MAC before anything is sent.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(NS, "kube-system");
    let moved = write(s.dir.path(), "moved.enc.yaml", text);
    s.credseal()
        .args(["apply", "--namespace", "kube-system", "-f"])
        .arg(&moved)
        .run()
        .code(51);
}

#[test]
fn apply_reports_the_missing_permission() {
    let s = setup();
    s.api.deny("patch", "secrets", NS);
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "pw", "", None));
    let out = s
        .credseal()
        .args(["apply", "-f"])
        .arg(&file)
        .run()
        .code(211);
    assert!(
        out.stderr.contains("cannot patch resource \"secrets\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(NS), "{}", out.stderr);
}

#[test]
fn kube_client_maps_conflicts_and_not_found() {
    use credseal::k8s::secrets::Secrets;
    let s = setup();
    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": NS}}),
    );
    block_on(async {
        let config = s.client_config();
        let client = kube::Client::try_from(config).unwrap();
        let api = Secrets::new(client, NS);
        let mut live = api.get("x").await.unwrap().unwrap();
        assert!(api.get("missing").await.unwrap().is_none(), "404 is None");
        // Someone else writes first: our update with the old resourceVersion is a conflict.
        s.api.put("secrets", json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": NS}, "type": "Opaque"}));
        live.type_ = Some("changed".into());
        let err = api.replace(&live).await.unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert!(
            api.create(&live).await.unwrap_err().is_conflict(),
            "already exists is a conflict too"
        );
    });
}

#[test]
fn cluster_key_lifecycle() {
    let s = setup();
    let ck = |args: &[&str]| s.cluster_key(args);
    let out = ck(&["show"]).code(210);
    assert!(out.stderr.contains("cluster-key init"), "{}", out.stderr);
    let first = ck(&["init"]).ok().text().trim().to_owned();
    assert!(first.starts_with("age1"), "{first}");
    let stored = s.api.get("secrets", "credseal", "sops-age").unwrap();
    assert!(
        stored["data"]["age.agekey"].is_string(),
        "Flux layout: {stored}"
    );
    assert_eq!(
        ck(&["init"]).ok().text().trim(),
        first,
        "init never overwrites"
    );
    let second = ck(&["add"]).ok().text().trim().to_owned();
    assert_ne!(second, first);
    let shown = ck(&["show"]).ok().text();
    assert!(shown.contains(&first) && shown.contains(&second), "{shown}");
    assert!(
        !shown.contains("AGE-SECRET-KEY"),
        "show never prints private keys"
    );
    // The stored identities decrypt what is encrypted to either recipient.
    let data = s.api.get("secrets", "credseal", "sops-age").unwrap()["data"].clone();
    let keys_dir = s.dir.path().join("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    for (k, v) in data.as_object().unwrap() {
        std::fs::write(
            keys_dir.join(k),
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
    }
    let ring = crate::support::keyring_file(
        s.dir.path(),
        &std::fs::read_dir(&keys_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>()
            .iter()
            .map(PathBuf::as_path)
            .collect::<Vec<&Path>>(),
    );
    for r in [&first, &second] {
        let plain = write(s.dir.path(), "p.yaml", "a: secret-value\n");
        let enc = Cmd::credseal()
            .cwd(s.dir.path())
            .args(["encrypt", "--age", r])
            .arg(&plain)
            .run()
            .ok();
        let enc = write(s.dir.path(), "p.enc.yaml", enc.stdout);
        let out = Cmd::credseal()
            .cwd(s.dir.path())
            .key(&ring)
            .arg("decrypt")
            .arg(&enc)
            .run()
            .ok();
        assert_eq!(out.text(), "a: secret-value\n");
    }
    ck(&["retire", &first]).ok();
    let shown = ck(&["show"]).ok().text();
    assert!(
        !shown.contains(&first) && shown.contains(&second),
        "{shown}"
    );
    let out = ck(&["retire", &second]).code(1);
    assert!(out.stderr.contains("last identity"), "{}", out.stderr);
    // Writes were replacements guarded by resourceVersion.
    assert!(s.api.requests().iter().any(|r| r.method == "PUT"));
}

#[test]
fn kubectl_is_a_second_client_of_the_same_server() {
    let s = setup();
    let kubectl = |args: &[&str]| {
        Cmd::tool("kubectl")
            .cwd(s.dir.path())
            .args(["--server", &s.api.url(), "--token", "t", "--namespace", NS])
            .arg(format!(
                "--certificate-authority={}",
                s.api.ca_pem().display()
            ))
            .args(args)
            .run()
    };
    let manifest = write(
        s.dir.path(),
        "cm.yaml",
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-kubectl\n  namespace: {NS}\nstringData:\n  token: abc\n"
        ),
    );
    let out = kubectl(&[
        "apply",
        "--server-side",
        "--validate=false",
        "-f",
        manifest.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.text()
            .contains("secret/from-kubectl serverside-applied"),
        "{}",
        out.text()
    );
    let stored = s.api.get("secrets", NS, "from-kubectl").unwrap();
    assert_eq!(stored["data"]["token"], "YWJj", "stringData became data");
    let req = s
        .api
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(
        req.query.get("fieldManager").map(String::as_str),
        Some("kubectl")
    );

    // credseal applies; kubectl reads it back.
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "pw-for-kubectl", "", None));
    s.credseal().args(["apply", "-f"]).arg(&file).run().ok();
    let out = kubectl(&[
        "get",
        "secret",
        "postgres-credentials",
        "-o",
        "yaml",
        "--show-managed-fields",
    ])
    .ok();
    let text = out.text();
    assert!(
        text.contains("name: postgres-credentials") && text.contains("cHctZm9yLWt1YmVjdGw="),
        "{text}"
    );
    assert!(text.contains("manager: credseal"), "{text}");

    let out = kubectl(&["delete", "secret", "from-kubectl", "--wait=false"]).ok();
    assert!(out.text().contains("deleted"), "{}", out.text());
    assert!(s.api.get("secrets", NS, "from-kubectl").is_none());
    let out = kubectl(&["get", "secret", "from-kubectl"]).code(1);
    assert!(
        out.stderr.contains("NotFound") || out.stderr.contains("not found"),
        "{}",
        out.stderr
    );
}

/// The deploy hook as rendered (its args, env and mounts; UID 65532 in an empty read-only
/// root) keeps applying after `cluster-key add`, a move of the files to the new key and
/// `retire` of the first: it reads every `*.agekey` of the mounted key Secret.
#[test]
fn the_rendered_deploy_hook_survives_a_key_rotation() {
    use k8s_openapi::api::batch::v1::Job;
    let s = setup();
    let ck = |args: &[&str]| s.cluster_key(args).ok().text().trim().to_owned();
    let first = ck(&["init"]);
    let second = ck(&["add"]);
    let secrets = s.dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let plain = write(
        s.dir.path(),
        "plain.yaml",
        secret_yaml(NS, "after-key-rotation", "", None),
    );
    let enc = Cmd::credseal()
        .args(["encrypt", "--age", &second])
        .arg(&plain)
        .run()
        .ok();
    write(&secrets, "postgres-credentials.enc.yaml", enc.stdout);
    ck(&["retire", &first]);

    // The sops-age Secret as the kubelet mounts it: one file per key.
    let keys = s.dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let data = s.api.get("secrets", "credseal", "sops-age").unwrap()["data"].clone();
    for (k, v) in data.as_object().unwrap() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(keys.join(k), bytes).unwrap();
    }
    assert!(
        !keys.join("age.agekey").exists(),
        "the first key is retired"
    );

    let objects = crate::manifests::render("manifests/base");
    let job: Job = objects
        .iter()
        .find(|o| o["kind"] == "Job" && o["metadata"]["name"] == "credseal-apply")
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .expect("the deploy hook Job");
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let out = crate::support::pod::Pod::credseal_under_test()
        .ro(s.dir.path().join("kubeconfig"), "/etc/kube/config")
        .env("KUBECONFIG", "/etc/kube/config")
        .container(
            container,
            &[("credseal-secrets", &secrets), ("cluster-key", &keys)],
            &|_, _| None,
        )
        .run();
    assert_eq!(out.code, 0, "the deploy hook failed: {}", out.stderr);
    assert_eq!(
        s.live_value("password").as_deref(),
        Some("after-key-rotation")
    );
}

/// The fake authorizes a ServiceAccount's requests by the RBAC it holds, as the API server
/// does: `resourceNames` limit get/update/patch/delete, never create or list, and a refusal is
/// the real 403 message.
#[test]
fn service_accounts_get_exactly_what_the_rendered_rbac_grants() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    let s = setup();
    s.api.load(&crate::manifests::render("manifests/base"));
    for name in ["postgres-credentials", "postgres-admin"] {
        s.api.put(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}}),
        );
    }
    let sa = s.api.service_account(NS, "credseal-rotator");
    let token = std::fs::read_to_string(sa.path().join("token")).unwrap();
    block_on(async {
        let mut config = s.client_config();
        config.auth_info.token = Some(token.into());
        let client = kube::Client::try_from(config).unwrap();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        secrets.get("postgres-credentials").await.unwrap();
        let denied = secrets.get("postgres-admin").await.unwrap_err();
        assert!(
            denied.to_string().contains(
                "secrets \"postgres-admin\" is forbidden: User \"system:serviceaccount:platform-services:credseal-rotator\" cannot get resource \"secrets\" in API group \"\" in the namespace \"platform-services\""
            ),
            "{denied}"
        );
        assert!(
            secrets.list(&ListParams::default()).await.is_err(),
            "no list of Secrets"
        );
        let new: Secret =
            serde_json::from_value(json!({"metadata": {"name": "anything", "namespace": NS}}))
                .unwrap();
        // A create carries no name when it is authorized, so the rotator has none: it could
        // create any Secret (a token for another ServiceAccount). Its pending record is a
        // server-side apply of one name instead.
        let err = secrets
            .create(&PostParams::default(), &new)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot create resource"), "{err}");
        let pending: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "postgres-credentials-credseal-pending", "namespace": NS},
            "type": "Opaque"}))
        .unwrap();
        secrets
            .patch(
                "postgres-credentials-credseal-pending",
                &PatchParams::apply("credseal-rotate"),
                &Patch::Apply(&pending),
            )
            .await
            .unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client, NS);
        let stamp = Patch::Merge(json!({"metadata": {"annotations": {"x": "1"}}}));
        deployments
            .patch("backend", &PatchParams::default(), &stamp)
            .await
            .unwrap();
        let err = deployments
            .patch("other", &PatchParams::default(), &stamp)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("forbidden"), "{err}");
    });
}

/// The fake pages lists as the real server does; kubectl, the second client, pages through
/// them with its own continue tokens.
#[test]
fn kubectl_pages_through_a_long_list() {
    let s = setup();
    for i in 0..5 {
        s.api.put(
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s{i}"), "namespace": NS}}),
        );
    }
    let out = Cmd::tool("kubectl")
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["get", "secrets", "--chunk-size=2", "-o", "name"])
        .run()
        .ok();
    assert_eq!(
        out.text(),
        "secret/s0\nsecret/s1\nsecret/s2\nsecret/s3\nsecret/s4\n"
    );
    let pages = s
        .api
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.ends_with("/secrets") && r.query.get("limit").map(String::as_str) == Some("2")
        })
        .count();
    assert_eq!(pages, 3, "three pages of two");
}

/// The fake follows the API where clients depend on it: a strategic merge patch merges
/// containers by name (kubectl patch's default), and a resourceVersion in a server-side
/// apply is a precondition.
#[test]
fn strategic_merge_patches_and_apply_preconditions_behave_as_the_api_server() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, Patch, PatchParams};
    let s = setup();
    s.api.put(
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "app", "image": "app:1"},
                                                             {"name": "proxy", "image": "proxy:1"}]}}}}),
    );
    Cmd::tool("kubectl")
        .env("KUBECONFIG", &s.kubeconfig)
        .args([
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"app:2"}]}}}}"#,
        ])
        .run()
        .ok();
    let web = s.api.get("deployments", NS, "web").unwrap();
    let containers = web["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(
        containers,
        json!([{"name": "app", "image": "app:2"}, {"name": "proxy", "image": "proxy:1"}]),
        "merged by name, the other container kept"
    );

    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": NS}}),
    );
    let rv = s.api.get("secrets", NS, "x").unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    block_on(async {
        let config = s.client_config();
        let api: Api<Secret> = Api::namespaced(kube::Client::try_from(config).unwrap(), NS);
        let pp = PatchParams::apply("test").force();
        let stale = json!({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "x", "resourceVersion": "1"}, "type": "Opaque"});
        let err = api
            .patch("x", &pp, &Patch::Apply(&stale))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("has been modified"), "{err}");
        let current = json!({"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "x", "resourceVersion": rv}, "type": "Opaque"});
        api.patch("x", &pp, &Patch::Apply(&current)).await.unwrap();
    });
}

/// Server-side apply owns list elements by key, as the API server does for `listType: map`:
/// two managers keep their own containers of one Deployment, a manager that stops applying
/// its container removes only that one, and a different value for another manager's field is
/// a conflict unless forced.
#[test]
fn server_side_apply_owns_list_elements_by_key() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};
    let s = setup();
    let deployment = |containers: serde_json::Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": containers}}}})
    };
    block_on(async {
        let config = s.client_config();
        let api: Api<Deployment> = Api::namespaced(kube::Client::try_from(config).unwrap(), NS);
        let names = |d: &Deployment| -> Vec<(String, String)> {
            d.spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        };
        let a = PatchParams::apply("team-a");
        let b = PatchParams::apply("team-b");
        api.patch(
            "web",
            &a,
            &Patch::Apply(deployment(json!([{"name": "app", "image": "app:1"}]))),
        )
        .await
        .unwrap();
        let both = api
            .patch(
                "web",
                &b,
                &Patch::Apply(deployment(json!([{"name": "proxy", "image": "proxy:1"}]))),
            )
            .await
            .unwrap();
        assert_eq!(
            names(&both),
            [
                ("app".into(), "app:1".into()),
                ("proxy".into(), "proxy:1".into())
            ]
        );
        // team-b touching team-a's container with another image: a conflict, unless forced.
        let err = api
            .patch(
                "web",
                &b,
                &Patch::Apply(deployment(json!([
                {"name": "proxy", "image": "proxy:1"}, {"name": "app", "image": "app:2"}]))),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("conflict with \"team-a\""),
            "{err}"
        );
        // team-a stops applying its container: only that one goes.
        let left = api
            .patch("web", &a, &Patch::Apply(deployment(json!([]))))
            .await
            .unwrap();
        assert_eq!(names(&left), [("proxy".into(), "proxy:1".into())]);
    });
}

/// An API server (or a proxy in front of it) that accepts connections and never answers
/// fails the command after the client's timeouts instead of holding it forever.
#[test]
fn an_api_server_that_never_answers_fails_the_command() {
    let s = setup();
    let hole = crate::support::servers::blackhole();
    let kubeconfig = std::fs::read_to_string(&s.kubeconfig)
        .unwrap()
        .replace(&s.api.url(), &format!("https://127.0.0.1:{hole}"));
    let kubeconfig = write(s.dir.path(), "blackholed-kubeconfig", kubeconfig);
    let file = s.encrypt("db.enc.yaml", &secret_yaml(NS, "pw", "", None));
    let cmd = Cmd::credseal()
        .cwd(s.dir.path())
        .env("KUBECONFIG", &kubeconfig)
        .key(&s.key)
        .args(["apply", "-f"])
        .arg(&file);
    let (code, stderr) = crate::support::run_bounded(cmd, std::time::Duration::from_secs(60));
    assert_eq!(code, Some(210), "{stderr}");
}

/// `pull` brings the rotated values back into the git file, churn-free: only the rotated
/// value, the generation and rotated-at annotations, lastmodified and the MAC change; sops reads the result;
/// the next apply has nothing to keep.
#[test]
fn pull_brings_rotated_values_back_into_git_churn_free() {
    let s = setup();
    let yaml = secret_yaml(NS, "stale-pw", "    port: '5432'\n", Some(1)).replace(
        "credseal.dev/generation: \"1\"\n",
        "credseal.dev/generation: \"1\"\n        credseal.dev/rotated-at: \"1700000000\"\n",
    );
    let file = s.encrypt("db.enc.yaml", &yaml);
    let before = std::fs::read_to_string(&file).unwrap();
    s.api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "postgres-credentials", "namespace": NS,
                            "annotations": {"credseal.dev/generation": "3",
                                            "credseal.dev/rotated-at": "1767225600",
                                            "credseal.dev/rotated-keys": "password,username"}},
               "data": {"password": crate::support::b64("rotated-pw"), "username": crate::support::b64("app_user"),
                        "port": crate::support::b64("5432")}}),
    );
    let out = s.credseal().arg("pull").arg(&file).run().ok();
    assert!(
        out.text()
            .contains("pulled password, username (generation 3)"),
        "{}",
        out.text()
    );
    out.never_shows("rotated-pw");
    let after = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    // lastmodified is in whole seconds: it changes unless the pull ran within the second.
    let kinds: Vec<String> = changed
        .iter()
        .map(|(_, b)| b.trim().split(':').next().unwrap().to_owned())
        .filter(|k| k != "lastmodified")
        .collect();
    assert_eq!(
        kinds,
        [
            "credseal.dev/generation",
            "credseal.dev/rotated-at",
            "password",
            "mac"
        ],
        "only the rotated value and what must follow it changed: {changed:?}"
    );
    let decrypted = Cmd::sops()
        .key(&s.key)
        .args(["decrypt", "--extract", r#"["stringData"]["password"]"#])
        .arg(&file)
        .run()
        .ok();
    assert_eq!(decrypted.text(), "rotated-pw");
    assert!(
        after.contains("credseal.dev/rotated-at: \"1767225600\""),
        "the rotation time follows the cluster: {after}"
    );
    // git has caught up: a second pull changes nothing, and apply keeps nothing.
    let again = s.credseal().arg("pull").arg(&file).run().ok();
    assert!(again.text().contains("up to date"), "{}", again.text());
    let applied = s.credseal().args(["apply", "-f"]).arg(&file).run().ok();
    assert!(!applied.stderr.contains("kept"), "{}", applied.stderr);
    assert_eq!(s.live_value("password").as_deref(), Some("rotated-pw"));
}

/// The same refusal exits the same way from every command: a 403 that meets `rotate` after its
/// preflight passed (the Role was changed under it) exits 211, as `apply`'s does above, not the
/// rotation's own 220; nothing was changed and the old password still logs in.
#[test]
fn a_403_mid_rotation_exits_211_as_from_apply() {
    let s = crate::rotate_k8s::setup();
    s.api.fail_next(
        "get",
        "secrets",
        1,
        crate::support::kube_api::Fault::Status(403),
    );
    let out = s.rotate(&[]).code(211);
    assert!(out.stderr.contains("credential cache"), "{}", out.stderr);
    assert!(out.stderr.contains("forbidden"), "{}", out.stderr);
    assert_eq!(s.password(), "old-redis-password");
    assert!(s.redis.can_login("app", "old-redis-password"));
}
