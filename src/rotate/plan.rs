//! The rotation plan (`kind: RotationPlan`), read from YAML with the same parser as the SOPS
//! files and validated before anything runs.

use std::time::Duration;

use serde::Deserialize;

use crate::k8s::workloads::{Kind, Workload};
use crate::sops::tree::{Node, Timestamp};
use crate::sops::yaml;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid YAML")]
    Yaml(#[from] yaml::YamlError),
    #[error("{0}")]
    Invalid(String),
}

/// A validated plan: every credential's engine, strategy and target are one of the valid
/// combinations, so nothing downstream has to check them again.
#[derive(Debug)]
pub struct Plan {
    pub api_version: String,
    pub kind: String,
    pub credentials: Vec<Credential>,
}

/// One credential to rotate.
#[derive(Clone, Debug)]
pub struct Credential {
    pub name: String,
    /// PostgreSQL role or Redis ACL user (`default` is the requirepass user).
    pub role: String,
    /// The engine and how its password changes.
    pub method: Method,
    /// Where the current password lives.
    pub target: TargetSpec,
    pub admin: Admin,
    pub password: PasswordPolicy,
    /// Skip a credential rotated less than this long ago (e.g. `20h`); default: every run.
    pub rotate_after: Option<Duration>,
    /// How long to wait for the databases: `{connect: 10s, request: 30s}` by default. A server
    /// that accepts a connection and never answers fails the run after these, changing nothing
    /// it had not already.
    pub timeouts: Timeouts,
    /// How long the rotation lock (a Lease) outlives a run that died holding it, before
    /// another run may take it over (default `60s`; renewed every third of it while held).
    pub lock_duration: Option<Duration>,
    pub rollout: Rollout,
}

/// An engine with one of the strategies it supports: the plan's `engine` and `strategy`, with
/// the settings only that pair reads.
#[derive(Clone, Debug)]
pub enum Method {
    Postgres(PgStrategy),
    Redis {
        strategy: RedisStrategy,
        /// Which nodes hold the user (ACL changes are not replicated).
        topology: Topology,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgStrategy {
    /// One password: new connections with the old one fail between apply and roll.
    InPlace,
    /// Two roles `<role>_a`/`<role>_b`; the inactive one gets the new password, and the retired
    /// one keeps logging in for `grace` (the plan's `grace`, default `1h`).
    Alternating { grace: Duration },
    /// Run by an operator (CloudNativePG): credseal writes the new password to the Secret the
    /// operator watches and waits up to `timeout` (`operatorTimeout`, default `5m`) until the
    /// operator has applied it.
    Operator { timeout: Duration },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisStrategy {
    /// One password: new connections with the old one fail between apply and roll.
    InPlace,
    /// The ACL user holds both passwords until the roll is done, and the old one for `grace`
    /// after it (none: retired at once); the first run after that retires it, for consumers
    /// that read a file target only when they start.
    Dual { grace: Option<Duration> },
}

impl Method {
    /// As the plan and the audit lines name the engine.
    pub fn engine_name(&self) -> &'static str {
        match self {
            Method::Postgres(_) => "postgres",
            Method::Redis { .. } => "redis",
        }
    }
}

/// Where the password lives: a value in a SOPS file, or in a Kubernetes Secret.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    File(FileRef),
    Secret(SecretRef),
}

impl TargetSpec {
    pub fn file(&self) -> Option<&FileRef> {
        match self {
            TargetSpec::File(f) => Some(f),
            TargetSpec::Secret(_) => None,
        }
    }

    pub fn secret(&self) -> Option<&SecretRef> {
        match self {
            TargetSpec::Secret(s) => Some(s),
            TargetSpec::File(_) => None,
        }
    }
}

/// The plan as written, before its combinations are checked.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPlan {
    api_version: String,
    kind: String,
    credentials: Vec<RawCredential>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Engine {
    Postgres,
    Redis,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum Strategy {
    InPlace,
    Alternating,
    Dual,
    Operator,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCredential {
    name: String,
    engine: Engine,
    strategy: Strategy,
    role: String,
    target: RawTarget,
    admin: Admin,
    #[serde(default)]
    password: PasswordPolicy,
    #[serde(default, deserialize_with = "duration_opt")]
    rotate_after: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    operator_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration_opt")]
    grace: Option<Duration>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default, deserialize_with = "duration_opt")]
    lock_duration: Option<Duration>,
    #[serde(default)]
    rollout: RawRollout,
    #[serde(default)]
    topology: Topology,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTarget {
    file: Option<FileRef>,
    secret: Option<SecretRef>,
}

/// Connect and request timeouts for one credential's database connections.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting and logging in (TCP, TLS, authentication).
    #[serde(default, deserialize_with = "duration_opt")]
    pub connect: Option<Duration>,
    /// One request once connected.
    #[serde(default, deserialize_with = "duration_opt")]
    pub request: Option<Duration>,
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        self.connect.unwrap_or(Duration::from_secs(10))
    }

    pub fn request(&self) -> Duration {
        self.request.unwrap_or(Duration::from_secs(30))
    }
}

impl Credential {
    /// When a credential last rotated at `rotated_at` is next due (Unix seconds): `rotateAfter`
    /// later. `None`: due at every run, having no `rotateAfter` or no recorded rotation.
    pub fn next_due(&self, rotated_at: Option<&Timestamp>) -> Option<i64> {
        let after = i64::try_from(self.rotate_after?.as_secs()).unwrap_or(i64::MAX);
        Some(rotated_at?.unix().saturating_add(after))
    }

    /// Whether a run at `now` (Unix seconds) rotates it: the one rule `rotate` acts on and
    /// `status` reports.
    pub fn is_due(&self, rotated_at: Option<&Timestamp>, now: i64) -> bool {
        self.next_due(rotated_at).is_none_or(|due| now >= due)
    }

    /// Whether any part of this credential lives in or acts on the cluster.
    pub fn needs_cluster(&self) -> bool {
        let pem_in_secret = [
            &self.admin.ca,
            &self.admin.client_cert,
            &self.admin.client_key,
        ]
        .iter()
        .any(|p| p.as_ref().is_some_and(|p| p.secret.is_some()));
        let password_in_secret = self
            .admin
            .password
            .as_ref()
            .is_some_and(|p| p.secret.is_some());
        matches!(self.target, TargetSpec::Secret(_))
            || !self.rollout.also.is_empty()
            || pem_in_secret
            || password_in_secret
            || matches!(
                self.method,
                Method::Redis {
                    topology: Topology::Replication {
                        stateful_set: Some(_),
                        ..
                    },
                    ..
                }
            )
    }

    /// Dual with a grace: how long the old password stays valid after the roll.
    pub fn retire_grace(&self) -> Option<Duration> {
        match self.method {
            Method::Redis {
                strategy: RedisStrategy::Dual { grace },
                ..
            } => grace.filter(|g| !g.is_zero()),
            _ => None,
        }
    }
}

/// Redis nodes: one server, a master (the admin URL) with replicas, or a Sentinel-managed set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Topology {
    #[default]
    Standalone,
    #[serde(rename_all = "camelCase")]
    Replication {
        /// `host:port` of each replica (e.g. the StatefulSet pods' DNS names).
        #[serde(default)]
        replicas: Vec<String>,
        /// Or: every pod of this StatefulSet, found from the API at each step (pods come and
        /// go with new IPs); the one that reports `role:master` is the master.
        #[serde(default)]
        stateful_set: Option<PodSet>,
    },
    #[serde(rename_all = "camelCase")]
    Sentinel {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        master_name: String,
    },
}

/// The pods of a StatefulSet, as Redis nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSet {
    pub namespace: String,
    pub name: String,
    /// The port each pod's Redis listens on (default: the admin URL's port).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub address: PodAddress,
}

/// How a pod is reached.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum PodAddress {
    /// The pod's IP (`status.podIP`): needs no DNS, but a TLS certificate must name the IP.
    #[default]
    #[serde(rename = "podIP")]
    PodIp,
    /// `<pod>.<serviceName>.<namespace>.svc`, the name the StatefulSet's headless Service
    /// gives each pod: what TLS certificates usually name (`*.redis.cache.svc`).
    #[serde(rename = "dns")]
    Dns,
}

/// How consumers are restarted after a commit.
#[derive(Clone, Debug, Default)]
pub struct Rollout {
    /// How long each workload may take to become healthy (default `10m`).
    pub timeout: Option<Duration>,
    /// Workloads rolled first (the database tier), in order, beside the discovered consumers.
    pub also: Vec<Workload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRollout {
    #[serde(default, deserialize_with = "duration_opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    also: Vec<WorkloadRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WorkloadRef {
    kind: String,
    namespace: String,
    name: String,
}

/// A value in a Kubernetes Secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub username_key: Option<String>,
}

/// A value inside a SOPS file: `key` is a tree path like `["stringData"]["password"]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRef {
    pub path: String,
    pub key: String,
    /// Where the username lives (alternating strategy), e.g. `["stringData"]["username"]`.
    #[serde(default)]
    pub username_key: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    pub url: String,
    #[serde(default)]
    pub password: Option<AdminPassword>,
    /// The CA that signed the server's certificate; makes `verify-full` the default.
    #[serde(default)]
    pub ca: Option<PemFile>,
    /// Redis over TLS with `tls-auth-clients yes`: the client certificate and its key.
    #[serde(default)]
    pub client_cert: Option<PemFile>,
    #[serde(default)]
    pub client_key: Option<PemFile>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PemFile {
    /// A PEM file (relative to the plan).
    #[serde(default)]
    pub file: Option<String>,
    /// A key of a Secret holding the PEM (e.g. a cert-manager `ca.crt`).
    #[serde(default)]
    pub secret: Option<KeyRef>,
}

/// One key of one Secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminPassword {
    pub env: Option<String>,
    pub file: Option<FileRef>,
    /// A key of a Secret (read through the API: the rotator's Role needs `get` on it), so the
    /// password is neither in the pod's environment nor on a volume.
    #[serde(default)]
    pub secret: Option<KeyRef>,
    /// The admin logs in with the credential being rotated (e.g. Redis `default`).
    #[serde(default)]
    pub target: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Charset {
    /// Letters, digits, `-` and `_`: safe in URLs, shells and config files.
    #[default]
    UrlSafe,
    Alphanumeric,
    /// Printable ASCII without space, quotes or backslash.
    Symbols,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordPolicy {
    #[serde(default = "default_length")]
    pub length: usize,
    #[serde(default)]
    pub charset: Charset,
}

fn default_length() -> usize {
    32
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            length: default_length(),
            charset: Charset::UrlSafe,
        }
    }
}

/// The longest duration a plan may give: 100 years. Durations are added to clocks
/// (`Instant::now() + timeout`, `now + grace`), which overflow and panic far beyond it.
pub const MAX_DURATION_SECS: u64 = 36_500 * 86_400;

/// `90s`, `10m`, `24h`, `7d`, `2w`, or a sum like `1h30m` (humantime's syntax); whole seconds
/// (lastmodified and Lease times are), at most [`MAX_DURATION_SECS`].
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim())
        .ok()
        .filter(|d| d.subsec_nanos() == 0 && d.as_secs() <= MAX_DURATION_SECS)
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| {
        parse_duration(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration like 10m or 24h (at most 36500d)"
            ))
        })
    })
    .transpose()
}

impl Plan {
    pub fn parse(text: &[u8]) -> Result<Plan, PlanError> {
        let tree = yaml::parse(text)?;
        let doc = tree
            .documents
            .first()
            .ok_or_else(|| PlanError::Invalid("the plan is empty".into()))?;
        let raw: RawPlan = serde_json::from_value(Node::Map(doc.clone()).to_json())
            .map_err(|e| PlanError::Invalid(e.to_string()))?;
        raw.typed()
    }
}

impl RawPlan {
    /// The plan with every credential checked and typed; the first problem found is the error.
    fn typed(self) -> Result<Plan, PlanError> {
        if self.kind != "RotationPlan" || !self.api_version.starts_with("credseal.dev/") {
            return Err(PlanError::Invalid(format!(
                "expected apiVersion credseal.dev/v1alpha1, kind RotationPlan; found {} {}",
                self.api_version, self.kind
            )));
        }
        let mut credentials: Vec<Credential> = Vec::with_capacity(self.credentials.len());
        for (i, c) in self.credentials.into_iter().enumerate() {
            let at = format!("credentials[{i}] ({})", c.name);
            if credentials.iter().any(|o| o.name == c.name) {
                return Err(PlanError::Invalid(format!("{at}: duplicate name")));
            }
            credentials.push(
                c.typed()
                    .map_err(|m| PlanError::Invalid(format!("{at}: {m}")))?,
            );
        }
        Ok(Plan {
            api_version: self.api_version,
            kind: self.kind,
            credentials,
        })
    }
}

impl RawCredential {
    fn typed(self) -> Result<Credential, String> {
        let method = match (self.engine, self.strategy) {
            (Engine::Postgres, Strategy::Dual) => {
                return Err("strategy dual is for redis; use alternating for postgres".into());
            }
            (Engine::Redis, Strategy::Alternating) => {
                return Err("strategy alternating is for postgres; use dual for redis".into());
            }
            (Engine::Postgres, Strategy::Operator) if self.target.secret.is_some() => {
                Method::Postgres(PgStrategy::Operator {
                    timeout: self.operator_timeout.unwrap_or(Duration::from_secs(300)),
                })
            }
            (_, Strategy::Operator) => {
                return Err("strategy operator is for PostgreSQL run by an operator, with the operator's Secret as target.secret".into());
            }
            (Engine::Postgres, Strategy::InPlace) => Method::Postgres(PgStrategy::InPlace),
            (Engine::Postgres, Strategy::Alternating) => {
                Method::Postgres(PgStrategy::Alternating {
                    grace: self.grace.unwrap_or(Duration::from_secs(3600)),
                })
            }
            (Engine::Redis, Strategy::InPlace) => Method::Redis {
                strategy: RedisStrategy::InPlace,
                topology: self.topology.clone(),
            },
            (Engine::Redis, Strategy::Dual) => Method::Redis {
                strategy: RedisStrategy::Dual { grace: self.grace },
                topology: self.topology.clone(),
            },
        };
        let target = match (self.target.file, self.target.secret) {
            (Some(f), None) => TargetSpec::File(f),
            (None, Some(s)) => TargetSpec::Secret(s),
            _ => return Err("target needs exactly one of file or secret".into()),
        };
        for (what, pem) in [
            ("admin.ca", &self.admin.ca),
            ("admin.clientCert", &self.admin.client_cert),
            ("admin.clientKey", &self.admin.client_key),
        ] {
            if pem
                .as_ref()
                .is_some_and(|p| p.file.is_some() == p.secret.is_some())
            {
                return Err(format!("{what} needs exactly one of file or secret"));
            }
        }
        if let Some(pw) = &self.admin.password {
            let sources = usize::from(pw.target)
                + usize::from(pw.env.is_some())
                + usize::from(pw.file.is_some())
                + usize::from(pw.secret.is_some());
            if sources != 1 {
                return Err(
                    "admin.password needs exactly one of target, env, file or secret".into(),
                );
            }
        }
        let username_key = match &target {
            TargetSpec::File(f) => f.username_key.is_some(),
            TargetSpec::Secret(s) => s.username_key.is_some(),
        };
        if self.strategy == Strategy::Alternating && !username_key {
            return Err("alternating needs the target's usernameKey (the username switches with the password)".into());
        }
        let mut also = Vec::with_capacity(self.rollout.also.len());
        for w in self.rollout.also {
            let Some(kind) = Kind::parse(&w.kind) else {
                return Err(format!(
                    "rollout.also kind {:?} is not StatefulSet, Deployment, DaemonSet or CronJob",
                    w.kind
                ));
            };
            also.push(Workload {
                kind,
                namespace: w.namespace,
                name: w.name,
            });
        }
        if matches!(&self.topology, Topology::Replication { replicas, stateful_set }
            if replicas.is_empty() == stateful_set.is_none())
        {
            return Err("topology replication needs exactly one of replicas or statefulSet".into());
        }
        if !(16..=128).contains(&self.password.length) {
            return Err("password.length must be between 16 and 128".into());
        }
        Ok(Credential {
            name: self.name,
            role: self.role,
            method,
            target,
            admin: self.admin,
            password: self.password,
            rotate_after: self.rotate_after,
            timeouts: self.timeouts,
            lock_duration: self.lock_duration,
            rollout: Rollout {
                timeout: self.rollout.timeout,
                also,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("3x"), None);
        assert_eq!(parse_duration("1500ms"), None, "whole seconds only");
    }

    #[test]
    fn due_after_rotate_after_from_the_last_rotation() {
        let plan = |extra: &str| {
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: postgres\n    strategy: in-place\n    role: app\n{extra}    target:\n      file: {{path: s.enc.yaml, key: '[\"a\"]'}}\n    admin:\n      url: postgresql://postgres@127.0.0.1/db\n"
            )
        };
        let p = Plan::parse(plan("    rotateAfter: 20h\n").as_bytes()).unwrap();
        let c = &p.credentials[0];
        let at = Timestamp::from_unix(1_000_000);
        assert_eq!(c.next_due(Some(&at)), Some(1_000_000 + 72_000));
        assert!(!c.is_due(Some(&at), 1_000_000 + 71_999));
        assert!(c.is_due(Some(&at), 1_000_000 + 72_000));
        assert_eq!(c.next_due(None), None, "never rotated: due now");
        assert!(c.is_due(None, 0));
        let p = Plan::parse(plan("").as_bytes()).unwrap();
        assert_eq!(p.credentials[0].next_due(Some(&at)), None);
        assert!(p.credentials[0].is_due(Some(&at), 1_000_000), "every run");
    }

    #[test]
    fn huge_durations_are_refused_not_overflowed() {
        // Found by the rotation_plan fuzz target: the product overflowed (a panic with overflow
        // checks, a silently wrapped duration without them).
        assert_eq!(parse_duration("2222222222222222221h"), None);
        assert_eq!(parse_duration("18446744073709551615s1s"), None);
        assert_eq!(parse_duration("36501d"), None);
        assert_eq!(
            parse_duration("36500d"),
            Some(Duration::from_secs(MAX_DURATION_SECS))
        );
        let plan = "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: postgres\n    role: app\n    rotateAfter: 2222222222222222221hm\n    target:\n      file: {path: s.enc.yaml, key: '[\"a\"]'}\n    admin:\n      url: postgresql://postgres@127.0.0.1/db\n";
        let e = Plan::parse(plan.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn validates_strategies_and_targets() {
        let plan = |strategy: &str, engine: &str| {
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: {engine}\n    strategy: {strategy}\n    role: app\n    target:\n      file: {{path: s.enc.yaml, key: '[\"stringData\"][\"password\"]'}}\n    admin:\n      url: postgresql://postgres@127.0.0.1/db\n"
            )
        };
        assert!(Plan::parse(plan("in-place", "postgres").as_bytes()).is_ok());
        let e = Plan::parse(plan("dual", "postgres").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dual is for redis"), "{e}");
        let e = Plan::parse(plan("alternating", "postgres").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("usernameKey"), "{e}");
        let e = Plan::parse(plan("sideways", "postgres").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("sideways"), "{e}");
    }

    #[test]
    fn the_admin_password_has_exactly_one_source() {
        let plan = |password: &str| {
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: postgres\n    strategy: in-place\n    role: app\n    target:\n      secret: {{namespace: n, name: s, key: password}}\n    admin:\n      url: postgresql://admin@db/app\n      password: {password}\n"
            )
        };
        let p =
            Plan::parse(plan("{secret: {namespace: n, name: admin, key: password}}").as_bytes())
                .unwrap();
        let secret = p.credentials[0]
            .admin
            .password
            .clone()
            .unwrap()
            .secret
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("admin", "password")
        );
        let e = Plan::parse(plan("{env: PW, secret: {namespace: n, name: a, key: p}}").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exactly one of target, env, file or secret"),
            "{e}"
        );
        assert!(Plan::parse(plan("{}").as_bytes()).is_err());
    }

    #[test]
    fn each_engine_and_strategy_reads_as_its_own_variant() {
        let plan = |engine: &str, strategy: &str, target: &str, extra: &str| {
            let text = format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: {engine}\n    strategy: {strategy}\n    role: app\n{extra}    target:\n      {target}\n    admin:\n      url: postgresql://admin@db/app\n"
            );
            Plan::parse(text.as_bytes()).unwrap().credentials.remove(0)
        };
        let file = "file: {path: s.enc.yaml, key: '[\"p\"]', usernameKey: '[\"u\"]'}";
        let secret = "secret: {namespace: n, name: s, key: password}";
        let c = plan("postgres", "alternating", file, "");
        assert!(matches!(
            c.method,
            Method::Postgres(PgStrategy::Alternating { grace }) if grace == Duration::from_secs(3600)
        ));
        assert!(c.target.file().is_some() && c.target.secret().is_none());
        let c = plan("postgres", "operator", secret, "    operatorTimeout: 2m\n");
        assert!(matches!(
            c.method,
            Method::Postgres(PgStrategy::Operator { timeout }) if timeout == Duration::from_secs(120)
        ));
        assert!(c.target.secret().is_some());
        let c = plan("redis", "dual", file, "    grace: 10m\n");
        assert!(matches!(
            c.method,
            Method::Redis {
                strategy: RedisStrategy::Dual { grace: Some(g) },
                topology: Topology::Standalone,
            } if g == Duration::from_secs(600)
        ));
        assert_eq!(c.retire_grace(), Some(Duration::from_secs(600)));
        let c = plan(
            "redis",
            "in-place",
            file,
            "    rollout:\n      also: [{kind: StatefulSet, namespace: db, name: redis}]\n",
        );
        assert!(matches!(
            c.method,
            Method::Redis {
                strategy: RedisStrategy::InPlace,
                ..
            }
        ));
        assert_eq!(c.rollout.also[0].to_string(), "StatefulSet/db/redis");
        let e = Plan::parse(
            format!(
                "apiVersion: credseal.dev/v1alpha1\nkind: RotationPlan\ncredentials:\n  - name: x\n    engine: redis\n    strategy: operator\n    role: app\n    target:\n      {secret}\n    admin:\n      url: redis://db/\n"
            )
            .as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "credentials[0] (x): strategy operator is for PostgreSQL run by an operator, with the operator's Secret as target.secret"
        );
    }
}
