//! PostgreSQL: passwords set as SCRAM-SHA-256 verifiers computed here, so the plaintext never
//! reaches the server, its logs or `pg_stat_statements`; identifiers and literals quoted.

use std::str::FromStr;

use tokio_postgres::{Client, Config, NoTls};

use crate::rotate::plan::Timeouts;
use crate::rotate::tls::{self, Pem, SslMode, TlsError};
use crate::secret::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("admin URL: {0}")]
    Url(String),
    #[error("admin URL")]
    Tls(#[from] TlsError),
    #[error("cannot log in to {host} as {user}: {reason}")]
    Login {
        host: String,
        user: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Query { what: String, reason: String },
    #[error("role {0:?} does not exist and the admin may not create it")]
    NoRole(String),
    /// Found before anything was staged.
    #[error("role {role:?} does not exist on {host}; {hint}; nothing was changed")]
    RoleMissing {
        role: String,
        host: String,
        hint: String,
    },
}

/// `"ident"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'literal'` with embedded quotes doubled (standard_conforming_strings is on since 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub struct Postgres {
    base: Config,
    /// The server and admin as the URL and TLS settings name them: what a kept admin session
    /// is found by.
    key: String,
    host: String,
    tls: Option<rustls::ClientConfig>,
    pub mode: SslMode,
    timeouts: Timeouts,
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query (tokio-postgres knows only some
/// modes), percent-decoded as libpq decodes them; the rest of the URL is left as it was, byte
/// for byte. Not the `url` crate: a libpq URL may list several hosts (`h1:5432,h2:5432`),
/// which is not a URL it accepts.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, None);
    };
    let (mut mode, mut root) = (None, None);
    let rest: Vec<&str> = query
        .split('&')
        .filter(|p| match p.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(decode(v));
                false
            }
            Some(("sslrootcert", v)) => {
                root = Some(decode(v));
                false
            }
            _ => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, mode, root)
}

fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

impl Postgres {
    /// `ca` is the plan's `admin.ca`; it makes `verify-full` the default.
    pub fn new(url: &str, ca: Option<&Pem>) -> Result<Postgres, PgError> {
        let (url, mode, root) = split_tls_params(url);
        let key = format!(
            "{url}|sslmode={}|sslrootcert={}|ca={}",
            mode.as_deref().unwrap_or_default(),
            root.as_deref().unwrap_or_default(),
            ca.map(|p| crate::rotate::connections::fingerprint(&p.bytes))
                .unwrap_or_default()
        );
        let from_url = root
            .map(|p| Pem::read(std::path::Path::new(&p)))
            .transpose()?;
        let ca = from_url.as_ref().or(ca);
        let mode = match (mode, ca) {
            (Some(m), _) => SslMode::parse(&m)?,
            (None, Some(_)) => SslMode::VerifyFull,
            (None, None) => SslMode::Disable,
        };
        let tls = tls::client_config(mode, ca)?;
        let base = Config::from_str(&url).map_err(|e| PgError::Url(e.to_string()))?;
        let host = match base.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let host = format!(
            "{host}:{}",
            base.get_ports().first().copied().unwrap_or(5432)
        );
        Ok(Postgres {
            base,
            key,
            host,
            tls,
            mode,
            timeouts: Timeouts::default(),
        })
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Postgres {
        self.timeouts = timeouts;
        self
    }

    /// Runs one request, failing it when the server does not answer within the request
    /// timeout (a connection can be accepted and then never answered).
    async fn request<T>(
        &self,
        what: impl Into<String>,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, PgError> {
        let limit = self.timeouts.request();
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(|e| PgError::Query {
                what: what.into(),
                reason: e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_else(|| e.to_string()),
            }),
            Err(_) => Err(PgError::Query {
                what: what.into(),
                reason: format!(
                    "no answer within {}s (timeouts.request)",
                    limit.as_secs_f64()
                ),
            }),
        }
    }

    pub fn admin_user(&self) -> String {
        self.base.get_user().unwrap_or("postgres").to_owned()
    }

    async fn connect(&self, user: &str, password: &SecretString) -> Result<Client, PgError> {
        let mut config = self.base.clone();
        config.user(user).password(password.expose().as_bytes());
        let limit = self.timeouts.connect();
        config.connect_timeout(limit);
        let timed_out = || PgError::Login {
            host: self.host.clone(),
            user: user.to_owned(),
            reason: format!(
                "no answer within {}s (timeouts.connect)",
                limit.as_secs_f64()
            ),
        };
        let login_err = |e: tokio_postgres::Error| PgError::Login {
            host: self.host.clone(),
            user: user.to_owned(),
            reason: e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_else(|| match std::error::Error::source(&e) {
                    Some(cause) => format!("{e}: {cause}"),
                    None => e.to_string(),
                }),
        };
        match &self.tls {
            None => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = tokio::time::timeout(limit, config.connect(NoTls))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(login_err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            Some(tls) => {
                // Require: without TLS the connection fails instead of going on in clear.
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
                let (client, conn) = tokio::time::timeout(limit, config.connect(connector))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(login_err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }

    pub fn pool_key(&self) -> String {
        self.key.clone()
    }

    /// Logs in as the admin with the first password that works; also says which one.
    pub async fn admin_login(
        &self,
        candidates: &[&SecretString],
    ) -> Result<(Client, usize), PgError> {
        let mut last = None;
        for (i, p) in candidates.iter().enumerate() {
            match self.connect(&self.admin_user(), p).await {
                Ok(c) => return Ok((c, i)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(PgError::Login {
            host: self.host.clone(),
            user: self.admin_user(),
            reason: "no admin password configured".into(),
        }))
    }

    /// Whether `user` logs in with `password` now.
    pub async fn can_login(&self, user: &str, password: &SecretString) -> bool {
        self.connect(user, password).await.is_ok()
    }

    pub async fn login(&self, user: &str, password: &SecretString) -> Result<(), PgError> {
        self.connect(user, password).await.map(drop)
    }

    /// `ALTER ROLE … PASSWORD '<SCRAM verifier>' [VALID UNTIL …]`.
    pub async fn set_password(
        &self,
        admin: &Client,
        role: &str,
        password: &SecretString,
        valid_until: Option<&str>,
    ) -> Result<(), PgError> {
        let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
        let mut sql = format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(role),
            quote_literal(&verifier)
        );
        if let Some(v) = valid_until {
            sql.push_str(&format!(" VALID UNTIL {}", quote_literal(v)));
        }
        self.request(
            format!("ALTER ROLE {}", quote_ident(role)),
            admin.batch_execute(&sql),
        )
        .await
    }

    /// Expires a role's password at `until` (alternating: the retired role's grace period).
    pub async fn expire(&self, admin: &Client, role: &str, until: &str) -> Result<(), PgError> {
        let sql = format!(
            "ALTER ROLE {} VALID UNTIL {}",
            quote_ident(role),
            quote_literal(until)
        );
        self.request(
            format!("ALTER ROLE {} VALID UNTIL", quote_ident(role)),
            admin.batch_execute(&sql),
        )
        .await
    }

    /// Whether `role` exists; a failed query is an error, never a "no".
    pub async fn role_exists(&self, admin: &Client, role: &str) -> Result<bool, PgError> {
        self.request(
            format!("look up role {}", quote_ident(role)),
            admin.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role]),
        )
        .await
        .map(|row| row.is_some())
    }

    /// Whether the admin session may create roles (superuser or CREATEROLE); a failed query
    /// is an error.
    pub async fn may_create_roles(&self, admin: &Client) -> Result<bool, PgError> {
        self.request(
            "look up the admin's CREATEROLE",
            admin.query_one(
                "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
                &[],
            ),
        )
        .await
        .map(|row| row.get::<_, bool>(0))
    }

    /// The preflight's refusal for a missing role.
    pub fn role_missing(&self, role: &str, hint: impl Into<String>) -> PgError {
        PgError::RoleMissing {
            role: role.to_owned(),
            host: self.host.clone(),
            hint: hint.into(),
        }
    }

    /// Makes sure `<base>_a`/`<base>_b` exist: login roles that are members of the base role,
    /// so both hold exactly its grants.
    pub async fn ensure_role(&self, admin: &Client, role: &str, base: &str) -> Result<(), PgError> {
        let exists = self.role_exists(admin, role).await?;
        if exists {
            return Ok(());
        }
        let sql = format!(
            "CREATE ROLE {} LOGIN IN ROLE {}",
            quote_ident(role),
            quote_ident(base)
        );
        match tokio::time::timeout(self.timeouts.request(), admin.batch_execute(&sql)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PgError::NoRole(role.to_owned())),
            Err(_) => Err(PgError::Query {
                what: format!("CREATE ROLE {}", quote_ident(role)),
                reason: "no answer (timeouts.request)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("app\"user"), "\"app\"\"user\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert!(matches!(
            Postgres::new("postgresql://u@h/db?sslmode=prefer", None),
            Err(PgError::Tls(_))
        ));
        let pg = Postgres::new(
            "postgresql://u@h/db?sslmode=require&connect_timeout=5",
            None,
        )
        .unwrap();
        assert_eq!(pg.mode, SslMode::Require);
        assert_eq!(
            Postgres::new("postgresql://u@h/db", None).unwrap().mode,
            SslMode::Disable
        );
        assert_eq!(
            split_tls_params(
                "postgresql://h/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x"
            ),
            (
                "postgresql://h/db?application_name=x".to_owned(),
                Some("verify-full".to_owned()),
                Some("/ca.pem".to_owned())
            )
        );
        // A path with a space or a comma is percent-encoded in the URL, as libpq reads it.
        assert_eq!(
            split_tls_params("postgresql://h1:5432,h2:5432/db?sslrootcert=%2Fetc%2Fmy%20ca.pem").2,
            Some("/etc/my ca.pem".to_owned())
        );
    }
}
