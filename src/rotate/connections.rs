//! Admin connections kept for a whole run: every credential (and every step of it) that
//! reaches the same server as the same admin reuses one session instead of a new TCP, TLS and
//! SCRAM/AUTH handshake each time. Logins as the rotated user are never pooled: verifying is a
//! fresh login with the new password, which is the point of it.

use std::sync::Arc;

use redis::{Connection, ConnectionLike};
use tokio_postgres::Client;

use crate::rotate::postgres::{PgError, Postgres};
use crate::rotate::redis::{Redis, RedisError};
use crate::secret::SecretString;

struct PgSession {
    key: String,
    /// The password this session logged in with: a credential whose admin candidates include
    /// it may use the session (an admin with `{target: true}` logs in with another
    /// credential's password, and must not borrow a session it could not open itself).
    password: SecretString,
    client: Arc<Client>,
}

struct RedisSession {
    key: String,
    password: Option<SecretString>,
    conn: Connection,
}

/// The run's admin sessions, by server and admin identity.
#[derive(Default)]
pub struct AdminConnections {
    pg: Vec<PgSession>,
    redis: Vec<RedisSession>,
    /// Connections opened, per engine, for the audit summary.
    opened_pg: usize,
    opened_redis: usize,
}

impl AdminConnections {
    /// An admin session on `pg`: a live one this run opened with one of `candidates`, else a
    /// new login with the first candidate that works.
    pub async fn pg(
        &mut self,
        pg: &Postgres,
        candidates: &[&SecretString],
    ) -> Result<Arc<Client>, PgError> {
        // A session the server ended (restart, idle timeout) is dropped, not reused.
        self.pg.retain(|s| !s.client.is_closed());
        let key = pg.pool_key();
        if let Some(s) = self
            .pg
            .iter()
            .find(|s| s.key == key && candidates.contains(&&s.password))
        {
            return Ok(s.client.clone());
        }
        let (client, i) = pg.admin_login(candidates).await?;
        self.opened_pg += 1;
        let client = Arc::new(client);
        self.pg.push(PgSession {
            key,
            password: candidates[i].clone(),
            client: client.clone(),
        });
        Ok(client)
    }

    /// An admin connection to the Redis node `node`, reused as [`AdminConnections::pg`]; a
    /// kept one is checked with a PING first (a restarted pod keeps its DNS name, not its
    /// connections), and takes the timeouts of the credential using it now.
    pub fn redis(
        &mut self,
        node: &Redis,
        candidates: &[&SecretString],
    ) -> Result<&mut Connection, RedisError> {
        let key = node.pool_key();
        let found = self.redis.iter().position(|s| {
            s.key == key && s.password.as_ref().is_some_and(|p| candidates.contains(&p))
        });
        if let Some(i) = self.reusable(found, node) {
            return Ok(&mut self.redis[i].conn);
        }
        let (conn, i) = node.admin_login(candidates)?;
        self.opened_redis += 1;
        self.redis.push(RedisSession {
            key,
            password: Some(candidates[i].clone()),
            conn,
        });
        Ok(&mut self.redis.last_mut().expect("just pushed").conn)
    }

    /// An unauthenticated connection (a Sentinel), reused like the admin ones.
    pub fn plain(&mut self, node: &Redis) -> Result<&mut Connection, RedisError> {
        let key = format!("plain|{}", node.pool_key());
        let found = self.redis.iter().position(|s| s.key == key);
        if let Some(i) = self.reusable(found, node) {
            return Ok(&mut self.redis[i].conn);
        }
        let conn = node.connect_plain()?;
        self.opened_redis += 1;
        self.redis.push(RedisSession {
            key,
            password: None,
            conn,
        });
        Ok(&mut self.redis.last_mut().expect("just pushed").conn)
    }

    /// Whether the kept connection `i` still answers (dropping it when not), with `node`'s
    /// request timeout set on it.
    fn reusable(&mut self, i: Option<usize>, node: &Redis) -> Option<usize> {
        let i = i?;
        let c = &mut self.redis[i].conn;
        let timeout = Some(node.request_timeout());
        let ok = c.set_read_timeout(timeout).is_ok()
            && c.set_write_timeout(timeout).is_ok()
            && c.check_connection();
        if ok {
            Some(i)
        } else {
            self.redis.remove(i);
            None
        }
    }

    /// How many admin (and Sentinel) connections this run opened: PostgreSQL, Redis.
    pub fn opened(&self) -> (usize, usize) {
        (self.opened_pg, self.opened_redis)
    }
}

/// A short digest of TLS material, so two credentials with different CAs or client
/// certificates for one URL get different sessions.
pub fn fingerprint(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
