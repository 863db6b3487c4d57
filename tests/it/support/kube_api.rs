//! An in-process Kubernetes API server for the calls credseal makes, following the real API's
//! semantics: resourceVersion on every write and 409 on a stale one, 404/403/409 as `Status`
//! objects, server-side apply with field managers (conflicts unless forced, fields a manager
//! stops applying are removed), JSON merge patches, `dryRun=All`, and the discovery documents
//! kubectl needs. HTTPS on a loopback port, as the real one (a test CA, `127.0.0.1` in the
//! certificate); kube::Client and kubectl both talk to it, and in-cluster clients reach it
//! with the CA mounted as the service-account `ca.crt`.
//!
//! Watches as the real server streams them: `?watch=true` answers with chunked WatchEvents,
//! one JSON object a line (ADDED, MODIFIED, DELETED, BOOKMARK with `allowWatchBookmarks`),
//! from the `resourceVersion` asked for, until `timeoutSeconds`; a resourceVersion older than
//! the last compaction gets an ERROR event with a 410 Expired Status. Every change, the
//! controllers' status writes included, is a watch event. A test can make the next requests
//! of a verb on a resource fail the way a real cluster does now and then (a 5xx, a 429 with
//! Retry-After, a dropped connection, a watch that ends early).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

mod controllers;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// What one request looked like (for assertions on verbs, content types and parameters).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    /// `Accept`: `as=PartialObjectMetadata` asks for metadata only, as the real server serves.
    pub accept: String,
    /// The bearer token: a ServiceAccount's is authorized by RBAC, any other is an admin's.
    pub token: String,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(String, String, String), Value>,
    /// Field paths owned by each manager, per object.
    managed: HashMap<(String, String, String), BTreeMap<String, BTreeSet<String>>>,
    rv: u64,
    /// (verb, resource, namespace) the caller may not do.
    denied: BTreeSet<(String, String, String)>,
    /// Workloads whose simulated controller never finishes a rollout.
    stuck: BTreeSet<(String, String, String)>,
    log: Vec<Request>,
    /// ServiceAccount tokens: token → `system:serviceaccount:NS:NAME`.
    tokens: HashMap<String, String>,
    /// What the controllers will do, and when (see controllers.rs).
    pending: Vec<(std::time::Instant, controllers::Event)>,
    /// Rollout steps the real controllers would have suffered from (two pods down at once).
    violations: Vec<String>,
    /// The next list with a continue token is answered 410 Gone, as after a compaction.
    expire_next_continue: bool,
    /// Objects another client creates just before our next create of that resource (a race).
    race_creates: Vec<(String, Value)>,
    /// Every change, in resourceVersion order, for watches to replay and follow.
    history: Vec<Change>,
    /// Watches from a resourceVersion below this get 410 Gone (etcd compacted past it).
    compacted: u64,
    /// Failures the next requests of (verb, resource) meet, with how many are left.
    faults: Vec<(String, String, usize, Fault)>,
    /// Nodes a DaemonSet should run a pod on.
    nodes: i64,
}

/// One change to an object, as a watch reports it.
struct Change {
    rv: u64,
    kind: &'static str,
    key: (String, String, String),
    object: Value,
}

/// A failure a real cluster answers with now and then.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// A Status with this code (500, 503, ...).
    Status(u16),
    /// 429 with `Retry-After` (and `details.retryAfterSeconds`) of this many seconds, as API
    /// priority and fairness answers.
    TooManyRequests(u32),
    /// The connection closes without an answer (a load balancer or API server restarting).
    Drop,
    /// A watch starts, then its connection closes without the stream's end.
    EndWatch,
    /// A watch is answered with an ERROR event, 410 Expired, as when etcd compacted past its
    /// resourceVersion.
    Expired,
}

impl State {
    /// Stores an object (its resourceVersion already set) and records the change for watches.
    fn store(&mut self, key: (String, String, String), obj: Value) {
        let before = self.objects.get(&key);
        let same = before.is_some_and(|b| {
            b["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
        });
        if !same {
            self.history.push(Change {
                rv: obj["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(self.rv),
                kind: if before.is_some() {
                    "MODIFIED"
                } else {
                    "ADDED"
                },
                key: key.clone(),
                object: obj.clone(),
            });
        }
        self.objects.insert(key, obj);
    }

    /// Removes an object; the deletion is a change with its own resourceVersion.
    fn unstore(&mut self, key: &(String, String, String)) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.history.push(Change {
            rv: self.rv,
            kind: "DELETED",
            key: key.clone(),
            object: obj.clone(),
        });
        Some(obj)
    }
}

pub struct KubeApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl KubeApi {
    pub fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            nodes: 2,
            ..State::default()
        }));
        let s = state.clone();
        let config = tls().config.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                let config = config.clone();
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    serve(rustls::StreamOwned::new(conn, stream), s)
                });
            }
        });
        KubeApi { port, state }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA that signed the server's certificate (PEM), as a pod's `ca.crt`.
    pub fn ca_pem(&self) -> PathBuf {
        tls().dir.path().join("api-ca.pem")
    }

    /// The CA certificate (DER), for a kube::Config built by hand.
    pub fn ca_der(&self) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(self.ca_pem())
            .unwrap()
            .to_vec()
    }

    /// A kubeconfig pointing at this server, with `namespace` as the context's default.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: deployer\n    namespace: {namespace}\n- name: other\n  context:\n    cluster: fake\n    user: deployer\n    namespace: elsewhere\ncurrent-context: fake\nusers:\n- name: deployer\n  user:\n    token: test-token\n",
                self.url(),
                base64::engine::general_purpose::STANDARD
                    .encode(std::fs::read(self.ca_pem()).unwrap())
            ),
        )
        .unwrap();
        path
    }

    /// Refuses `verb` (get, create, update, patch, delete, list) on `resource` in `namespace`.
    pub fn deny(&self, verb: &str, resource: &str, namespace: &str) {
        self.state
            .lock()
            .unwrap()
            .denied
            .insert((verb.into(), resource.into(), namespace.into()));
    }

    /// The simulated controller of this workload stops finishing rollouts.
    pub fn stick(&self, resource: &str, namespace: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .stuck
            .insert((resource.into(), namespace.into(), name.into()));
    }

    pub fn unstick(&self, resource: &str, namespace: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.stuck
            .remove(&(resource.to_owned(), namespace.to_owned(), name.to_owned()));
        // The controller catches up.
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        if let Some(mut obj) = st.objects.get(&key).cloned() {
            settle(resource, &mut obj, st.nodes);
            st.rv += 1;
            obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            st.store(key, obj);
        }
    }

    /// The next `times` requests of `verb` (get, list, watch, patch, delete, ...) on
    /// `resource` meet `fault`.
    pub fn fail_next(&self, verb: &str, resource: &str, times: usize, fault: Fault) {
        self.state.lock().unwrap().faults.push((
            verb.to_owned(),
            resource.to_owned(),
            times,
            fault,
        ));
    }

    /// Forgets the history up to now, as etcd compaction does: a watch from an older
    /// resourceVersion is answered 410 Gone.
    pub fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.compacted = st.rv;
        let rv = st.rv;
        st.history.retain(|c| c.rv > rv);
    }

    /// How many nodes a DaemonSet should run a pod on (2 unless set).
    pub fn set_nodes(&self, n: i64) {
        self.state.lock().unwrap().nodes = n;
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut st = self.state.lock().unwrap();
        controllers::tick(&mut st);
        st.objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// The next paged list request (one with a continue token) gets 410 Gone, as when etcd
    /// compacted past the token while a client was paging.
    pub fn expire_next_continue_token(&self) {
        self.state.lock().unwrap().expire_next_continue = true;
    }

    /// Another client creates `obj` just before our next create or patch of `resource`: the
    /// race a create-only write must lose cleanly.
    pub fn race_next_create(&self, resource: &str, obj: Value) {
        self.state
            .lock()
            .unwrap()
            .race_creates
            .push((resource.to_owned(), obj));
    }

    /// What the simulated controllers recorded as unsafe rollout steps.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Stores an object directly (as if another client had created it).
    pub fn put(&self, resource: &str, obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        let mut obj = obj;
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        // The uid an object keeps for its life (the one it had, when replaced).
        let uid = st
            .objects
            .get(&(resource.to_owned(), ns.clone(), name.clone()))
            .map(|o| o["metadata"]["uid"].clone())
            .unwrap_or_else(|| json!(format!("uid-{rv}")));
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = uid;
        }
        if obj["metadata"]["generation"].is_null() && is_workload(resource) {
            obj["metadata"]["generation"] = json!(1);
        }
        // The API server keeps a DaemonSet's template generation in this annotation (apps/v1
        // conversion of spec.templateGeneration), 1 on create.
        if resource == "daemonsets"
            && obj["metadata"]["annotations"][controllers::TEMPLATE_GENERATION].is_null()
        {
            obj["metadata"]["annotations"][controllers::TEMPLATE_GENERATION] = json!("1");
        }
        normalize_secret(resource, &mut obj);
        settle(resource, &mut obj, st.nodes);
        if resource == "pods" && obj["status"].is_null() {
            obj["status"] = controllers::running();
        }
        st.store((resource.into(), ns, name), obj);
    }

    /// Creates the rendered objects the server serves or authorizes with (RBAC), as a sync
    /// would; other kinds are skipped.
    pub fn load(&self, objects: &[Value]) {
        for o in objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            let resource = match kind {
                "Role" => "roles",
                "ClusterRole" => "clusterroles",
                "RoleBinding" => "rolebindings",
                "ClusterRoleBinding" => "clusterrolebindings",
                _ => match RESOURCES.iter().find(|(_, _, k)| *k == kind) {
                    Some((_, r, _)) => r,
                    None => continue,
                },
            };
            self.put(resource, o.clone());
        }
    }

    /// A ServiceAccount's token volume as the kubelet projects it (`token`, `ca.crt`,
    /// `namespace`); requests with that token are authorized by the RBAC the server holds.
    pub fn service_account(&self, namespace: &str, name: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let token = format!("sa-{namespace}-{name}-{:016x}", rand::random::<u64>());
        std::fs::write(dir.path().join("token"), &token).unwrap();
        std::fs::copy(self.ca_pem(), dir.path().join("ca.crt")).unwrap();
        std::fs::write(dir.path().join("namespace"), namespace).unwrap();
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token, format!("system:serviceaccount:{namespace}:{name}"));
        dir
    }

    /// Every object of `resource` in `namespace`.
    pub fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .filter(|((r, n, _), _)| r == resource && n == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    /// Records a test event in the request log (method `MARK`), to order it against the
    /// requests around it.
    pub fn mark(&self, what: &str) {
        self.state.lock().unwrap().log.push(Request {
            method: "MARK".into(),
            path: format!("/{what}"),
            query: BTreeMap::new(),
            content_type: String::new(),
            accept: String::new(),
            token: String::new(),
        });
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

/// Equality-based label selectors (`a=b,c=d`), the only form our client sends.
fn matches_selector(selector: Option<&String>, obj: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => obj["metadata"]["labels"][k] == v.trim_start_matches('='),
        None => false,
    })
}

/// The token carries the list's resourceVersion, as the real one does (unused here beyond
/// making tokens of different lists differ).
fn encode_continue(rv: u64, last: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json!({"rv": rv, "start": last}).to_string())
}

fn decode_continue(token: &str) -> Option<(u64, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    Some((v["rv"].as_u64()?, v["start"].as_str()?.to_owned()))
}

/// `fieldSelector` terms `a.b=v`, `a.b==v` and `a.b!=v` on dotted paths (what kubectl
/// describe sends for an object's Events: involvedObject name, namespace, kind and uid).
fn matches_fields(selector: Option<&String>, obj: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let field = |path: &str| {
        path.split('.')
            .fold(obj, |v, k| &v[k])
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    selector.split(',').all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            field(k) != v
        } else if let Some((k, v)) = term.split_once('=') {
            field(k) == v.trim_start_matches('=')
        } else {
            false
        }
    })
}

fn is_workload(resource: &str) -> bool {
    matches!(
        resource,
        "deployments" | "statefulsets" | "daemonsets" | "cronjobs"
    )
}

/// A controller that has finished: status reflects the current generation everywhere.
fn settle(resource: &str, obj: &mut Value, nodes: i64) {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    match resource {
        "deployments" => {
            obj["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas});
        }
        "statefulsets" => {
            let rev = format!("rev-{generation}");
            obj["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                "currentRevision": rev, "updateRevision": rev});
        }
        "daemonsets" => {
            obj["status"] = json!({"observedGeneration": generation, "desiredNumberScheduled": nodes,
                "currentNumberScheduled": nodes, "numberMisscheduled": 0, "numberReady": nodes,
                "updatedNumberScheduled": nodes, "numberAvailable": nodes});
        }
        _ => {}
    }
}

/// The API server turns `stringData` into base64 `data` on every write.
fn normalize_secret(resource: &str, obj: &mut Value) {
    if resource != "secrets" {
        return;
    }
    use base64::Engine as _;
    if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        let data = obj["data"].as_object().cloned().unwrap_or_default();
        let mut data = data;
        for (k, v) in sd.as_object().cloned().unwrap_or_default() {
            let s = v.as_str().unwrap_or("");
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(s)),
            );
        }
        obj["data"] = Value::Object(data);
    }
}

/// One server certificate for the whole test process (key generation is the slow part).
struct Tls {
    dir: tempfile::TempDir,
    config: Arc<rustls::ServerConfig>,
}

fn tls() -> &'static Tls {
    static TLS: OnceLock<Tls> = OnceLock::new();
    TLS.get_or_init(|| {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().unwrap();
        super::servers::make_certs(dir.path(), "api");
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.path().join("api.crt"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(dir.path().join("api.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Tls {
            dir,
            config: Arc::new(config),
        }
    })
}

fn serve(stream: impl Read + Write, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("/").to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let mut body = Vec::new();
        if let Some(len) = headers
            .get("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            body.resize(len, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let (path, query) = split_query(&target);
        let content_type = headers.get("content-type").cloned().unwrap_or_default();
        let accept = headers.get("accept").cloned().unwrap_or_default();
        let token = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let req = Request {
            method,
            path,
            query,
            content_type,
            accept,
            token,
        };
        let (code, value) = handle(&state, &req, &body);
        // A dropped connection: no answer at all.
        if code == DROP {
            return;
        }
        if let Some(w) = value.get(WATCH) {
            let resource = w["resource"].as_str().unwrap_or_default().to_owned();
            let ns = w["ns"].as_str().unwrap_or_default().to_owned();
            let fault = w["fault"].as_str().map(str::to_owned);
            if !watch(
                reader.get_mut(),
                &state,
                &req,
                &resource,
                &ns,
                fault.as_deref(),
            ) {
                return;
            }
            continue;
        }
        let text = serde_json::to_vec(&value).unwrap();
        let reason = match code {
            200 => "OK",
            201 => "Created",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            409 => "Conflict",
            410 => "Gone",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let retry_after = match value["details"]["retryAfterSeconds"].as_u64() {
            Some(s) => format!("Retry-After: {s}\r\n"),
            None => String::new(),
        };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{retry_after}Content-Length: {}\r\n\r\n",
            text.len()
        );
        let stream = reader.get_mut();
        if stream
            .write_all(head.as_bytes())
            .and_then(|_| stream.write_all(&text))
            .and_then(|_| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// `handle`'s answer for a request whose connection is to be dropped.
const DROP: u16 = 0;
/// The key of `handle`'s answer to a watch that passed every check: `serve` streams it.
const WATCH: &str = "$watch";
/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK (the real server: about a
/// minute; shorter here so tests see them).
const BOOKMARK_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// How long a watch that a test made end early lasts.
const EARLY_END: std::time::Duration = std::time::Duration::from_millis(300);

/// Streams a watch of `resource` in `ns` as the real server does, chunked, one event a line.
/// Whether the connection can serve another request (false when it was dropped).
fn watch(
    stream: &mut impl Write,
    state: &Arc<Mutex<State>>,
    req: &Request,
    resource: &str,
    ns: &str,
    fault: Option<&str>,
) -> bool {
    let end_early = fault == Some("end");
    use std::time::{Duration, Instant};
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.flush())
        .is_err()
    {
        return false;
    }
    let send = |stream: &mut dyn Write, event: &Value| {
        let mut line = serde_json::to_vec(event).unwrap();
        line.push(b'\n');
        write!(stream, "{:x}\r\n", line.len())
            .and_then(|_| stream.write_all(&line))
            .and_then(|_| stream.write_all(b"\r\n"))
            .and_then(|_| stream.flush())
    };
    let started = Instant::now();
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let bookmarks = req
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let matches = |key: &(String, String, String), obj: &Value| {
        key.0 == resource
            && key.1 == ns
            && matches_selector(req.query.get("labelSelector"), obj)
            && matches_fields(req.query.get("fieldSelector"), obj)
    };
    let from = req
        .query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let mut cursor = {
        let st = state.lock().unwrap();
        let compacted = if fault == Some("expired") {
            st.rv + 1
        } else {
            st.compacted
        };
        match from {
            Some(rv) if rv < compacted => {
                let (_, status) = status(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({compacted})"),
                );
                drop(st);
                let ok = send(stream, &json!({"type": "ERROR", "object": status})).is_ok();
                return ok
                    && stream
                        .write_all(b"0\r\n\r\n")
                        .and_then(|_| stream.flush())
                        .is_ok();
            }
            Some(rv) => rv,
            // No resourceVersion: the current objects first, as ADDED, then what follows.
            None => {
                let now: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|(k, o)| matches(k, o))
                    .map(|(_, o)| json!({"type": "ADDED", "object": o}))
                    .collect();
                let rv = st.rv;
                drop(st);
                for e in now {
                    if send(stream, &e).is_err() {
                        return false;
                    }
                }
                rv
            }
        }
    };
    let mut last_bookmark = Instant::now();
    loop {
        if end_early && started.elapsed() >= EARLY_END {
            // Gone without the stream's last chunk, as when a proxy or the server restarts.
            return false;
        }
        if started.elapsed() >= timeout {
            return stream
                .write_all(b"0\r\n\r\n")
                .and_then(|_| stream.flush())
                .is_ok();
        }
        let (events, now) = {
            let mut st = state.lock().unwrap();
            controllers::tick(&mut st);
            let events: Vec<Value> = st
                .history
                .iter()
                .filter(|c| c.rv > cursor && matches(&c.key, &c.object))
                .map(|c| json!({"type": c.kind, "object": c.object}))
                .collect();
            (events, st.rv)
        };
        for e in &events {
            if send(stream, e).is_err() {
                return false;
            }
        }
        cursor = now;
        if bookmarks && last_bookmark.elapsed() >= BOOKMARK_EVERY {
            last_bookmark = Instant::now();
            let kind = RESOURCES
                .iter()
                .find(|(_, r, _)| *r == resource)
                .map_or("", |(_, _, k)| k);
            let bookmark = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1",
                "metadata": {"resourceVersion": now.to_string()}}});
            if send(stream, &bookmark).is_err() {
                return false;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn split_query(target: &str) -> (String, BTreeMap<String, String>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    (path.to_owned(), query)
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(c) => {
                        out.push(c);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (group-version prefix, resource, kind) of everything the server serves.
const RESOURCES: &[(&str, &str, &str)] = &[
    ("v1", "secrets", "Secret"),
    ("v1", "configmaps", "ConfigMap"),
    ("v1", "pods", "Pod"),
    ("v1", "events", "Event"),
    ("apps/v1", "deployments", "Deployment"),
    ("apps/v1", "statefulsets", "StatefulSet"),
    ("apps/v1", "daemonsets", "DaemonSet"),
    ("batch/v1", "cronjobs", "CronJob"),
    ("coordination.k8s.io/v1", "leases", "Lease"),
];

fn discovery(path: &str) -> Option<Value> {
    let list = |gv: &str| {
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|(g, _, _)| *g == gv)
            .map(|(_, r, k)| {
                json!({"name": r, "singularName": k.to_lowercase(), "namespaced": true, "kind": k,
                       "verbs": ["create", "delete", "get", "list", "patch", "update"]})
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
    };
    Some(match path {
        "/version" => json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-credseal-fake"}),
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/apis" => {
            let groups: Vec<Value> = ["apps", "batch", "coordination.k8s.io"]
                .iter()
                .map(|g| {
                    json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
                           "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        "/api/v1" => list("v1"),
        "/apis/apps/v1" => list("apps/v1"),
        "/apis/batch/v1" => list("batch/v1"),
        "/apis/coordination.k8s.io/v1" => list("coordination.k8s.io/v1"),
        _ => return None,
    })
}

fn handle(state: &Arc<Mutex<State>>, req: &Request, body: &[u8]) -> (u16, Value) {
    let mut st = state.lock().unwrap();
    controllers::tick(&mut st);
    st.log.push(req.clone());
    if req.method == "GET" {
        if let Some(d) = discovery(&req.path) {
            return (200, d);
        }
    }
    // Any authenticated identity may ask what it may do (system:basic-user).
    if req.method == "POST" && req.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    {
        let mut review: Value = serde_json::from_slice(body).unwrap_or_default();
        let attrs = &review["spec"]["resourceAttributes"];
        let text = |k: &str| attrs[k].as_str().unwrap_or_default().to_owned();
        let (verb, group, resource, namespace, name) = (
            text("verb"),
            text("group"),
            text("resource"),
            text("namespace"),
            attrs["name"].as_str().map(str::to_owned),
        );
        let allowed = match st.tokens.get(&req.token) {
            None => true,
            Some(user) => super::rbac::allowed(
                &st.objects,
                &super::rbac::Attributes {
                    user,
                    verb: &verb,
                    group: &group,
                    resource: &resource,
                    subresource: None,
                    namespace: &namespace,
                    name: name.as_deref(),
                },
            ),
        };
        review["status"] = json!({"allowed": allowed});
        return (201, review);
    }
    // /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]] or /apis/{g}/{v}/namespaces/...
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let (ns, resource, name, subresource) = match rest {
        ["namespaces", ns, resource] => (*ns, *resource, None, None),
        ["namespaces", ns, resource, name] => (*ns, *resource, Some(*name), None),
        ["namespaces", ns, resource, name, sub] => (*ns, *resource, Some(*name), Some(*sub)),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    };
    let Some((_, _, kind)) = RESOURCES.iter().find(|(_, r, _)| *r == resource) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let verb = match (req.method.as_str(), name) {
        ("GET", None)
            if req
                .query
                .get("watch")
                .is_some_and(|w| w == "true" || w == "1") =>
        {
            "watch"
        }
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", None) => "deletecollection",
        ("DELETE", _) => "delete",
        _ => return status(405, "MethodNotAllowed", "method not allowed"),
    };
    if let Some(i) = st
        .faults
        .iter()
        .position(|(v, r, left, _)| v == verb && r == resource && *left > 0)
    {
        st.faults[i].2 -= 1;
        match st.faults[i].3 {
            Fault::Status(code) => {
                let reason = match code {
                    403 => "Forbidden",
                    503 => "ServiceUnavailable",
                    504 => "Timeout",
                    _ => "InternalError",
                };
                return status(
                    code,
                    reason,
                    "an error on the server (\"\") has prevented the request from succeeding",
                );
            }
            Fault::TooManyRequests(seconds) => {
                let (code, mut value) = status(
                    429,
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later",
                );
                value["details"] = json!({"retryAfterSeconds": seconds});
                return (code, value);
            }
            Fault::Drop => return (DROP, Value::Null),
            // Faults of the stream itself, once the watch has passed every check.
            Fault::EndWatch | Fault::Expired => st.faults[i].2 += 1,
        }
    }
    // A list or watch of one name (`fieldSelector=metadata.name=NAME`) is authorized by that
    // name, as the real API server's request info takes it from the selector.
    let selected: Option<String> = match verb {
        "list" | "watch" => req.query.get("fieldSelector").and_then(|f| {
            f.split(',')
                .find_map(|t| t.strip_prefix("metadata.name="))
                .map(|n| n.trim_start_matches('=').to_owned())
        }),
        _ => None,
    };
    if let Some(user) = st.tokens.get(&req.token) {
        let attrs = super::rbac::Attributes {
            user,
            verb,
            group,
            resource,
            subresource,
            namespace: ns,
            name: name.or(selected.as_deref()),
        };
        if !super::rbac::allowed(&st.objects, &attrs) {
            return status(403, "Forbidden", &super::rbac::forbidden_message(&attrs));
        }
    }
    if subresource.is_some() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if st
        .denied
        .contains(&(verb.into(), resource.into(), ns.into()))
    {
        let what = match name {
            Some(n) => format!("{resource} \"{n}\""),
            None => resource.to_owned(),
        };
        return status(
            403,
            "Forbidden",
            &format!(
                "{what} is forbidden: User \"system:serviceaccount:credseal:deployer\" cannot {verb} resource \"{resource}\" in API group \"\" in the namespace \"{ns}\""
            ),
        );
    }
    // The race a test asked for: another client creates the object first, owning its fields
    // (as the real server records a creating client's fields in managedFields).
    if matches!(verb, "create" | "patch") {
        if let Some(i) = st.race_creates.iter().position(|(r, _)| r == resource) {
            let (r, other) = st.race_creates.remove(i);
            let name = other["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            drop(st);
            KubeApi {
                port: 0,
                state: state.clone(),
            }
            .put(&r, other);
            st = state.lock().unwrap();
            let created = st.objects[&(r.clone(), ns.to_owned(), name.clone())].clone();
            let mut owned = BTreeSet::new();
            fields(&created, "", &mut owned);
            st.managed.insert(
                (r, ns.to_owned(), name),
                BTreeMap::from([("other-client".to_owned(), owned)]),
            );
        }
    }
    let dry_run = req.query.get("dryRun").is_some_and(|v| v == "All");
    let not_found = |n: &str| status(404, "NotFound", &format!("{resource} \"{n}\" not found"));
    let parse_body = || -> Result<Value, (u16, Value)> {
        serde_json::from_slice(body)
            .map_err(|_| status(400, "BadRequest", "the body is not valid JSON"))
    };
    let key = |n: &str| (resource.to_owned(), ns.to_owned(), n.to_owned());
    match (verb, name) {
        ("watch", None) => {
            let fault = st
                .faults
                .iter_mut()
                .find(|(v, r, left, _)| v == verb && r == resource && *left > 0)
                .map(|(_, _, left, f)| {
                    *left -= 1;
                    match f {
                        Fault::Expired => "expired",
                        _ => "end",
                    }
                });
            (
                200,
                json!({WATCH: {"resource": resource, "ns": ns, "fault": fault}}),
            )
        }
        ("list", None) => {
            // Pages (`limit`/`continue`) in name order, as the real server; a continue token
            // the server compacted past is 410 Gone (simulated on demand).
            let after = match req.query.get("continue") {
                None => None,
                Some(token) => match decode_continue(token) {
                    Some(_) if st.expire_next_continue => {
                        st.expire_next_continue = false;
                        return status(
                            410,
                            "Expired",
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results.",
                        );
                    }
                    Some((_, last)) => Some(last),
                    None => return status(400, "BadRequest", "invalid continue token"),
                },
            };
            let limit = req
                .query
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let matching: Vec<(&String, &Value)> = st
                .objects
                .iter()
                .filter(|((r, n, name), o)| {
                    r == resource
                        && n == ns
                        && after.as_ref().is_none_or(|a| name > a)
                        && matches_selector(req.query.get("labelSelector"), o)
                        && matches_fields(req.query.get("fieldSelector"), o)
                })
                .map(|((_, _, name), v)| (name, v))
                .collect();
            let shown = limit.unwrap_or(matching.len()).min(matching.len());
            let items: Vec<Value> = matching[..shown]
                .iter()
                .map(|(_, v)| (*v).clone())
                .collect();
            let mut metadata = json!({"resourceVersion": st.rv.to_string()});
            if shown < matching.len() {
                metadata["continue"] = json!(encode_continue(st.rv, matching[shown - 1].0));
                metadata["remainingItemCount"] = json!(matching.len() - shown);
            }
            (
                200,
                json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": metadata, "items": items}),
            )
        }
        ("get", Some(n)) => match st.objects.get(&key(n)) {
            Some(o) if req.accept.contains("as=PartialObjectMetadata") => (
                200,
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            ),
            Some(o) => (200, o.clone()),
            None => not_found(n),
        },
        ("create", _) => {
            let mut obj = match parse_body() {
                Ok(o) => o,
                Err(e) => return e,
            };
            let mut n = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if n.is_empty() {
                if let Some(prefix) = obj["metadata"]["generateName"].as_str() {
                    n = format!("{prefix}{}", st.rv + 1);
                    obj["metadata"]["name"] = json!(n);
                }
            }
            if st.objects.contains_key(&key(&n)) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{resource} \"{n}\" already exists"),
                );
            }
            obj["metadata"]["namespace"] = json!(ns);
            normalize_secret(resource, &mut obj);
            if !dry_run {
                st.rv += 1;
                obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                obj["metadata"]["uid"] = json!(format!("uid-{}", st.rv));
                st.store(key(&n), obj.clone());
            }
            (201, obj)
        }
        ("update", Some(n)) => {
            let mut obj = match parse_body() {
                Ok(o) => o,
                Err(e) => return e,
            };
            let Some(current) = st.objects.get(&key(n)).cloned() else {
                return not_found(n);
            };
            let sent = obj["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            if sent.is_some() && sent.as_deref() != current["metadata"]["resourceVersion"].as_str()
            {
                return status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {resource} \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                );
            }
            normalize_secret(resource, &mut obj);
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
            if !dry_run {
                st.rv += 1;
                obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
                st.store(key(n), obj.clone());
            }
            (200, obj)
        }
        ("patch", Some(n)) => patch(&mut st, req, body, resource, ns, n, dry_run),
        ("delete", Some(n)) => match st.objects.get(&key(n)).cloned() {
            None => not_found(n),
            // DeleteOptions.preconditions, as on an update.
            Some(o)
                if serde_json::from_slice::<Value>(body).is_ok_and(|b| {
                    let want = &b["preconditions"]["resourceVersion"];
                    !want.is_null() && *want != o["metadata"]["resourceVersion"]
                }) =>
            {
                status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {resource} \"{n}\": the ResourceVersion in the precondition does not match"
                    ),
                )
            }
            Some(o) => {
                if !dry_run {
                    st.unstore(&key(n));
                    st.managed.remove(&key(n));
                    if resource == "pods" {
                        controllers::pod_deleted(&mut st, ns, o.clone());
                    }
                }
                (200, o)
            }
        },
        _ => status(405, "MethodNotAllowed", "method not allowed"),
    }
}

/// Leaf field paths of an applied object that a manager owns (metadata identity aside).
fn fields(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                if prefix == "metadata"
                    && matches!(
                        k.as_str(),
                        "name" | "namespace" | "resourceVersion" | "uid" | "managedFields"
                    )
                {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}\u{1f}{k}")
                };
                match (patch_merge_key(k), v) {
                    // An associative list (`listType: map`): each element is owned by key,
                    // so managers can own different containers of one list.
                    (Some(key), Value::Array(items)) if items.iter().all(|i| !i[key].is_null()) => {
                        for item in items {
                            let element = format!("{p}\u{1f}k:{key}={}", element_id(&item[key]));
                            out.insert(element.clone());
                            fields(item, &element, out);
                        }
                    }
                    _ => fields(v, &p, out),
                }
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn element_id(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A path segment `k:KEY=VALUE` names the element of an associative list whose KEY is VALUE.
fn element_segment(seg: &str) -> Option<(&str, &str)> {
    seg.strip_prefix("k:")?.split_once('=')
}

/// Whether a managed path names a whole list element (owned as a unit, like SSA's `.`).
fn is_element(path: &str) -> bool {
    path.rsplit('\u{1f}')
        .next()
        .is_some_and(|s| element_segment(s).is_some())
}

fn child<'a>(v: &'a Value, seg: &str) -> Option<&'a Value> {
    match element_segment(seg) {
        Some((key, id)) => v.as_array()?.iter().find(|e| element_id(&e[key]) == id),
        None => v.get(seg),
    }
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('\u{1f}').try_fold(v, child)
}

/// The child `seg` of `cur`, created when missing (an element with just its key).
fn child_mut<'a>(cur: &'a mut Value, seg: &str, next_is_element: bool) -> &'a mut Value {
    if let Some((key, id)) = element_segment(seg) {
        if !cur.is_array() {
            *cur = json!([]);
        }
        let items = cur.as_array_mut().unwrap();
        let at = match items.iter().position(|e| element_id(&e[key]) == id) {
            Some(i) => i,
            None => {
                let key_value = id.parse::<i64>().map_or_else(|_| json!(id), |n| json!(n));
                items.push(json!({ key: key_value }));
                items.len() - 1
            }
        };
        return &mut items[at];
    }
    let empty = if next_is_element {
        json!([])
    } else {
        json!({})
    };
    if !cur.get(seg).is_some_and(|c| c.is_object() || c.is_array()) {
        cur[seg] = empty;
    }
    cur.get_mut(seg).unwrap()
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('\u{1f}').collect();
    let mut cur = v;
    for (i, k) in parts[..parts.len() - 1].iter().enumerate() {
        let next_is_element = element_segment(parts[i + 1]).is_some();
        cur = child_mut(cur, k, next_is_element);
    }
    let last = parts[parts.len() - 1];
    if element_segment(last).is_some() {
        // The element itself: created with its key if missing, its fields set one by one.
        child_mut(cur, last, false);
    } else {
        cur[last] = value;
    }
}

fn remove_path(v: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('\u{1f}').collect();
    let mut cur = v;
    for k in &parts[..parts.len() - 1] {
        let next = match element_segment(k) {
            Some((key, id)) => cur
                .as_array_mut()
                .and_then(|items| items.iter_mut().find(|e| element_id(&e[key]) == id)),
            None => cur.get_mut(*k),
        };
        match next {
            Some(c) => cur = c,
            None => return,
        }
    }
    let last = parts[parts.len() - 1];
    match element_segment(last) {
        Some((key, id)) => {
            if let Some(items) = cur.as_array_mut() {
                items.retain(|e| element_id(&e[key]) != id);
            }
        }
        None => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(last);
            }
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    merge_patch(t.get_mut(k).unwrap(), v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// The `patchMergeKey` of the lists a strategic merge patch merges element by element (from
/// the Kubernetes API's `x-kubernetes-patch-merge-key`); other lists are replaced whole.
fn patch_merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

/// A strategic merge patch: a JSON merge patch, except that lists with a merge key merge by
/// it (`$patch: delete` removes an element) and `$`-directives are not stored.
fn strategic_merge(target: &mut Value, patch: &Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        match (patch_merge_key(k), v, t.get_mut(k)) {
            (_, Value::Null, _) => {
                t.remove(k);
            }
            (Some(key), Value::Array(items), Some(Value::Array(current))) => {
                for item in items {
                    let id = &item[key];
                    let at = current.iter().position(|c| &c[key] == id);
                    match (at, item["$patch"].as_str()) {
                        (Some(i), Some("delete")) => {
                            current.remove(i);
                        }
                        (None, Some("delete")) => {}
                        (Some(i), _) => strategic_merge(&mut current[i], item),
                        (None, _) => {
                            let mut fresh = json!({});
                            strategic_merge(&mut fresh, item);
                            current.push(fresh);
                        }
                    }
                }
            }
            (_, Value::Object(_), Some(existing)) if existing.is_object() => {
                strategic_merge(existing, v)
            }
            _ => {
                let mut fresh = if v.is_object() {
                    json!({})
                } else {
                    Value::Null
                };
                strategic_merge(&mut fresh, v);
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn patch(
    st: &mut State,
    req: &Request,
    body: &[u8],
    resource: &str,
    ns: &str,
    n: &str,
    dry_run: bool,
) -> (u16, Value) {
    let key = (resource.to_owned(), ns.to_owned(), n.to_owned());
    let ct = req.content_type.split(';').next().unwrap_or("").trim();
    let mut body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return status(400, "BadRequest", "the body is not valid JSON"),
    };
    let current = st.objects.get(&key).cloned();
    let (code, mut obj) = match ct {
        "application/apply-patch+yaml" => {
            let Some(manager) = req.query.get("fieldManager").cloned() else {
                return status(
                    400,
                    "BadRequest",
                    "PATCH with apply-patch+yaml requires fieldManager",
                );
            };
            let force = req.query.get("force").is_some_and(|f| f == "true");
            // A resourceVersion in the applied object is a precondition, as on an update.
            if let Some(want) = body["metadata"]["resourceVersion"].as_str() {
                let have = current
                    .as_ref()
                    .and_then(|c| c["metadata"]["resourceVersion"].as_str());
                if have != Some(want) {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {resource} \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                    );
                }
                body["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("resourceVersion"));
            }
            normalize_secret(resource, &mut body);
            let mut applied = BTreeSet::new();
            fields(&body, "", &mut applied);
            let mut obj = current.clone().unwrap_or_else(|| json!({"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": {"name": n, "namespace": ns}}));
            let mut managed = st.managed.get(&key).cloned().unwrap_or_default();
            // Conflicts: a field another manager owns with a different value.
            if !force {
                let mut conflicts = Vec::new();
                for (other, owned) in &managed {
                    if *other == manager {
                        continue;
                    }
                    for f in owned.intersection(&applied) {
                        if !is_element(f) && get_path(&obj, f) != get_path(&body, f) {
                            conflicts.push(format!(
                                "conflict with \"{other}\": .{}",
                                f.replace('\u{1f}', ".")
                            ));
                        }
                    }
                }
                if !conflicts.is_empty() {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Apply failed with {} conflicts: {}",
                            conflicts.len(),
                            conflicts.join(", ")
                        ),
                    );
                }
            }
            // Fields this manager applied before and no longer does are removed (unless shared).
            let before = managed.get(&manager).cloned().unwrap_or_default();
            for f in before.difference(&applied) {
                let shared = managed.iter().any(|(m, o)| *m != manager && o.contains(f));
                if !shared {
                    remove_path(&mut obj, f);
                }
            }
            // A field applied with another manager's value is shared; a forced different
            // value takes it over.
            let taken: BTreeSet<String> = applied
                .iter()
                .filter(|f| !is_element(f) && get_path(&obj, f) != get_path(&body, f))
                .cloned()
                .collect();
            for f in &applied {
                set_path(
                    &mut obj,
                    f,
                    get_path(&body, f).cloned().unwrap_or(Value::Null),
                );
            }
            for (m, owned) in managed.iter_mut() {
                if *m != manager {
                    owned.retain(|f| !taken.contains(f));
                }
            }
            managed.insert(manager.clone(), applied);
            let entries: Vec<Value> = managed
                .iter()
                .filter(|(_, o)| !o.is_empty())
                .map(|(m, _)| json!({"manager": m, "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1"}))
                .collect();
            obj["metadata"]["managedFields"] = Value::Array(entries);
            if !dry_run {
                st.managed.insert(key.clone(), managed);
            }
            (if current.is_some() { 200 } else { 201 }, obj)
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            let Some(mut obj) = current.clone() else {
                return status(404, "NotFound", &format!("{resource} \"{n}\" not found"));
            };
            let before_spec = obj["spec"].clone();
            if ct == "application/strategic-merge-patch+json" {
                strategic_merge(&mut obj, &body);
            } else {
                merge_patch(&mut obj, &body);
            }
            normalize_secret(resource, &mut obj);
            if is_workload(resource) && obj["spec"] != before_spec {
                let g = obj["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
                obj["metadata"]["generation"] = json!(g);
                // A DaemonSet's template generation moves with its template only.
                if resource == "daemonsets" && obj["spec"]["template"] != before_spec["template"] {
                    let annotations = &mut obj["metadata"]["annotations"];
                    let t = annotations[controllers::TEMPLATE_GENERATION]
                        .as_str()
                        .and_then(|t| t.parse::<i64>().ok())
                        .unwrap_or(1);
                    annotations[controllers::TEMPLATE_GENERATION] = json!((t + 1).to_string());
                }
                if !dry_run {
                    controllers::template_changed(st, resource, ns, n);
                }
            }
            (200, obj)
        }
        other => {
            return status(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {other}"
                ),
            );
        }
    };
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["name"] = json!(n);
    let unchanged = current.as_ref().is_some_and(|c| {
        let mut a = c.clone();
        let mut b = obj.clone();
        for x in [&mut a, &mut b] {
            if let Some(m) = x["metadata"].as_object_mut() {
                m.remove("resourceVersion");
                m.remove("managedFields");
            }
        }
        a == b
    });
    if unchanged {
        obj["metadata"]["resourceVersion"] =
            current.as_ref().unwrap()["metadata"]["resourceVersion"].clone();
    } else if !dry_run {
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{}", st.rv));
        }
    }
    if !dry_run {
        st.store(key, obj.clone());
    }
    let _: &Map<String, Value> = obj.as_object().unwrap();
    (code, obj)
}
