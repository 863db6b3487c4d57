//! The databases whose passwords rotate, behind one trait: what a strategy checks before
//! anything is staged, how it sets the new password, how it proves the new password works,
//! and how it retires the old one. PostgreSQL and Redis implement it; the state machine in
//! `phases.rs` knows neither.

use crate::sops::error_text::with_causes;
use std::sync::Arc;
use std::time::Duration;

use crate::k8s::workloads::Workloads;
use crate::rotate::RotateError;
use crate::rotate::connections::AdminConnections;
use crate::rotate::plan::{Credential, PgStrategy, RedisStrategy, Topology};
use crate::rotate::postgres::{self, PgError, Postgres};
use crate::rotate::redis::{ClientCert, Redis, RedisError};
use crate::rotate::redis_topology::{self, Topology as RedisNodes};
use crate::rotate::store::{Current, Pending};
use crate::rotate::tls::Pem;
use crate::secret::SecretString;
use crate::sops::tree::Timestamp;

/// Why a new password was not shown to work.
pub enum Unverified {
    /// It does not log in (the reason, never the value).
    Rejected(String),
    /// The operator that sets it did not within `timeout`.
    NotApplied { timeout: Duration },
}

/// One database and strategy. `admin` are the passwords the admin may log in with, tried in
/// order; `pool` keeps the admin sessions across steps and credentials.
pub(crate) trait Engine {
    /// Reads only, before anything is staged: logs in as the admin (the session later steps
    /// reuse) and finds what the strategy changes, so a wrong address, CA, password or role
    /// name changes nothing. A failed lookup is an error, never "absent".
    async fn preflight(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        current: &Current,
    ) -> Result<(), RotateError>;

    /// The username the new password goes with, given the current one.
    fn next_username(&self, current: Option<&str>) -> Option<String> {
        current.map(str::to_owned)
    }

    /// Whether the database takes the password from the target (an operator watching the
    /// Secret) instead of from credseal: the target is then written first, and the old
    /// password kept to put back if the operator never applies the new one.
    fn applied_by_operator(&self) -> bool {
        false
    }

    /// Sets the staged password; returns notes for the audit (how the change was persisted).
    async fn apply(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
    ) -> Result<Vec<String>, RotateError>;

    /// A fresh login with the new password, wherever the strategy put it.
    async fn verify(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
    ) -> Result<(), Unverified>;

    /// Ends the old password's life once consumers use the new one; returns the audit line.
    async fn retire(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
        now: Timestamp,
    ) -> Result<String, RotateError>;
}

/// What the audit says when nothing is left to retire.
const RETIRED_AT_APPLY: &str = "ok (in-place: the old password stopped working at apply)";

/// The login a pending password goes with: its username, else the plan's role.
fn login_user(p: &Pending, role: &str) -> String {
    p.username.clone().unwrap_or_else(|| role.to_owned())
}

/// Alternating: the one of `<role>_a`/`<role>_b` that is not current.
fn alternate(role: &str, current: Option<&str>) -> String {
    let a = format!("{role}_a");
    if current == Some(a.as_str()) {
        format!("{role}_b")
    } else {
        a
    }
}

pub struct PgEngine {
    credential: String,
    role: String,
    strategy: PgStrategy,
    pg: Postgres,
}

impl PgEngine {
    pub fn new(
        cred: &Credential,
        strategy: PgStrategy,
        ca: Option<&Pem>,
    ) -> Result<PgEngine, RotateError> {
        let pg = Postgres::new(&cred.admin.url, ca)
            .map_err(|source| RotateError::Postgres {
                credential: cred.name.clone(),
                source,
            })?
            .with_timeouts(cred.timeouts);
        Ok(PgEngine {
            credential: cred.name.clone(),
            role: cred.role.clone(),
            strategy,
            pg,
        })
    }

    fn err(&self, source: PgError) -> RotateError {
        RotateError::Postgres {
            credential: self.credential.clone(),
            source,
        }
    }

    async fn admin(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
    ) -> Result<Arc<tokio_postgres::Client>, RotateError> {
        pool.pg(&self.pg, admin).await.map_err(|e| self.err(e))
    }

    async fn role_exists(
        &self,
        admin: &tokio_postgres::Client,
        role: &str,
    ) -> Result<bool, RotateError> {
        self.pg
            .role_exists(admin, role)
            .await
            .map_err(|e| self.err(e))
    }
}

impl Engine for PgEngine {
    async fn preflight(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        current: &Current,
    ) -> Result<(), RotateError> {
        let role = self.role.as_str();
        match self.strategy {
            // The operator holds the admin: the current password logging in is what is checked.
            PgStrategy::Operator { .. } => {
                let user = current.username.as_deref().unwrap_or(role);
                self.pg
                    .login(user, &current.password)
                    .await
                    .map_err(|e| self.err(e))
            }
            PgStrategy::InPlace => {
                let session = self.admin(pool, admin).await?;
                if self.role_exists(&session, role).await? {
                    return Ok(());
                }
                let hint = "create it first (in-place changes the password of an existing role)";
                Err(self.err(self.pg.role_missing(role, hint)))
            }
            PgStrategy::Alternating { .. } => {
                let session = self.admin(pool, admin).await?;
                if !self.role_exists(&session, role).await? {
                    let hint = format!(
                        "alternating creates {role}_a and {role}_b as members of it, not the base role itself; create it with the grants the application needs"
                    );
                    return Err(self.err(self.pg.role_missing(role, hint)));
                }
                let next = alternate(role, current.username.as_deref());
                if !self.role_exists(&session, &next).await?
                    && !self
                        .pg
                        .may_create_roles(&session)
                        .await
                        .map_err(|e| self.err(e))?
                {
                    let hint = format!(
                        "alternating would create it, but the admin {:?} has neither CREATEROLE nor superuser; create it (LOGIN IN ROLE {}) or grant CREATEROLE",
                        self.pg.admin_user(),
                        postgres::quote_ident(role)
                    );
                    return Err(self.err(self.pg.role_missing(&next, hint)));
                }
                Ok(())
            }
        }
    }

    fn next_username(&self, current: Option<&str>) -> Option<String> {
        match self.strategy {
            PgStrategy::Alternating { .. } => Some(alternate(&self.role, current)),
            PgStrategy::InPlace | PgStrategy::Operator { .. } => current.map(str::to_owned),
        }
    }

    fn applied_by_operator(&self) -> bool {
        matches!(self.strategy, PgStrategy::Operator { .. })
    }

    async fn apply(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
    ) -> Result<Vec<String>, RotateError> {
        match self.strategy {
            // The operator sets it from the target, which the state machine writes.
            PgStrategy::Operator { .. } => {}
            PgStrategy::InPlace => {
                let session = self.admin(pool, admin).await?;
                self.pg
                    .set_password(&session, &self.role, &p.password, None)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            PgStrategy::Alternating { .. } => {
                let session = self.admin(pool, admin).await?;
                // A record staged without its username goes with the role staging picks.
                let role = p
                    .username
                    .clone()
                    .unwrap_or_else(|| alternate(&self.role, p.previous_username.as_deref()));
                self.pg
                    .ensure_role(&session, &role, &self.role)
                    .await
                    .map_err(|e| self.err(e))?;
                self.pg
                    .set_password(&session, &role, &p.password, Some("infinity"))
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(Vec::new())
    }

    async fn verify(
        &self,
        _pool: &mut AdminConnections,
        _admin: &[&SecretString],
        p: &Pending,
    ) -> Result<(), Unverified> {
        let user = login_user(p, &self.role);
        let PgStrategy::Operator { timeout } = self.strategy else {
            return self
                .pg
                .login(&user, &p.password)
                .await
                .map_err(|e| Unverified::Rejected(with_causes(&e)));
        };
        let end = std::time::Instant::now() + timeout;
        while !self.pg.can_login(&user, &p.password).await {
            if std::time::Instant::now() >= end {
                return Err(Unverified::NotApplied { timeout });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }

    async fn retire(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
        now: Timestamp,
    ) -> Result<String, RotateError> {
        let PgStrategy::Alternating { grace } = self.strategy else {
            return Ok(RETIRED_AT_APPLY.to_owned());
        };
        let Some(old) = p
            .previous_username
            .as_deref()
            .filter(|o| Some(*o) != p.username.as_deref())
        else {
            return Ok("ok (nothing to retire)".to_owned());
        };
        let session = self.admin(pool, admin).await?;
        let until =
            Timestamp::from_unix(now.unix().saturating_add(grace.as_secs() as i64)).to_rfc3339();
        // A failed lookup stops here: the audit line never claims an expiry that did not
        // happen.
        if !self.role_exists(&session, old).await? {
            return Ok(format!("ok role {old} no longer exists, nothing to expire"));
        }
        self.pg
            .expire(&session, old, &until)
            .await
            .map_err(|e| self.err(e))?;
        Ok(format!("ok role {old} valid until {until}"))
    }
}

pub struct RedisEngine {
    credential: String,
    user: String,
    strategy: RedisStrategy,
    topology: Topology,
    redis: Redis,
    /// For a replication set given as a StatefulSet, whose pods are found from the API.
    kube: Option<kube::Client>,
}

impl RedisEngine {
    pub fn new(
        cred: &Credential,
        strategy: RedisStrategy,
        topology: &Topology,
        ca: Option<&Pem>,
        client_cert: Option<ClientCert<'_>>,
        kube: Option<kube::Client>,
    ) -> Result<RedisEngine, RotateError> {
        let redis = Redis::new(&cred.admin.url, ca, client_cert)
            .map_err(|source| RotateError::Redis {
                credential: cred.name.clone(),
                source,
            })?
            .with_timeouts(cred.timeouts);
        Ok(RedisEngine {
            credential: cred.name.clone(),
            user: cred.role.clone(),
            strategy,
            topology: topology.clone(),
            redis,
            kube,
        })
    }

    fn err(&self, source: RedisError) -> RotateError {
        RotateError::Redis {
            credential: self.credential.clone(),
            source,
        }
    }

    /// The nodes to change, found anew at each step: a StatefulSet's pods get new addresses
    /// when the rollout restarts them.
    async fn nodes(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
    ) -> Result<RedisNodes, RotateError> {
        let pods = match &self.topology {
            Topology::Replication {
                stateful_set: Some(set),
                ..
            } => {
                let client = self.kube.clone().ok_or_else(|| RotateError::NoCluster {
                    credential: self.credential.clone(),
                })?;
                let members = Workloads::new(client)
                    .statefulset_members(&set.namespace, &set.name)
                    .await
                    .map_err(|source| RotateError::Kube {
                        credential: self.credential.clone(),
                        source,
                    })?;
                let port = self.redis.port();
                Some(redis_topology::pod_addresses(set, &members, port).map_err(|e| self.err(e))?)
            }
            _ => None,
        };
        RedisNodes::resolve(&self.redis, &self.topology, pods, admin, pool).map_err(|e| self.err(e))
    }
}

impl Engine for RedisEngine {
    async fn preflight(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        _current: &Current,
    ) -> Result<(), RotateError> {
        self.nodes(pool, admin)
            .await?
            .check_user(&self.user, admin, pool)
            .map_err(|e| self.err(e))
    }

    async fn apply(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
    ) -> Result<Vec<String>, RotateError> {
        let dual = matches!(self.strategy, RedisStrategy::Dual { .. });
        self.nodes(pool, admin)
            .await?
            .apply(&self.user, &p.password, dual, admin, pool)
            .map_err(|e| self.err(e))
    }

    async fn verify(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
    ) -> Result<(), Unverified> {
        let user = login_user(p, &self.user);
        let nodes = self
            .nodes(pool, admin)
            .await
            .map_err(|e| Unverified::Rejected(with_causes(&e)))?;
        nodes
            .verify(&user, &p.password, admin, pool)
            .map_err(|e| Unverified::Rejected(self.err(e).to_string()))
    }

    async fn retire(
        &self,
        pool: &mut AdminConnections,
        admin: &[&SecretString],
        p: &Pending,
        _now: Timestamp,
    ) -> Result<String, RotateError> {
        if self.strategy == RedisStrategy::InPlace {
            return Ok(RETIRED_AT_APPLY.to_owned());
        }
        let notes = self
            .nodes(pool, admin)
            .await?
            .retire(&self.user, &p.password, admin, pool)
            .map_err(|e| self.err(e))?;
        Ok(format!("ok old password removed; {}", notes.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternating_switches_between_the_two_roles() {
        assert_eq!(alternate("app", None), "app_a");
        assert_eq!(alternate("app", Some("app_a")), "app_b");
        assert_eq!(alternate("app", Some("app_b")), "app_a");
        assert_eq!(alternate("app", Some("app")), "app_a");
    }
}
