//! Real PostgreSQL and Redis servers (Debian's packages) on free loopback ports in temp dirs.
//! CI runs as root and `initdb` refuses root, so PostgreSQL runs as the `postgres` user there.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str) {
    wait_for("127.0.0.1", port, what)
}

pub fn wait_for(host: &str, port: u16, what: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if TcpStream::connect((host, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start on {host}:{port}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("PostgreSQL's {name} is required: apt-get install postgresql"))
}

/// A command run as the `postgres` user when we are root.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub struct Postgres {
    /// The loopback address it listens on (a Service's address in cluster-shaped tests).
    pub host: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    pub superuser_password: String,
    /// Set when the server only accepts TLS (`hostssl`): the CA that signed its certificate.
    pub ca: Option<PathBuf>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is required: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it.
pub fn make_certs(dir: &Path, name: &str) {
    make_certs_for(dir, name, "localhost")
}

/// A throwaway CA and a server certificate for 127.0.0.1, localhost and `dns` (a Service's or
/// a cloud server's name) signed by it.
pub fn make_certs_for(dir: &Path, name: &str, dns: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}-test-ca"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:{dns}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{name}-ca.pem"),
            "-CAkey",
            &format!("{name}-ca.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

impl Postgres {
    /// initdb with scram-sha-256 for every connection, `log_statement = all` into `server.log`.
    pub fn start() -> Postgres {
        Postgres::start_with(None, "127.0.0.1", free_port())
    }

    /// A server at `host:port`, e.g. a loopback address of its own on PostgreSQL's real port,
    /// for a pod that reaches it by Service name (`/etc/hosts`) and the port in its config.
    pub fn start_at(host: &str, port: u16) -> Postgres {
        Postgres::start_with(None, host, port)
    }

    /// A server that accepts only TLS connections (`hostssl` in pg_hba.conf, `ssl = on`).
    pub fn start_tls() -> Postgres {
        Postgres::start_with(Some("localhost"), "127.0.0.1", free_port())
    }

    /// A TLS-only server at `host:port` whose certificate also names `dns` (the name clients
    /// verify with `verify-full`, resolved to `host` in their `/etc/hosts`).
    pub fn start_tls_at(host: &str, port: u16, dns: &str) -> Postgres {
        Postgres::start_with(Some(dns), host, port)
    }

    /// `tls`: the DNS name of the certificate of a TLS-only server.
    fn start_with(tls: Option<&str>, host: &str, port: u16) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("credseal-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let superuser_password = "admin-pw-for-tests".to_owned();
        std::fs::write(dir.path().join("pw"), &superuser_password).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
        }
        let out = as_postgres(&pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "--pwfile"])
            .arg(dir.path().join("pw"))
            .args(["-E", "UTF8", "--locale=C"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ca = None;
        if let Some(dns) = tls {
            make_certs_for(dir.path(), "pg", dns);
            std::fs::copy(dir.path().join("pg.crt"), data.join("server.crt")).unwrap();
            std::fs::copy(dir.path().join("pg.key"), data.join("server.key")).unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();
            let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
            conf.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            std::fs::write(data.join("postgresql.conf"), conf).unwrap();
            if is_root() {
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data)
                    .status()
                    .unwrap();
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            ca = Some(dir.path().join("pg-ca.pem"));
        }
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path().join("server.log"))
                .status()
                .unwrap();
        }
        let child = as_postgres(&pg_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                &format!("listen_addresses={host}"),
                "-c",
                "log_statement=all",
                // Every connection in server.log, so tests can count them.
                "-c",
                "log_connections=on",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for(host, port, "postgres");
        // Accepting TCP is not accepting logins yet.
        let pg = Postgres {
            host: host.to_owned(),
            port,
            dir,
            child,
            superuser_password,
            ca,
        };
        let end = Instant::now() + Duration::from_secs(30);
        while pg.psql("SELECT 1").is_err() {
            assert!(Instant::now() < end, "postgres did not accept logins");
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@{}:{}/postgres", self.host, self.port)
    }

    /// Runs SQL as the superuser through the real psql client.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.superuser_password)
            .env(
                "PGSSLMODE",
                if self.ca.is_some() {
                    "require"
                } else {
                    "prefer"
                },
            )
            .output()
            .map_err(|e| format!("psql is required (apt-get install postgresql-client): {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Whether `user` logs in with `password` (a fresh connection, like an application).
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        Command::new("psql")
            .args([
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-XAtq",
                "-c",
                "SELECT 1",
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .env(
                "PGSSLMODE",
                if self.ca.is_some() {
                    "require"
                } else {
                    "prefer"
                },
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Creates a login role whose password is set as a verifier (keeps the log free of it).
    pub fn create_role(&self, role: &str, password: &str) {
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        self.psql(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{verifier}'"
        ))
        .unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Connections the server accepted so far (`log_connections`), whoever they were.
    pub fn connections(&self) -> usize {
        self.log().matches("connection received:").count()
    }

    /// Sessions that logged in as `user` so far.
    pub fn logins(&self, user: &str) -> usize {
        self.log()
            .matches(&format!("connection authorized: user={user} "))
            .count()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGTERM through kill(1): runuser forwards it to postgres.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub struct Redis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    /// Set for a TLS-only server: the CA that signed its certificate.
    pub ca: Option<PathBuf>,
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Redis {
    /// redis-server with an ACL file: `default` (admin) and the given users, all hashed.
    pub fn start(users: &[(&str, &str)]) -> Redis {
        Redis::start_with(users, false, false)
    }

    /// `--port 0 --tls-port P`: TLS only.
    pub fn start_tls(users: &[(&str, &str)]) -> Redis {
        Redis::start_with(users, true, false)
    }

    /// TLS only, and clients must present a certificate signed by the server's CA
    /// (`redis-client.crt`/`.key` in the server's dir).
    pub fn start_mtls(users: &[(&str, &str)]) -> Redis {
        Redis::start_with(users, true, true)
    }

    fn start_with(users: &[(&str, &str)], tls: bool, mtls: bool) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("credseal-redis-")
            .tempdir()
            .unwrap();
        let mut acl = format!(
            "user default on #{} ~* &* +@all\n",
            sha256_hex("redis-admin-pw")
        );
        for (u, p) in users {
            acl.push_str(&format!("user {u} on #{} ~* &* +@all\n", sha256_hex(p)));
        }
        std::fs::write(dir.path().join("users.acl"), acl).unwrap();
        let port = free_port();
        let bin = redis_server();
        let mut cmd = Command::new(bin);
        let mut ca = None;
        if tls {
            make_certs(dir.path(), "redis");
            let p = |f: &str| dir.path().join(f).display().to_string();
            if mtls {
                openssl(
                    dir.path(),
                    &[
                        "req",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-keyout",
                        "redis-client.key",
                        "-out",
                        "redis-client.csr",
                        "-subj",
                        "/CN=credseal-rotator",
                    ],
                );
                // An extension makes it an X.509 v3 certificate, which rustls requires.
                std::fs::write(
                    dir.path().join("client.ext"),
                    "extendedKeyUsage=clientAuth\n",
                )
                .unwrap();
                openssl(
                    dir.path(),
                    &[
                        "x509",
                        "-req",
                        "-in",
                        "redis-client.csr",
                        "-CA",
                        "redis-ca.pem",
                        "-CAkey",
                        "redis-ca.key",
                        "-CAcreateserial",
                        "-out",
                        "redis-client.crt",
                        "-days",
                        "2",
                        "-extfile",
                        "client.ext",
                    ],
                );
            }
            let auth = if mtls { "yes" } else { "no" };
            cmd.args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-auth-clients",
                auth,
            ])
            .args([
                "--tls-cert-file",
                &p("redis.crt"),
                "--tls-key-file",
                &p("redis.key"),
            ])
            .args(["--tls-ca-cert-file", &p("redis-ca.pem")]);
            ca = Some(dir.path().join("redis-ca.pem"));
        } else {
            cmd.args(["--port", &port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--aclfile")
            .arg(dir.path().join("users.acl"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "redis-server");
        Redis {
            port,
            dir,
            child,
            ca,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://default@127.0.0.1:{}/0", self.port)
    }

    pub fn can_login(&self, user: &str, password: &str) -> bool {
        if let Some(ca) = &self.ca {
            // The real client over TLS.
            let out = Command::new("redis-cli")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "--tls",
                    "--cacert",
                ])
                .arg(ca)
                .args([
                    "--user",
                    user,
                    "--pass",
                    password,
                    "--no-auth-warning",
                    "PING",
                ])
                .output();
            return out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        use std::io::{Read, Write};
        let cmd = format!(
            "*3\r\n$4\r\nAUTH\r\n${}\r\n{user}\r\n${}\r\n{password}\r\n",
            user.len(),
            password.len()
        );
        if s.write_all(cmd.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        buf[..n].starts_with(b"+OK")
    }

    /// Runs `f` and counts the connections the server accepted meanwhile
    /// (`total_connections_received` from `INFO stats`, less this count's own probe).
    pub fn connections_during<T>(&self, f: impl FnOnce() -> T) -> (T, u64) {
        let before = self.connections_received();
        let out = f();
        (out, self.connections_received() - before - 1)
    }

    /// `total_connections_received`, the asking connection included.
    fn connections_received(&self) -> u64 {
        assert!(self.ca.is_none(), "counted over plaintext only");
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.write_all(
            b"*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$14\r\nredis-admin-pw\r\n*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n",
        )
        .unwrap();
        let mut text = String::new();
        let mut buf = [0u8; 8192];
        while !text.contains("total_connections_received:") || !text.ends_with("\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "redis closed the connection: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        n
    }

    pub fn acl_file(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("users.acl")).unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's redis-server binary (also run with `--sentinel`).
pub fn redis_server() -> &'static str {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("redis-server is required: apt-get install redis-server")
}

/// `redis-cli` against a node (as `default` with `password`, if given).
pub fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    redis_cli_at("127.0.0.1", port, password, args)
}

pub fn redis_cli_at(host: &str, port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut c = Command::new("redis-cli");
    c.args(["-h", host, "-p", &port.to_string(), "--no-auth-warning"]);
    if let Some(p) = password {
        c.args(["-a", p]);
    }
    let out = c
        .args(args)
        .output()
        .expect("redis-cli is required: apt-get install redis-tools");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node's directory under `dir` with its ACL file and a `redis.conf` (so `ACL SAVE` and
/// `CONFIG REWRITE` persist); returns the config's path.
fn node_conf(dir: &Path, name: &str, host: &str, port: u16, acl: &str, extra: &str) -> PathBuf {
    let nd = dir.join(name);
    std::fs::create_dir_all(&nd).unwrap();
    std::fs::write(nd.join("users.acl"), acl).unwrap();
    let conf = nd.join("redis.conf");
    std::fs::write(
        &conf,
        format!(
            // No diskless-sync delay: replicas link at once instead of after Redis' 5 s wait.
            "port {port}\nbind {host}\ndir {}\naclfile {}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n{extra}",
            nd.display(),
            nd.join("users.acl").display()
        ),
    )
    .unwrap();
    conf
}

fn spawn_redis(conf: &Path, sentinel: bool) -> Child {
    let mut c = Command::new(redis_server());
    c.arg(conf);
    if sentinel {
        c.arg("--sentinel");
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Redis nodes the way a StatefulSet runs them: the same port, each on its own address
/// (127.0.0.2, .3, …: all of 127/8 is loopback on Linux, as pod IPs differ in a cluster);
/// node 0 is the master, the others replicate from it; `default` is the admin and the
/// replication user.
pub struct RedisPods {
    _dir: tempfile::TempDir,
    pub port: u16,
    pub hosts: Vec<String>,
    children: Vec<Child>,
}

impl RedisPods {
    pub fn start(n: usize, default_password: &str) -> RedisPods {
        let dir = tempfile::Builder::new()
            .prefix("credseal-redispods-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let hosts: Vec<String> = (0..n).map(|i| format!("127.0.0.{}", i + 2)).collect();
        let acl = format!(
            "user default on #{} ~* &* +@all\n",
            sha256_hex(default_password)
        );
        let mut children = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let extra = match i {
                0 => String::new(),
                _ => format!(
                    "replicaof {} {port}\nmasterauth {default_password}\n",
                    hosts[0]
                ),
            };
            let conf = node_conf(dir.path(), &format!("redis-{i}"), host, port, &acl, &extra);
            children.push(spawn_redis(&conf, false));
        }
        let pods = RedisPods {
            _dir: dir,
            port,
            hosts,
            children,
        };
        for h in &pods.hosts {
            wait_for(h, port, "redis");
        }
        let end = Instant::now() + Duration::from_secs(30);
        while !pods.links_up(default_password) {
            assert!(Instant::now() < end, "replicas did not link to the master");
            std::thread::sleep(Duration::from_millis(100));
        }
        pods
    }

    pub fn cli(&self, i: usize, password: Option<&str>, args: &[&str]) -> String {
        redis_cli_at(&self.hosts[i], self.port, password, args)
    }

    pub fn can_login(&self, i: usize, password: &str) -> bool {
        self.cli(i, Some(password), &["PING"]).trim() == "PONG"
    }

    /// Every replica's link to the master is up.
    pub fn links_up(&self, password: &str) -> bool {
        (1..self.hosts.len()).all(|i| {
            self.cli(i, Some(password), &["INFO", "replication"])
                .contains("master_link_status:up")
        })
    }
}

impl Drop for RedisPods {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A master, one replica and three Sentinels (Debian's redis-server, `--sentinel`), each from
/// a config file so `ACL SAVE`, `CONFIG REWRITE` and Sentinel's own rewrites persist, and all
/// restartable.
pub struct RedisSet {
    pub dir: tempfile::TempDir,
    pub master: u16,
    pub replica: u16,
    pub sentinels: Vec<u16>,
    children: Vec<Child>,
}

impl RedisSet {
    pub fn start(default_password: &str) -> RedisSet {
        let dir = tempfile::Builder::new()
            .prefix("credseal-redisset-")
            .tempdir()
            .unwrap();
        let (master, replica) = (free_port(), free_port());
        let sentinels: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let acl = format!(
            "user default on #{} ~* &* +@all\n",
            sha256_hex(default_password)
        );
        for (name, port, extra) in [
            ("master", master, String::new()),
            (
                "replica",
                replica,
                format!("replicaof 127.0.0.1 {master}\nmasterauth {default_password}\n"),
            ),
        ] {
            node_conf(dir.path(), name, "127.0.0.1", port, &acl, &extra);
        }
        for (i, port) in sentinels.iter().enumerate() {
            let nd = dir.path().join(format!("sentinel{i}"));
            std::fs::create_dir_all(&nd).unwrap();
            std::fs::write(
                nd.join("sentinel.conf"),
                format!("port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master} 2\nsentinel auth-pass mymaster {default_password}\nsentinel down-after-milliseconds mymaster 3000\n", nd.display()),
            )
            .unwrap();
        }
        let mut set = RedisSet {
            dir,
            master,
            replica,
            sentinels,
            children: Vec::new(),
        };
        set.launch();
        set.wait_ready(default_password);
        set
    }

    fn launch(&mut self) {
        let dir = self.dir.path().to_owned();
        self.children
            .push(spawn_redis(&dir.join("master/redis.conf"), false));
        self.children
            .push(spawn_redis(&dir.join("replica/redis.conf"), false));
        for i in 0..self.sentinels.len() {
            self.children.push(spawn_redis(
                &dir.join(format!("sentinel{i}/sentinel.conf")),
                true,
            ));
        }
        for p in [self.master, self.replica]
            .iter()
            .chain(self.sentinels.iter())
        {
            wait_for_port(*p, "redis");
        }
    }

    /// The replica's link is up and every Sentinel knows the replica.
    pub fn wait_ready(&self, password: &str) {
        let end = Instant::now() + Duration::from_secs(40);
        loop {
            let link = redis_cli(self.replica, Some(password), &["INFO", "replication"])
                .contains("master_link_status:up");
            let known = self.sentinels.iter().all(|s| {
                redis_cli(*s, None, &["SENTINEL", "REPLICAS", "mymaster"])
                    .contains(&self.replica.to_string())
            });
            if link && known {
                return;
            }
            assert!(
                Instant::now() < end,
                "redis set not ready (link up: {link}, sentinels know the replica: {known})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn restart(&mut self) {
        for c in &mut self.children {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
        self.children.clear();
        self.launch();
    }

    pub fn can_login(&self, port: u16, password: &str) -> bool {
        redis_cli(port, Some(password), &["PING"]).trim() == "PONG"
    }
}

impl Drop for RedisSet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A server that accepts connections and never answers (a blackholed database or API, a
/// stuck proxy): the port it listens on. The connections are held until the test ends.
pub fn blackhole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}
