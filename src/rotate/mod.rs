//! `rotate`: crash-safe password rotation (DESIGN §4). Per credential a durable state machine
//! — stage, apply, verify, commit, roll, retire — where every step is idempotent and a rerun
//! after a crash anywhere finishes the rotation from what it observes.
//!
//! Failpoints `rotate::after-stage`, `-apply`, `-verify`, `-commit`, `-roll` (the `fail` crate,
//! set by `FAILPOINTS`) are compiled into release builds so operators can rehearse recovery.

pub mod connections;
pub mod lock;
pub mod password;
pub mod plan;
pub mod postgres;
pub mod redis;
pub mod redis_topology;
pub mod secret_target;
pub mod status;
pub mod target;
pub mod tls;

use std::path::Path;

use crate::secret::SecretString;
use crate::sops::file::{Context, EncryptedFile};
use crate::sops::keys::Keyring;
use crate::sops::path;
use crate::sops::store::Format;
use crate::sops::tree::{Node, Timestamp};

use self::connections::AdminConnections;
use self::lock::{LockError, RunLock};
use self::plan::{Credential, Engine, Strategy};
use self::postgres::{PgError, Postgres};
use self::redis::{ClientCert, Redis, RedisError};
use self::redis_topology::Topology as RedisTopology;
use self::secret_target::{SecretTarget, SecretTargetError};
use self::target::{Current, FileTarget, Pending, Phase, TargetError};
use self::tls::Pem;
use crate::k8s::K8sError;
use crate::k8s::access::Access;
use crate::k8s::workloads::{self, Kind, Workload, Workloads};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("credential {credential}")]
    Target {
        credential: String,
        source: TargetError,
    },
    #[error("credential {credential}")]
    Postgres { credential: String, source: PgError },
    #[error("credential {credential}")]
    Redis {
        credential: String,
        source: RedisError,
    },
    #[error(
        "credential {credential}: the new password does not log in after it was applied ({reason}); the pending record keeps it, rerun to retry"
    )]
    Verify { credential: String, reason: String },
    #[error("credential {credential}: admin password: {reason}")]
    AdminPassword { credential: String, reason: String },
    #[error("credential {credential}: admin TLS material: {reason}")]
    Pem { credential: String, reason: String },
    /// Another run rotates this credential now (or its lock was lost mid-run).
    #[error("credential {credential}")]
    Locked {
        credential: String,
        source: Box<LockError>,
    },
    /// The ServiceAccount may not make every call the run would: nothing was changed.
    #[error(
        "credential {credential}: this identity may not make every call the rotation would make; nothing was changed. Add to its Role:\n{rules}"
    )]
    Forbidden { credential: String, rules: String },
    #[error("credential {credential}: the pending record belongs to credential {other}")]
    ForeignPending { credential: String, other: String },
    #[error("credential {credential}")]
    Secret {
        credential: String,
        source: SecretTargetError,
    },
    #[error("credential {credential}")]
    Kube {
        credential: String,
        source: K8sError,
    },
    #[error(
        "credential {credential}: the operator did not apply the new password within {timeout_secs}s; the Secret holds the previous password again and nothing was rolled"
    )]
    OperatorTimeout {
        credential: String,
        timeout_secs: u64,
    },
    #[error(
        "credential {credential}: a Kubernetes target, rollout or StatefulSet topology needs a cluster connection"
    )]
    NoCluster { credential: String },
    /// A rollout did not become healthy in time: the line stops here.
    #[error(
        "credential {credential}: {workload} did not finish rolling out within {timeout_secs}s; stopped, nothing further rolled (rolled so far: {done}); the old password stays valid where the strategy allows; rerun after fixing the workload"
    )]
    RolloutFailed {
        credential: String,
        workload: String,
        timeout_secs: u64,
        done: String,
    },
}

/// What a run did for one credential.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Rotated less than `rotateAfter` ago and nothing pending.
    NotDue,
    /// `--dry-run`: what would happen.
    WouldRotate,
    Rotated {
        generation: u64,
    },
    /// Dual with a grace: committed and rolled; the old password stays valid until `until`
    /// (RFC 3339) and the first run after that retires it.
    Retiring {
        generation: u64,
        until: String,
    },
    /// A deferred retire done: only the new password is left.
    Retired {
        generation: u64,
    },
}

/// What the library needs from its caller (the cli reads the environment; tests inject).
pub struct Runner<'a> {
    pub keyring: &'a Keyring,
    /// Looks up an environment variable (admin passwords given as `{env: NAME}`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub dry_run: bool,
    /// One audit line per step; never a value.
    pub audit: &'a mut dyn FnMut(String),
    pub base_dir: &'a Path,
    /// The cluster, for Secret targets and rollouts.
    pub kube: Option<kube::Client>,
    /// Who this run is, as its lock names it (pod or host, process, a random suffix).
    pub holder: String,
    /// How long to wait for another run's lock before giving up (exit 221).
    pub wait_for_lock: std::time::Duration,
    /// Admin sessions kept across the run's credentials (one per server and admin).
    pub connections: AdminConnections,
}

/// Where a credential's password lives.
enum AnyTarget<'a> {
    File(FileTarget<'a>),
    Secret(Box<SecretTarget>),
}

fn file_ctx_now<R>(f: impl FnOnce(&mut Context<'_>) -> R) -> R {
    let mut entropy = crate::sops::walk::OsEntropy;
    let mut ctx = Context {
        entropy: &mut entropy,
        now: now(),
    };
    f(&mut ctx)
}

impl AnyTarget<'_> {
    async fn read(&self, cred: &str) -> Result<Current, RotateError> {
        match self {
            AnyTarget::File(t) => t.read().map_err(|source| file_err(cred, source)),
            AnyTarget::Secret(t) => t.read().await.map_err(|source| secret_err(cred, source)),
        }
    }

    async fn pending(&self, cred: &str) -> Result<Option<Pending>, RotateError> {
        match self {
            AnyTarget::File(t) => t.pending().map_err(|source| file_err(cred, source)),
            AnyTarget::Secret(t) => t.pending().await.map_err(|source| secret_err(cred, source)),
        }
    }

    async fn save_pending(&self, cred: &str, p: &Pending) -> Result<(), RotateError> {
        match self {
            AnyTarget::File(t) => {
                file_ctx_now(|ctx| t.save_pending(p, ctx)).map_err(|source| file_err(cred, source))
            }
            AnyTarget::Secret(t) => t
                .save_pending(p)
                .await
                .map_err(|source| secret_err(cred, source)),
        }
    }

    async fn commit(&self, cred: &str, p: &Pending) -> Result<(), RotateError> {
        match self {
            AnyTarget::File(t) => {
                file_ctx_now(|ctx| t.commit(p, ctx)).map_err(|source| file_err(cred, source))
            }
            AnyTarget::Secret(t) => t
                .commit(p, &now())
                .await
                .map_err(|source| secret_err(cred, source)),
        }
    }

    async fn clear_pending(&self, cred: &str) -> Result<(), RotateError> {
        match self {
            AnyTarget::File(t) => t.clear_pending().map_err(|source| file_err(cred, source)),
            AnyTarget::Secret(t) => t
                .clear_pending()
                .await
                .map_err(|source| secret_err(cred, source)),
        }
    }
}

fn file_err(cred: &str, source: TargetError) -> RotateError {
    RotateError::Target {
        credential: cred.to_owned(),
        source,
    }
}

fn secret_err(cred: &str, source: SecretTargetError) -> RotateError {
    RotateError::Secret {
        credential: cred.to_owned(),
        source,
    }
}

fn redis_error(cred: &str, source: RedisError) -> RotateError {
    RotateError::Redis {
        credential: cred.to_owned(),
        source,
    }
}

fn now() -> Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Timestamp::from_unix(secs)
}

enum Engineer {
    Pg(Box<Postgres>),
    Redis(Box<Redis>),
}

impl<'a> Runner<'a> {
    fn audit(&mut self, cred: &Credential, step: &str, outcome: &str) {
        let engine = match cred.engine {
            Engine::Postgres => "postgres",
            Engine::Redis => "redis",
        };
        (self.audit)(format!(
            "credseal audit: credential={} engine={engine} role={} step={step} outcome={outcome}",
            cred.name, cred.role
        ));
    }

    async fn admin_passwords(
        &self,
        cred: &Credential,
        current: &Current,
        pending: Option<&Pending>,
    ) -> Result<Vec<SecretString>, RotateError> {
        let err = |reason: String| RotateError::AdminPassword {
            credential: cred.name.clone(),
            reason,
        };
        let Some(spec) = &cred.admin.password else {
            return Ok(vec![SecretString::default()]);
        };
        if spec.target {
            let mut v = vec![current.password.clone()];
            if let Some(p) = pending {
                v.push(p.password.clone());
            }
            return Ok(v);
        }
        if let Some(name) = &spec.env {
            return (self.env)(name)
                .map(|v| vec![SecretString::new(v)])
                .ok_or_else(|| err(format!("environment variable {name} is not set")));
        }
        if let Some(r) = &spec.secret {
            let bytes = self.secret_key(cred, r, &err).await?;
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                err(format!(
                    "secret {}/{} key {} is not UTF-8 text",
                    r.namespace, r.name, r.key
                ))
            })?;
            return Ok(vec![SecretString::new(text)]);
        }
        if let Some(f) = &spec.file {
            let p = self.base_dir.join(&f.path);
            let bytes = crate::fsx::read(&p).map_err(|e| err(e.to_string()))?;
            let opened = EncryptedFile::parse(&bytes, Format::from_path(&p))
                .and_then(|e| e.open(self.keyring, false))
                .map_err(|e| {
                    err(format!(
                        "{}: {}",
                        p.display(),
                        crate::sops::error_text::with_causes(&e)
                    ))
                })?;
            let steps = path::parse(&f.key).map_err(|e| err(e.to_string()))?;
            let doc = opened.tree.documents.first().cloned().unwrap_or_default();
            return match path::get(&doc, &steps) {
                Ok(Node::Str(s)) => Ok(vec![s.clone()]),
                _ => Err(err(format!("{}: no string at {}", p.display(), f.key))),
            };
        }
        Err(err(
            "admin.password needs env, file, secret or target".into()
        ))
    }

    fn target(&self, cred: &Credential) -> Result<AnyTarget<'a>, RotateError> {
        let keyring: &'a Keyring = self.keyring;
        match (&cred.target.file, &cred.target.secret) {
            (Some(file), _) => Ok(AnyTarget::File(
                FileTarget::new(
                    self.base_dir.join(&file.path),
                    &file.key,
                    file.username_key.as_deref(),
                    keyring,
                )
                .map_err(|source| file_err(&cred.name, source))?,
            )),
            (None, Some(secret)) => {
                let client = self.cluster(cred)?;
                Ok(AnyTarget::Secret(Box::new(SecretTarget::new(
                    client,
                    secret.clone(),
                ))))
            }
            (None, None) => unreachable!("validated: one target"),
        }
    }

    /// A plan's PEM, from its file or a Secret key, held in memory only.
    async fn load_pem(&self, cred: &Credential, pem: &plan::PemFile) -> Result<Pem, RotateError> {
        let pem_error = |reason: String| RotateError::Pem {
            credential: cred.name.clone(),
            reason,
        };
        let Some(r) = &pem.secret else {
            let path = self.base_dir.join(pem.file.as_deref().unwrap_or_default());
            return Pem::read(&path).map_err(|e| pem_error(e.to_string()));
        };
        let bytes = self.secret_key(cred, r, &pem_error).await?;
        Ok(Pem {
            source: format!("secret {}/{} key {}", r.namespace, r.name, r.key),
            bytes,
        })
    }

    /// One key of a Secret, read through the API and held in zeroizing memory; `missing` makes
    /// the error for a Secret without that key.
    async fn secret_key(
        &self,
        cred: &Credential,
        r: &plan::KeyRef,
        missing: &dyn Fn(String) -> RotateError,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, RotateError> {
        let client = self.cluster(cred)?;
        let secret =
            kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, &r.namespace)
                .get(&r.name)
                .await
                .map_err(|e| RotateError::Kube {
                    credential: cred.name.clone(),
                    source: crate::k8s::K8sError::from_kube(
                        format!("get secret {}/{}", r.namespace, r.name),
                        e,
                    ),
                })?;
        let bytes = secret
            .data
            .and_then(|mut d| d.remove(&r.key))
            .ok_or_else(|| {
                missing(format!(
                    "secret {}/{} has no key {}",
                    r.namespace, r.name, r.key
                ))
            })?;
        Ok(zeroize::Zeroizing::new(bytes.0))
    }

    /// Runs (or resumes) the rotation of one credential, holding its lock (none for a dry
    /// run, which changes nothing).
    pub async fn rotate(&mut self, cred: &Credential) -> Result<Outcome, RotateError> {
        let target = self.target(cred)?;
        self.may_do_everything(cred).await?;
        let locked = |source| RotateError::Locked {
            credential: cred.name.clone(),
            source: Box::new(source),
        };
        let lock = match (&target, self.dry_run) {
            (_, true) => None,
            (AnyTarget::File(t), false) => Some(
                RunLock::file(&t.path, &self.holder, self.wait_for_lock)
                    .await
                    .map_err(locked)?,
            ),
            (AnyTarget::Secret(_), false) => {
                let s = cred.target.secret.as_ref().expect("a Secret target");
                let client = self.cluster(cred)?;
                let duration = cred.lock_duration.unwrap_or(lock::LEASE_DURATION);
                Some(
                    RunLock::lease(
                        client,
                        &s.namespace,
                        &s.name,
                        &self.holder,
                        duration,
                        self.wait_for_lock,
                    )
                    .await
                    .map_err(locked)?,
                )
            }
        };
        let result = self.rotate_locked(cred, &target, lock.as_ref()).await;
        if let Some(lock) = lock {
            let released = lock.release().await.map_err(locked);
            if let (Ok(_), Err(e)) = (&result, released) {
                // The rotation is done; an unreleased lock only expires later.
                self.audit(cred, "unlock", &crate::sops::error_text::with_causes(&e));
            }
        }
        result
    }

    /// Preflight for the cluster side: every call the run will make, the consumers found now
    /// included, asked of the API server (SelfSubjectAccessReview) before anything changes,
    /// so a Role that misses one is reported with the rule to add instead of failing with a
    /// 403 after the password changed.
    async fn may_do_everything(&mut self, cred: &Credential) -> Result<(), RotateError> {
        if self.dry_run || !cred.needs_cluster() {
            return Ok(());
        }
        let client = self.cluster(cred)?;
        let kube_err = |source| RotateError::Kube {
            credential: cred.name.clone(),
            source,
        };
        let mut wanted = cluster_calls(cred);
        let first = crate::k8s::access::denied(&client, &wanted)
            .await
            .map_err(kube_err)?;
        if first.is_empty() {
            if let Some(s) = &cred.target.secret {
                let consumers = Workloads::new(client.clone())
                    .discover(&s.namespace, &s.name)
                    .await
                    .map_err(kube_err)?;
                wanted = consumers.iter().flat_map(workload_calls).collect();
            } else {
                wanted.clear();
            }
        }
        let mut missing = first;
        missing.extend(
            crate::k8s::access::denied(&client, &wanted)
                .await
                .map_err(kube_err)?,
        );
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

    async fn rotate_locked(
        &mut self,
        cred: &Credential,
        target: &AnyTarget<'a>,
        lock: Option<&RunLock>,
    ) -> Result<Outcome, RotateError> {
        let held = || -> Result<(), RotateError> {
            lock.map_or(Ok(()), |l| {
                l.ensure_held().map_err(|source| RotateError::Locked {
                    credential: cred.name.clone(),
                    source: Box::new(source),
                })
            })
        };
        let name = cred.name.as_str();
        let current = target.read(name).await?;
        let mut pending = target.pending(name).await?;
        if let Some(p) = &pending {
            if p.credential != cred.name {
                return Err(RotateError::ForeignPending {
                    credential: cred.name.clone(),
                    other: p.credential.clone(),
                });
            }
        }

        let ca = match &cred.admin.ca {
            Some(p) => Some(self.load_pem(cred, p).await?),
            None => None,
        };
        let client_cert = match (&cred.admin.client_cert, &cred.admin.client_key) {
            (Some(c), Some(k)) => {
                Some((self.load_pem(cred, c).await?, self.load_pem(cred, k).await?))
            }
            _ => None,
        };

        let engine = match cred.engine {
            Engine::Postgres => Engineer::Pg(Box::new(
                Postgres::new(&cred.admin.url, ca.as_ref())
                    .map_err(|source| RotateError::Postgres {
                        credential: cred.name.clone(),
                        source,
                    })?
                    .with_timeouts(cred.timeouts),
            )),
            Engine::Redis => Engineer::Redis(Box::new(
                Redis::new(
                    &cred.admin.url,
                    ca.as_ref(),
                    client_cert
                        .as_ref()
                        .map(|(c, k)| ClientCert { cert: c, key: k }),
                )
                .map_err(|source| redis_error(&cred.name, source))?
                .with_timeouts(cred.timeouts),
            )),
        };
        if pending.is_none() {
            if !cred.is_due(current.rotated_at.as_ref(), now_unix()) {
                self.audit(cred, "check", "not-due");
                return Ok(Outcome::NotDue);
            }
            if self.dry_run {
                self.audit(cred, "check", "would-rotate");
                return Ok(Outcome::WouldRotate);
            }
            let (username, previous_username) = match cred.strategy {
                Strategy::Alternating => {
                    let a = format!("{}_a", cred.role);
                    let b = format!("{}_b", cred.role);
                    let next = if current.username.as_deref() == Some(a.as_str()) {
                        b
                    } else {
                        a
                    };
                    (Some(next), current.username.clone())
                }
                _ => (current.username.clone(), current.username.clone()),
            };
            // Preflight: reach the engine as the admin and find the role before anything is
            // written, so a wrong address, CA, password or role name changes nothing.
            if cred.strategy == Strategy::Operator {
                let user = current
                    .username
                    .clone()
                    .unwrap_or_else(|| cred.role.clone());
                if let Engineer::Pg(pg) = &engine {
                    pg.login(&user, &current.password).await.map_err(|source| {
                        RotateError::Postgres {
                            credential: cred.name.clone(),
                            source,
                        }
                    })?;
                }
            } else {
                let admin_now = self.admin_passwords(cred, &current, None).await?;
                self.preflight(cred, &engine, &admin_now, username.as_deref())
                    .await?;
            }
            // Stage: the new password is durable before anything else changes.
            let p = Pending {
                credential: cred.name.clone(),
                phase: Phase::Staged,
                password: password::generate(&cred.password),
                username,
                previous_username,
                previous_password: (cred.strategy == Strategy::Operator)
                    .then(|| current.password.clone()),
                generation: current.generation + 1,
                retire_after: None,
            };
            held()?;
            target.save_pending(name, &p).await?;
            self.audit(cred, "stage", "ok");
            fail::fail_point!("rotate::after-stage");
            pending = Some(p);
        } else if self.dry_run {
            self.audit(cred, "check", "would-resume");
            return Ok(Outcome::WouldRotate);
        }
        let mut p = pending.expect("staged above");
        let admin_pw = self.admin_passwords(cred, &current, Some(&p)).await?;
        let login_user = |p: &Pending| p.username.clone().unwrap_or_else(|| cred.role.clone());

        if p.phase == Phase::Staged && cred.strategy == Strategy::Operator {
            held()?;
            self.operator_apply(cred, &engine, target, &mut p).await?;
        }

        if p.phase == Phase::Staged {
            held()?;
            self.apply(cred, &engine, &admin_pw, &p).await?;
            self.audit(cred, "apply", "ok");
            fail::fail_point!("rotate::after-apply");

            let user = login_user(&p);
            let verified = match &engine {
                Engineer::Pg(pg) => pg
                    .login(&user, &p.password)
                    .await
                    .map_err(|e| e.to_string()),
                Engineer::Redis(r) => {
                    let candidates: Vec<&SecretString> = admin_pw.iter().collect();
                    match self.redis_topology(cred, r, &candidates).await {
                        Ok(t) => t
                            .verify(&user, &p.password, &candidates, &mut self.connections)
                            .map_err(|e| {
                                crate::sops::error_text::with_causes(&redis_error(&cred.name, e))
                            }),
                        Err(e) => Err(crate::sops::error_text::with_causes(&e)),
                    }
                }
            };
            if let Err(reason) = verified {
                self.audit(cred, "verify", "failed");
                return Err(RotateError::Verify {
                    credential: cred.name.clone(),
                    reason,
                });
            }
            self.audit(cred, "verify", "ok");
            fail::fail_point!("rotate::after-verify");

            held()?;
            target.commit(name, &p).await?;
            p.phase = Phase::Committed;
            target.save_pending(name, &p).await?;
            self.audit(cred, "commit", &format!("ok generation={}", p.generation));
            let message = format!("credseal committed generation {}", p.generation);
            self.event_on_secret(cred, "CredentialRotated", &message, "Normal")
                .await;
            fail::fail_point!("rotate::after-commit");
        }

        if p.phase == Phase::Committed {
            held()?;
            self.roll(cred, p.generation).await?;
            p.phase = Phase::Rolled;
            p.retire_after = (cred.strategy == Strategy::Dual)
                .then_some(cred.grace)
                .flatten()
                .filter(|g| !g.is_zero())
                .map(|g| Timestamp::from_unix(now_unix() + g.as_secs() as i64));
            target.save_pending(name, &p).await?;
            fail::fail_point!("rotate::after-roll");
        }

        if let Some(until) = p.retire_after.filter(|t| now_unix() < t.unix()) {
            let until = until.to_rfc3339();
            self.audit(cred, "retire", &format!("deferred until {until}"));
            return Ok(Outcome::Retiring {
                generation: p.generation,
                until,
            });
        }

        held()?;
        self.retire(cred, &engine, &admin_pw, &p).await?;
        target.clear_pending(name).await?;
        Ok(match p.retire_after {
            Some(_) => Outcome::Retired {
                generation: p.generation,
            },
            None => Outcome::Rotated {
                generation: p.generation,
            },
        })
    }

    /// Restarts the plan's `also` workloads (the database tier) in order, then every workload
    /// that reads the target Secret, each to a healthy rollout before the next; the first that
    /// does not finish in time stops the line.
    async fn roll(&mut self, cred: &Credential, generation: u64) -> Result<(), RotateError> {
        let secret = cred.target.secret.as_ref();
        if secret.is_none() && cred.rollout.also.is_empty() {
            self.audit(cred, "roll", "ok (file target: nothing to roll)");
            return Ok(());
        }
        let client = self.cluster(cred)?;
        let kube_err = |source| RotateError::Kube {
            credential: cred.name.clone(),
            source,
        };
        let w = Workloads::new(client);
        let mut order: Vec<Workload> = cred
            .rollout
            .also
            .iter()
            .map(|r| Workload {
                kind: Kind::parse(&r.kind).expect("validated"),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            })
            .collect();
        let stamp_name = match secret {
            Some(s) => {
                for found in w.discover(&s.namespace, &s.name).await.map_err(kube_err)? {
                    if !order.contains(&found) {
                        order.push(found);
                    }
                }
                s.name.clone()
            }
            None => cred.name.clone(),
        };
        let key = workloads::stamp_key(&stamp_name);
        let timeout = cred
            .rollout
            .timeout
            .unwrap_or(std::time::Duration::from_secs(600));
        let mut done = Vec::new();
        for workload in &order {
            let uid = w
                .stamp(workload, &key, &generation.to_string())
                .await
                .map_err(kube_err)?;
            self.audit(cred, "roll", &format!("restarting {workload}"));
            if !w.wait(workload, timeout).await.map_err(kube_err)? {
                self.audit(cred, "roll", &format!("failed {workload}"));
                let message = "credseal: rollout did not become healthy in time";
                self.event(workload, uid, "RolloutFailed", message, "Warning")
                    .await;
                return Err(RotateError::RolloutFailed {
                    credential: cred.name.clone(),
                    workload: workload.to_string(),
                    timeout_secs: timeout.as_secs(),
                    done: if done.is_empty() {
                        "none".into()
                    } else {
                        done.join(", ")
                    },
                });
            }
            let message = format!("credseal: restarted for {stamp_name} generation {generation}");
            self.event(workload, uid, "CredentialRolled", &message, "Normal")
                .await;
            done.push(workload.to_string());
        }
        self.audit(cred, "roll", &format!("ok {} workloads", done.len()));
        Ok(())
    }

    async fn event_on_secret(
        &mut self,
        cred: &Credential,
        reason: &str,
        message: &str,
        type_: &str,
    ) {
        let Some(s) = &cred.target.secret else { return };
        let Some(client) = self.kube.clone() else {
            return;
        };
        let (ns, name) = (s.namespace.clone(), s.name.clone());
        // The Secret's uid: the rotator may read the Secret it rotates.
        let uid = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
            .get_metadata_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.metadata.uid);
        if let Err(e) =
            crate::k8s::events::record(client, &ns, "Secret", &name, uid, reason, message, type_)
                .await
        {
            (self.audit)(format!(
                "credseal audit: event {reason} on Secret/{ns}/{name} not recorded: {e}"
            ));
        }
    }

    /// Records a Kubernetes Event (best effort: a missing permission is an audit line, not a
    /// failed rotation). Messages never carry a value.
    async fn event(
        &mut self,
        w: &Workload,
        uid: Option<String>,
        reason: &str,
        message: &str,
        type_: &str,
    ) {
        let Some(client) = self.kube.clone() else {
            return;
        };
        if let Err(e) = crate::k8s::events::record(
            client,
            &w.namespace,
            w.kind.as_str(),
            &w.name,
            uid,
            reason,
            message,
            type_,
        )
        .await
        {
            (self.audit)(format!(
                "credseal audit: event {reason} on {w} not recorded: {e}"
            ));
        }
    }

    /// Operator strategy: the operator, not credseal, sets the password in the database. The
    /// new password goes only to the Secret the operator watches; credseal waits until a login
    /// with it works. If the operator never applies it, the Secret gets the old password back
    /// and the line stops: nothing was rolled, the old password still works.
    async fn operator_apply(
        &mut self,
        cred: &Credential,
        engine: &Engineer,
        target: &AnyTarget<'_>,
        p: &mut Pending,
    ) -> Result<(), RotateError> {
        let name = cred.name.as_str();
        let Engineer::Pg(pg) = engine else {
            unreachable!("validated: postgres")
        };
        target.commit(name, p).await?;
        self.audit(
            cred,
            "apply",
            "ok (written to the Secret the operator applies)",
        );
        fail::fail_point!("rotate::after-apply");
        let user = p.username.clone().unwrap_or_else(|| cred.role.clone());
        let timeout = cred
            .operator_timeout
            .unwrap_or(std::time::Duration::from_secs(300));
        let end = std::time::Instant::now() + timeout;
        while !pg.can_login(&user, &p.password).await {
            if std::time::Instant::now() >= end {
                self.audit(
                    cred,
                    "verify",
                    "failed (operator did not apply the password)",
                );
                if let Some(old) = &p.previous_password {
                    let restore = Pending {
                        credential: p.credential.clone(),
                        phase: Phase::Staged,
                        password: old.clone(),
                        username: p.previous_username.clone(),
                        previous_username: None,
                        previous_password: None,
                        generation: p.generation.saturating_sub(1),
                        retire_after: None,
                    };
                    target.commit(name, &restore).await?;
                    self.audit(
                        cred,
                        "undo",
                        "ok (the Secret holds the previous password again)",
                    );
                }
                target.clear_pending(name).await?;
                return Err(RotateError::OperatorTimeout {
                    credential: cred.name.clone(),
                    timeout_secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        self.audit(cred, "verify", "ok (the operator applied it)");
        fail::fail_point!("rotate::after-verify");
        p.phase = Phase::Committed;
        target.save_pending(name, p).await?;
        self.audit(cred, "commit", &format!("ok generation={}", p.generation));
        fail::fail_point!("rotate::after-commit");
        Ok(())
    }

    /// Logs in as the admin (the session the later steps reuse) and finds what the strategy
    /// changes: the role (PostgreSQL in-place), the base role and the means to create the next
    /// one (alternating), the ACL user on every node (Redis). Reads only; a failed lookup is an
    /// error, never "absent".
    async fn preflight(
        &mut self,
        cred: &Credential,
        engine: &Engineer,
        admin_pw: &[SecretString],
        next_user: Option<&str>,
    ) -> Result<(), RotateError> {
        let candidates: Vec<&SecretString> = admin_pw.iter().collect();
        let pg_err = |source| RotateError::Postgres {
            credential: cred.name.clone(),
            source,
        };
        match engine {
            Engineer::Pg(pg) => {
                let admin = self.connections.pg(pg, &candidates).await.map_err(pg_err)?;
                let role = cred.role.as_str();
                let exists = pg.role_exists(&admin, role).await.map_err(pg_err)?;
                match cred.strategy {
                    Strategy::Alternating => {
                        if !exists {
                            let hint = format!(
                                "alternating creates {role}_a and {role}_b as members of it, not the base role itself; create it with the grants the application needs"
                            );
                            return Err(pg_err(pg.role_missing(role, hint)));
                        }
                        let next = next_user.expect("alternating stages a username");
                        if !pg.role_exists(&admin, next).await.map_err(pg_err)?
                            && !pg.may_create_roles(&admin).await.map_err(pg_err)?
                        {
                            let hint = format!(
                                "alternating would create it, but the admin {:?} has neither CREATEROLE nor superuser; create it (LOGIN IN ROLE {}) or grant CREATEROLE",
                                pg.admin_user(),
                                postgres::quote_ident(role)
                            );
                            return Err(pg_err(pg.role_missing(next, hint)));
                        }
                    }
                    _ if !exists => {
                        let hint =
                            "create it first (in-place changes the password of an existing role)";
                        return Err(pg_err(pg.role_missing(role, hint)));
                    }
                    _ => {}
                }
                Ok(())
            }
            Engineer::Redis(r) => {
                let topo = self.redis_topology(cred, r, &candidates).await?;
                topo.check_user(&cred.role, &candidates, &mut self.connections)
                    .map_err(|source| redis_error(&cred.name, source))
            }
        }
    }

    async fn apply(
        &mut self,
        cred: &Credential,
        engine: &Engineer,
        admin_pw: &[SecretString],
        p: &Pending,
    ) -> Result<(), RotateError> {
        let pg_err = |source| RotateError::Postgres {
            credential: cred.name.clone(),
            source,
        };
        let redis_err = |source| redis_error(&cred.name, source);
        let candidates: Vec<&SecretString> = admin_pw.iter().collect();
        match (engine, cred.strategy) {
            (Engineer::Pg(pg), Strategy::InPlace) => {
                let admin = self.connections.pg(pg, &candidates).await.map_err(pg_err)?;
                pg.set_password(&admin, &cred.role, &p.password, None)
                    .await
                    .map_err(pg_err)
            }
            (Engineer::Pg(pg), Strategy::Alternating) => {
                let admin = self.connections.pg(pg, &candidates).await.map_err(pg_err)?;
                let role = p.username.clone().expect("alternating stages a username");
                pg.ensure_role(&admin, &role, &cred.role)
                    .await
                    .map_err(pg_err)?;
                pg.set_password(&admin, &role, &p.password, Some("infinity"))
                    .await
                    .map_err(pg_err)
            }
            (Engineer::Redis(r), strategy) => {
                let topo = self.redis_topology(cred, r, &candidates).await?;
                let notes = topo
                    .apply(
                        &cred.role,
                        &p.password,
                        strategy == Strategy::Dual,
                        &candidates,
                        &mut self.connections,
                    )
                    .map_err(redis_err)?;
                for n in notes {
                    self.audit(cred, "persist", &n);
                }
                Ok(())
            }
            (Engineer::Pg(_), Strategy::Dual) => unreachable!("validated"),
            (Engineer::Pg(_), Strategy::Operator) => unreachable!("operator_apply handles it"),
        }
    }

    /// The cluster connection a Kubernetes-backed part of the plan needs.
    fn cluster(&self, cred: &Credential) -> Result<kube::Client, RotateError> {
        self.kube.clone().ok_or_else(|| RotateError::NoCluster {
            credential: cred.name.clone(),
        })
    }

    /// The Redis nodes to change, found anew at each step: a StatefulSet's pods get new
    /// addresses when the rollout restarts them.
    async fn redis_topology(
        &mut self,
        cred: &Credential,
        r: &Redis,
        admin: &[&SecretString],
    ) -> Result<RedisTopology, RotateError> {
        let pods = match &cred.topology {
            plan::Topology::Replication {
                stateful_set: Some(set),
                ..
            } => {
                let members = Workloads::new(self.cluster(cred)?)
                    .statefulset_members(&set.namespace, &set.name)
                    .await
                    .map_err(|source| RotateError::Kube {
                        credential: cred.name.clone(),
                        source,
                    })?;
                Some(
                    redis_topology::pod_addresses(set, &members, r.port())
                        .map_err(|source| redis_error(&cred.name, source))?,
                )
            }
            _ => None,
        };
        RedisTopology::resolve(r, &cred.topology, pods, admin, &mut self.connections)
            .map_err(|source| redis_error(&cred.name, source))
    }

    async fn retire(
        &mut self,
        cred: &Credential,
        engine: &Engineer,
        admin_pw: &[SecretString],
        p: &Pending,
    ) -> Result<(), RotateError> {
        let mut candidates: Vec<&SecretString> = admin_pw.iter().collect();
        candidates.push(&p.password);
        match (engine, cred.strategy) {
            (Engineer::Redis(r), Strategy::Dual) => {
                let topo = self.redis_topology(cred, r, &candidates).await?;
                let notes = topo
                    .retire(&cred.role, &p.password, &candidates, &mut self.connections)
                    .map_err(|source| redis_error(&cred.name, source))?;
                self.audit(
                    cred,
                    "retire",
                    &format!("ok old password removed; {}", notes.join("; ")),
                );
            }
            (Engineer::Pg(pg), Strategy::Alternating) => {
                if let Some(old) = p
                    .previous_username
                    .as_deref()
                    .filter(|o| Some(*o) != p.username.as_deref())
                {
                    let admin = self
                        .connections
                        .pg(pg, &candidates)
                        .await
                        .map_err(|source| RotateError::Postgres {
                            credential: cred.name.clone(),
                            source,
                        })?;
                    let grace = cred.grace.unwrap_or(std::time::Duration::from_secs(3600));
                    let until =
                        Timestamp::from_unix(now_unix() + grace.as_secs() as i64).to_rfc3339();
                    let pg_err = |source| RotateError::Postgres {
                        credential: cred.name.clone(),
                        source,
                    };
                    // A failed lookup stops here: the audit line never claims an expiry
                    // that did not happen.
                    if pg.role_exists(&admin, old).await.map_err(pg_err)? {
                        pg.expire(&admin, old, &until).await.map_err(pg_err)?;
                        self.audit(
                            cred,
                            "retire",
                            &format!("ok role {old} valid until {until}"),
                        );
                    } else {
                        self.audit(
                            cred,
                            "retire",
                            &format!("ok role {old} no longer exists, nothing to expire"),
                        );
                    }
                } else {
                    self.audit(cred, "retire", "ok (nothing to retire)");
                }
            }
            _ => self.audit(
                cred,
                "retire",
                "ok (in-place: the old password stopped working at apply)",
            ),
        }
        Ok(())
    }
}

/// The calls a rotation of `cred` makes whatever its consumers are: its target Secret, the
/// pending record, its Lease, listing what may consume it, the plan's `also` workloads and
/// Secrets it reads PEMs or the admin password from. The one list the permission preflight
/// asks about and `rotate --print-role` prints.
pub fn cluster_calls(cred: &Credential) -> Vec<Access> {
    let mut calls = Vec::new();
    if let Some(s) = &cred.target.secret {
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
    for w in &cred.rollout.also {
        if let Some(kind) = Kind::parse(&w.kind) {
            calls.extend(workload_calls(&Workload {
                kind,
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            }));
        }
    }
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

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
