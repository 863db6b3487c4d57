//! Redis ACL users. Passwords are set as SHA-256 hashes (`#<hex>`), so the plaintext is not
//! in `ACL LIST` or the ACL file; `dual` keeps the old and the new password valid until the
//! roll is done, then leaves only the new one.

use redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, ConnectionInfo, RedisConnectionInfo,
    TlsCertificates,
};
use sha2::{Digest, Sha256};

use crate::rotate::plan::Timeouts;
use crate::rotate::tls::Pem;
use crate::secret::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("admin URL: {0}")]
    Url(String),
    #[error("cannot log in to {addr} as {user}: {reason}")]
    Login {
        addr: String,
        user: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Command { what: String, reason: String },
    #[error("ACL user {0:?} does not exist; create it first (credseal does not create users)")]
    NoUser(String),
    /// Found before anything was staged.
    #[error(
        "ACL user {user:?} does not exist on {addr}; create it first (credseal does not create users); nothing was changed"
    )]
    UserMissing { user: String, addr: String },
    /// The nodes could not be found, or not all of them are up: nothing was changed.
    #[error("topology: {0}")]
    Topology(String),
}

/// How a changed ACL was made to survive a restart.
#[derive(Debug, PartialEq, Eq)]
pub enum Persisted {
    AclSave,
    ConfigRewrite,
    /// Neither an ACL file nor a config file: the change lives until the next restart.
    NotPersisted,
}

impl Persisted {
    pub fn as_str(&self) -> &'static str {
        match self {
            Persisted::AclSave => "ACL SAVE",
            Persisted::ConfigRewrite => "CONFIG REWRITE",
            Persisted::NotPersisted => "not persisted (no aclfile or config file)",
        }
    }
}

fn hash(password: &SecretString) -> String {
    Sha256::digest(password.expose().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct Redis {
    addr: ConnectionAddr,
    db: i64,
    admin_user: String,
    /// `rediss://`: the CA to verify the server with (system roots when none is given).
    tls: Option<Option<Vec<u8>>>,
    /// A client certificate and key (PEM) for servers that require one.
    client: Option<(Vec<u8>, Vec<u8>)>,
    timeouts: Timeouts,
}

/// The client certificate and key, for servers with `tls-auth-clients yes`.
pub struct ClientCert<'a> {
    pub cert: &'a Pem,
    pub key: &'a Pem,
}

impl Redis {
    /// `rediss://` connects with TLS, verifying the server's name and chain against `ca` (or
    /// the system roots); `redis://` with a CA given is refused rather than sent in clear.
    pub fn new(
        url: &str,
        ca: Option<&Pem>,
        client_cert: Option<ClientCert<'_>>,
    ) -> Result<Redis, RedisError> {
        let client = Client::open(url).map_err(|e| RedisError::Url(e.to_string()))?;
        let info = client.get_connection_info();
        let tls = match (&info.addr, ca) {
            (ConnectionAddr::TcpTls { .. }, ca) => Some(ca.map(|p| p.bytes.to_vec())),
            (_, Some(_)) => {
                return Err(RedisError::Url(
                    "a CA is given but the URL is redis:// (plaintext); use rediss://".into(),
                ));
            }
            _ => None,
        };
        Ok(Redis {
            addr: info.addr.clone(),
            db: info.redis.db,
            admin_user: info
                .redis
                .username
                .clone()
                .unwrap_or_else(|| "default".into()),
            tls,
            client: client_cert.map(|c| (c.cert.bytes.to_vec(), c.key.bytes.to_vec())),
            timeouts: Timeouts::default(),
        })
    }

    pub fn addr_text(&self) -> String {
        self.addr.to_string()
    }

    /// The port of the URL (a Unix socket has none: Redis' default).
    pub fn port(&self) -> u16 {
        match &self.addr {
            ConnectionAddr::Tcp(_, port) | ConnectionAddr::TcpTls { port, .. } => *port,
            _ => 6379,
        }
    }

    /// A copy (the topology holds its own handles).
    pub fn at_same(&self) -> Redis {
        Redis {
            addr: self.addr.clone(),
            db: self.db,
            admin_user: self.admin_user.clone(),
            tls: self.tls.clone(),
            client: self.client.clone(),
            timeouts: self.timeouts,
        }
    }

    /// The same settings (user, TLS, db) for another node.
    pub fn at(&self, host: &str, port: u16) -> Redis {
        let addr = match &self.addr {
            ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        Redis {
            addr,
            db: self.db,
            admin_user: self.admin_user.clone(),
            tls: self.tls.clone(),
            client: self.client.clone(),
            timeouts: self.timeouts,
        }
    }

    /// A client for `info`, with TLS (CA, client certificate) when the URL is `rediss://`.
    fn client_for(&self, info: ConnectionInfo) -> Result<Client, RedisError> {
        match &self.tls {
            None => Client::open(info),
            Some(root_cert) => Client::build_with_tls(
                info,
                TlsCertificates {
                    client_tls: self.client.as_ref().map(|(cert, key)| ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: root_cert.clone(),
                },
            ),
        }
        .map_err(|e| RedisError::Url(e.to_string()))
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Redis {
        self.timeouts = timeouts;
        self
    }

    /// A connection within the connect timeout (TCP, TLS, AUTH), whose every request then
    /// fails after the request timeout instead of waiting for a server that never answers.
    fn open(&self, client: &Client, user: &str) -> Result<Connection, RedisError> {
        let login_err = |e: redis::RedisError| RedisError::Login {
            addr: self.addr_text(),
            user: user.to_owned(),
            reason: if e.is_timeout() {
                format!(
                    "no answer within {}s (timeouts.connect)",
                    self.timeouts.connect().as_secs_f64()
                )
            } else {
                e.to_string()
            },
        };
        let conn = client
            .get_connection_with_timeout(self.timeouts.connect())
            .map_err(login_err)?;
        conn.set_read_timeout(Some(self.timeouts.request()))
            .and_then(|()| conn.set_write_timeout(Some(self.timeouts.request())))
            .map_err(login_err)?;
        Ok(conn)
    }

    /// A connection without authentication (Sentinels without `requirepass`).
    pub fn connect_plain(&self) -> Result<Connection, RedisError> {
        let info = ConnectionInfo {
            addr: self.addr.clone(),
            redis: RedisConnectionInfo::default(),
        };
        let client = self.client_for(info)?;
        self.open(&client, "(sentinel)")
    }

    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    fn connect(&self, user: &str, password: &SecretString) -> Result<Connection, RedisError> {
        let info = ConnectionInfo {
            addr: self.addr.clone(),
            redis: RedisConnectionInfo {
                db: self.db,
                username: Some(user.to_owned()),
                password: Some(password.expose().to_owned()),
                ..RedisConnectionInfo::default()
            },
        };
        let client = self.client_for(info)?;
        let mut conn = self.open(&client, user)?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(|e| RedisError::Login {
                addr: self.addr_text(),
                user: user.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(conn)
    }

    /// The node and admin identity (address, db, user, TLS material): what a kept admin
    /// connection is found by.
    pub fn pool_key(&self) -> String {
        use crate::rotate::connections::fingerprint;
        format!(
            "{}|db={}|user={}|tls={}|ca={}|cert={}",
            self.addr,
            self.db,
            self.admin_user,
            self.tls.is_some(),
            self.tls
                .as_ref()
                .and_then(|c| c.as_deref())
                .map(fingerprint)
                .unwrap_or_default(),
            self.client
                .as_ref()
                .map(|(c, k)| format!("{}{}", fingerprint(c), fingerprint(k)))
                .unwrap_or_default()
        )
    }

    pub fn request_timeout(&self) -> std::time::Duration {
        self.timeouts.request()
    }

    /// Logs in as the admin with the first password that works; also says which one.
    pub fn admin_login(
        &self,
        candidates: &[&SecretString],
    ) -> Result<(Connection, usize), RedisError> {
        let mut last = None;
        for (i, p) in candidates.iter().enumerate() {
            match self.connect(&self.admin_user, p) {
                Ok(c) => return Ok((c, i)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(RedisError::Login {
            addr: self.addr_text(),
            user: self.admin_user.clone(),
            reason: "no admin password configured".into(),
        }))
    }

    pub fn can_login(&self, user: &str, password: &SecretString) -> bool {
        self.connect(user, password).is_ok()
    }

    pub fn login(&self, user: &str, password: &SecretString) -> Result<(), RedisError> {
        self.connect(user, password).map(drop)
    }

    /// Whether the ACL user exists on this node; a failed command (NOPERM, a dropped
    /// connection) is an error, never a "no".
    pub fn user_exists(&self, conn: &mut Connection, user: &str) -> Result<bool, RedisError> {
        let exists: Option<redis::Value> = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(user)
            .query(conn)
            .map_err(|e| RedisError::Command {
            what: format!("ACL GETUSER {user} on {}", self.addr_text()),
            reason: e.to_string(),
        })?;
        Ok(!matches!(exists, None | Some(redis::Value::Nil)))
    }

    fn acl(&self, conn: &mut Connection, user: &str, rules: &[&str]) -> Result<(), RedisError> {
        if !self.user_exists(conn, user)? {
            return Err(RedisError::NoUser(user.to_owned()));
        }
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(user);
        for r in rules {
            cmd.arg(*r);
        }
        cmd.query::<()>(conn).map_err(|e| RedisError::Command {
            what: format!("ACL SETUSER {user}"),
            reason: e.to_string(),
        })
    }

    /// Adds `password` to the user's passwords (the old ones stay valid).
    pub fn add_password(
        &self,
        conn: &mut Connection,
        user: &str,
        password: &SecretString,
    ) -> Result<(), RedisError> {
        self.acl(conn, user, &[&format!("#{}", hash(password))])
    }

    /// Leaves `password` as the user's only password, in one atomic command.
    pub fn only_password(
        &self,
        conn: &mut Connection,
        user: &str,
        password: &SecretString,
    ) -> Result<(), RedisError> {
        self.acl(conn, user, &["resetpass", &format!("#{}", hash(password))])
    }

    /// Makes the ACL change survive a restart: `ACL SAVE` with an ACL file, else
    /// `CONFIG REWRITE` with a config file.
    pub fn persist(&self, conn: &mut Connection) -> Persisted {
        if redis::cmd("ACL").arg("SAVE").query::<()>(conn).is_ok() {
            return Persisted::AclSave;
        }
        if redis::cmd("CONFIG")
            .arg("REWRITE")
            .query::<()>(conn)
            .is_ok()
        {
            return Persisted::ConfigRewrite;
        }
        Persisted::NotPersisted
    }
}
