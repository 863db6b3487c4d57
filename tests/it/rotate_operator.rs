//! The operator strategy (CloudNativePG-style) against real PostgreSQL: the test plays the
//! operator, applying the password from the Secret it watches after a delay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::support::kube_api::KubeApi;
use crate::support::servers::Postgres;
use crate::support::{Cmd, Out, b64, unb64, write};

const NS: &str = "databases";

struct Setup {
    dir: tempfile::TempDir,
    api: Arc<KubeApi>,
    pg: Arc<Postgres>,
    plan: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pg = Arc::new(Postgres::start());
    pg.create_role("app", "old-operator-password");
    let api = Arc::new(KubeApi::start());
    let kubeconfig = api.kubeconfig(dir.path(), NS);
    // The managed role's Secret, as CloudNativePG reads it (basic-auth).
    api.put(
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
               "metadata": {"name": "app-role", "namespace": NS},
               "data": {"username": b64("app"), "password": b64("old-operator-password")}}),
    );
    api.put(
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "backend", "namespace": NS},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "b"}}, "template": {"metadata": {"labels": {"app": "b"}},
               "spec": {"containers": [{"name": "b", "image": "b:1", "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "app-role", "key": "password"}}}]}]}}}}),
    );
    let plan = write(
        dir.path(),
        "plan.yaml",
        format!(
            "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: app\n    engine: postgres\n    strategy: operator\n    role: app\n    operatorTimeout: 4s\n    target:\n      secret: {{namespace: {NS}, name: app-role, key: password, usernameKey: username}}\n    admin:\n      url: {}\n",
            pg.url()
        ),
    );
    Setup {
        dir,
        api,
        pg,
        plan,
        kubeconfig,
    }
}

impl Setup {
    fn rotate(&self) -> Out {
        Cmd::credseal()
            .cwd(self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["rotate", "--plan"])
            .arg(&self.plan)
            .run()
    }

    fn secret_password(&self) -> String {
        unb64(&self.api.get("secrets", NS, "app-role").unwrap()["data"]["password"])
    }

    /// The operator: applies the Secret's password to the role, `delay` after it changes.
    fn operator(&self, delay: Duration) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (api, pg, stop2) = (self.api.clone(), self.pg.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut applied = "old-operator-password".to_owned();
            while !stop2.load(Ordering::Relaxed) {
                let want = unb64(&api.get("secrets", NS, "app-role").unwrap()["data"]["password"]);
                if want != applied {
                    std::thread::sleep(delay);
                    let verifier = postgres_protocol::password::scram_sha_256(want.as_bytes());
                    pg.psql(&format!("ALTER ROLE app PASSWORD '{verifier}'"))
                        .unwrap();
                    api.mark("operator-applied");
                    applied = want;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        (stop, handle)
    }
}

#[test]
fn waits_for_the_operator_then_rolls() {
    let s = setup();
    let (stop, op) = s.operator(Duration::from_millis(1500));
    let out = s.rotate().ok();
    stop.store(true, Ordering::Relaxed);
    op.join().unwrap();
    assert_eq!(out.text(), "app: rotated (generation 1)\n");
    let new = s.secret_password();
    assert!(s.pg.can_login("app", &new));
    assert!(!s.pg.can_login("app", "old-operator-password"));
    // credseal never ran ALTER ROLE itself: only the operator (psql) did.
    assert_eq!(
        s.pg.log().matches("ALTER ROLE").count(),
        1,
        "{}",
        s.pg.log()
    );
    // The consumer was rolled only after the operator applied the password.
    let log = s.api.requests();
    let applied = log
        .iter()
        .position(|r| r.path.ends_with("/operator-applied"))
        .expect("operator applied");
    let rolled = log
        .iter()
        .position(|r| r.method == "PATCH" && r.path.ends_with("/deployments/backend"))
        .expect("rolled");
    assert!(rolled > applied, "rolled at {rolled}, applied at {applied}");
}

#[test]
fn an_operator_that_never_applies_stops_the_line() {
    let s = setup();
    let out = s.rotate().code(220);
    assert!(
        out.stderr.contains("did not apply the new password"),
        "{}",
        out.stderr
    );
    assert_eq!(
        s.secret_password(),
        "old-operator-password",
        "the Secret holds the old password again"
    );
    assert!(s.pg.can_login("app", "old-operator-password"));
    assert!(
        !s.api
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && !r.path.contains("/secrets/")),
        "nothing rolled"
    );
    assert!(
        s.api
            .get("secrets", NS, "app-role-credseal-pending")
            .is_none(),
        "undone cleanly"
    );
    let secret = s.api.get("secrets", NS, "app-role").unwrap();
    assert_eq!(
        secret["metadata"]["annotations"]["credseal.dev/generation"], "0",
        "generation restored"
    );
}
