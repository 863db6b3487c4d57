//! Redis beyond one server: ACL changes are not replicated, so every node of a replication set
//! gets the change; replicas that authenticate to the master with the rotated user get the new
//! `masterauth`; Sentinels that monitor with it get the new `auth-pass`. Links and Sentinel's
//! view of the master are checked before the old password goes.

use std::time::{Duration, Instant};

use redis::Connection;

use crate::k8s::workloads::Members;
use crate::rotate::connections::AdminConnections;
use crate::rotate::plan::{PodAddress, PodSet, Topology as Spec};
use crate::rotate::redis::{Persisted, Redis, RedisError};
use crate::secret::SecretString;

/// The nodes to change, found from the plan.
pub struct Topology {
    pub master: Redis,
    pub replicas: Vec<Redis>,
    pub sentinels: Vec<Redis>,
    pub master_name: Option<String>,
}

fn parse_addr(a: &str) -> Result<(String, u16), RedisError> {
    let (h, p) = a
        .rsplit_once(':')
        .ok_or_else(|| RedisError::Url(format!("{a:?}: expected host:port")))?;
    let port = p
        .parse()
        .map_err(|_| RedisError::Url(format!("{a:?}: bad port")))?;
    Ok((h.trim_matches(['[', ']']).to_owned(), port))
}

/// A Sentinel's view of a master, as the flat field/value list `SENTINEL MASTER` returns.
fn sentinel_master(c: &mut redis::Connection, name: &str) -> Result<Vec<String>, RedisError> {
    redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(name)
        .query(c)
        .map_err(cmd_err("SENTINEL MASTER"))
}

/// The value after `key` in a flat field/value reply.
fn field<'a>(fields: &'a [String], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .position(|f| f == key)
        .and_then(|i| fields.get(i + 1))
        .map(String::as_str)
}

fn cmd_err(what: &str) -> impl Fn(redis::RedisError) -> RedisError + '_ {
    move |e| RedisError::Command {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// Where each pod of the set listens, refusing a set that is not whole: every node must take
/// the new password (ACL changes are not replicated), so a pod that is starting, not ready or
/// going away would come back with the old one.
pub fn pod_addresses(
    set: &PodSet,
    members: &Members,
    default_port: u16,
) -> Result<Vec<(String, u16)>, RedisError> {
    let whole = "every node must take the new password, so nothing was changed; rerun when all pods are ready";
    let what = format!("statefulset {}/{}", set.namespace, set.name);
    let port = set.port.unwrap_or(default_port);
    if members.pods.len() < members.replicas.max(0) as usize {
        return Err(RedisError::Topology(format!(
            "{what} wants {} pods and has {}; {whole}",
            members.replicas,
            members.pods.len()
        )));
    }
    members
        .pods
        .iter()
        .map(|p| {
            let state = if p.terminating {
                Some("is terminating")
            } else if !p.ready || p.ip.is_none() {
                Some("is not ready")
            } else {
                None
            };
            if let Some(state) = state {
                return Err(RedisError::Topology(format!(
                    "{what}: pod {} {state}; {whole}",
                    p.name
                )));
            }
            let host = match set.address {
                PodAddress::PodIp => p.ip.clone().unwrap_or_default(),
                PodAddress::Dns => {
                    let service = members.service_name.as_deref().ok_or_else(|| {
                        RedisError::Topology(format!(
                            "{what} has no serviceName, so its pods have no DNS names; use address: podIP"
                        ))
                    })?;
                    format!("{}.{service}.{}.svc", p.name, set.namespace)
                }
            };
            Ok((host, port))
        })
        .collect()
}

impl Topology {
    /// The nodes of `spec`. `pods` are the addresses of a replication set given as a
    /// StatefulSet (found from the API by the caller): the one that reports `role:master` is
    /// the master and the others its replicas; two masters are refused.
    pub fn resolve(
        base: &Redis,
        spec: &Spec,
        pods: Option<Vec<(String, u16)>>,
        admin: &[&SecretString],
        pool: &mut AdminConnections,
    ) -> Result<Topology, RedisError> {
        if let Some(pods) = pods {
            let mut master: Option<Redis> = None;
            let mut replicas = Vec::new();
            for (host, port) in pods {
                let node = base.at(&host, port);
                let c = pool.redis(&node, admin)?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(c)
                    .map_err(cmd_err("INFO replication"))?;
                if !info.lines().any(|l| l.trim() == "role:master") {
                    replicas.push(node);
                } else if let Some(other) = &master {
                    return Err(RedisError::Topology(format!(
                        "{} and {} both report role:master; fix replication before rotating",
                        other.addr_text(),
                        node.addr_text()
                    )));
                } else {
                    master = Some(node);
                }
            }
            // The pod that says it is the master is, whatever the admin URL names (it may
            // still name the old master after a failover); with none in the set, the master
            // is outside it, at the admin URL.
            return Ok(Topology {
                master: master.unwrap_or_else(|| base.at_same()),
                replicas,
                sentinels: vec![],
                master_name: None,
            });
        }
        match spec {
            Spec::Standalone => Ok(Topology {
                master: base.at_same(),
                replicas: vec![],
                sentinels: vec![],
                master_name: None,
            }),
            Spec::Replication { replicas, .. } => Ok(Topology {
                master: base.at_same(),
                replicas: replicas
                    .iter()
                    .map(|a| parse_addr(a).map(|(h, p)| base.at(&h, p)))
                    .collect::<Result<_, _>>()?,
                sentinels: vec![],
                master_name: None,
            }),
            Spec::Sentinel {
                sentinels,
                master_name,
            } => {
                let sentinels: Vec<Redis> = sentinels
                    .iter()
                    .map(|a| parse_addr(a).map(|(h, p)| base.at(&h, p)))
                    .collect::<Result<_, _>>()?;
                // Ask the first Sentinel that answers where the master and replicas are.
                let mut last = None;
                for s in &sentinels {
                    match pool.plain(s) {
                        Ok(c) => {
                            let (host, port): (String, String) = redis::cmd("SENTINEL")
                                .arg("GET-MASTER-ADDR-BY-NAME")
                                .arg(master_name)
                                .query(c)
                                .map_err(cmd_err("SENTINEL GET-MASTER-ADDR-BY-NAME"))?;
                            let master = base.at(&host, port.parse().unwrap_or(6379));
                            let raw: Vec<Vec<String>> = redis::cmd("SENTINEL")
                                .arg("REPLICAS")
                                .arg(master_name)
                                .query(c)
                                .map_err(cmd_err("SENTINEL REPLICAS"))?;
                            let replicas = raw
                                .iter()
                                .filter_map(|fields| {
                                    let get = |k: &str| field(fields, k);
                                    Some(base.at(get("ip")?, get("port")?.parse().ok()?))
                                })
                                .collect();
                            return Ok(Topology {
                                master,
                                replicas,
                                sentinels,
                                master_name: Some(master_name.clone()),
                            });
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| RedisError::Url("no sentinels listed".into())))
            }
        }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Redis> {
        std::iter::once(&self.master).chain(self.replicas.iter())
    }

    /// The user a replica authenticates to its master with (`masteruser`, else `default`).
    fn replication_user(conn: &mut Connection) -> Result<String, RedisError> {
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("masteruser")
            .query(conn)
            .map_err(cmd_err("CONFIG GET masteruser"))?;
        Ok(v.get(1)
            .filter(|u| !u.is_empty())
            .cloned()
            .unwrap_or_else(|| "default".into()))
    }

    /// Whether the node has a `masterauth` configured (the value itself is not kept).
    fn has_masterauth(conn: &mut Connection) -> Result<bool, RedisError> {
        let v: Vec<crate::secret::SecretString> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("masterauth")
            .query::<Vec<String>>(conn)
            .map_err(cmd_err("CONFIG GET masterauth"))?
            .into_iter()
            .map(crate::secret::SecretString::from)
            .collect();
        Ok(v.get(1).is_some_and(|p| !p.expose().is_empty()))
    }

    /// Adds (dual) or sets (in-place) the password on every node, then points replication and
    /// Sentinel at it where they use this user. Returns one audit note per node.
    pub fn apply(
        &self,
        user: &str,
        password: &SecretString,
        dual: bool,
        admin: &[&SecretString],
        pool: &mut AdminConnections,
    ) -> Result<Vec<String>, RedisError> {
        let mut notes = Vec::new();
        for node in self.nodes() {
            let c = pool.redis(node, admin)?;
            if dual {
                node.add_password(c, user, password)?;
            } else {
                node.only_password(c, user, password)?;
            }
            notes.push(format!(
                "{}: {}",
                node.addr_text(),
                node.persist(c).as_str()
            ));
        }
        // The admin may be the rotated user: the new password works everywhere by now.
        let admin_now: Vec<&SecretString> = admin
            .iter()
            .copied()
            .chain(std::iter::once(password))
            .collect();
        // Replicas, and a master that is set up to replicate after a failover (a `masterauth`
        // of its own, as Sentinel deployments configure every node): a demoted master left with
        // the retired password would never link to the new one.
        for (i, node) in self.nodes().enumerate() {
            let c = pool.redis(node, &admin_now)?;
            let is_master = i == 0;
            if is_master && !Self::has_masterauth(c)? {
                continue;
            }
            if Self::replication_user(c)? == user {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("masterauth")
                    .arg(password.expose())
                    .query::<()>(c)
                    .map_err(cmd_err("CONFIG SET masterauth"))?;
                let how = match redis::cmd("CONFIG").arg("REWRITE").query::<()>(c) {
                    Ok(()) => Persisted::ConfigRewrite.as_str(),
                    Err(_) => Persisted::NotPersisted.as_str(),
                };
                notes.push(format!("{}: masterauth updated, {how}", node.addr_text()));
            }
        }
        if let Some(name) = &self.master_name {
            for s in &self.sentinels {
                let c = pool.plain(s)?;
                let info = sentinel_master(c, name)?;
                if field(&info, "auth-user").unwrap_or("default") == user {
                    redis::cmd("SENTINEL")
                        .arg("SET")
                        .arg(name)
                        .arg("auth-pass")
                        .arg(password.expose())
                        .query::<()>(c)
                        .map_err(cmd_err("SENTINEL SET auth-pass"))?;
                    notes.push(format!(
                        "{}: sentinel auth-pass updated (sentinel rewrites its config)",
                        s.addr_text()
                    ));
                }
            }
        }
        Ok(notes)
    }

    /// The new password logs in on every node, every replica's link to the master is up, and
    /// every Sentinel sees the master as healthy.
    pub fn verify(
        &self,
        user: &str,
        password: &SecretString,
        admin: &[&SecretString],
        pool: &mut AdminConnections,
    ) -> Result<(), RedisError> {
        // A fresh login with the new password on every node: never a kept connection.
        for node in self.nodes() {
            node.login(user, password)?;
        }
        let admin_now: Vec<&SecretString> = admin
            .iter()
            .copied()
            .chain(std::iter::once(password))
            .collect();
        let end = Instant::now() + Duration::from_secs(20);
        for replica in &self.replicas {
            loop {
                let c = pool.redis(replica, &admin_now)?;
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(c)
                    .map_err(cmd_err("INFO replication"))?;
                if info.lines().any(|l| l.trim() == "master_link_status:up") {
                    break;
                }
                if Instant::now() >= end {
                    return Err(RedisError::Command {
                        what: format!("replication link of {}", replica.addr_text()),
                        reason: "master_link_status is not up".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if let Some(name) = &self.master_name {
            for s in &self.sentinels {
                let c = pool.plain(s)?;
                let info = sentinel_master(c, name)?;
                let flags = field(&info, "flags").unwrap_or_default();
                if flags.contains("down") {
                    return Err(RedisError::Command {
                        what: format!("sentinel {}", s.addr_text()),
                        reason: format!("sees the master as {flags}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Leaves the new password as the only one on every node.
    pub fn retire(
        &self,
        user: &str,
        password: &SecretString,
        admin: &[&SecretString],
        pool: &mut AdminConnections,
    ) -> Result<Vec<String>, RedisError> {
        let admin_now: Vec<&SecretString> = admin
            .iter()
            .copied()
            .chain(std::iter::once(password))
            .collect();
        let mut notes = Vec::new();
        for node in self.nodes() {
            let c = pool.redis(node, &admin_now)?;
            node.only_password(c, user, password)?;
            notes.push(format!(
                "{}: {}",
                node.addr_text(),
                node.persist(c).as_str()
            ));
        }
        Ok(notes)
    }

    /// Preflight: the user exists on every node (ACL changes are not replicated, so a node
    /// without it would fail after others changed). Reads only.
    pub fn check_user(
        &self,
        user: &str,
        admin: &[&SecretString],
        pool: &mut AdminConnections,
    ) -> Result<(), RedisError> {
        for node in self.nodes() {
            let c = pool.redis(node, admin)?;
            if !node.user_exists(c, user)? {
                return Err(RedisError::UserMissing {
                    user: user.to_owned(),
                    addr: node.addr_text(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::workloads::Member;

    fn set(address: PodAddress) -> PodSet {
        PodSet {
            namespace: "cache".into(),
            name: "redis".into(),
            port: None,
            address,
        }
    }

    fn member(name: &str, ip: Option<&str>, ready: bool) -> Member {
        Member {
            name: name.into(),
            ip: ip.map(str::to_owned),
            ready,
            terminating: false,
        }
    }

    fn members(pods: Vec<Member>) -> Members {
        Members {
            replicas: 2,
            service_name: Some("redis-headless".into()),
            pods,
        }
    }

    #[test]
    fn addresses_by_ip_or_by_the_headless_service_name() {
        let m = members(vec![
            member("redis-0", Some("10.0.0.5"), true),
            member("redis-1", Some("10.0.0.6"), true),
        ]);
        let by_ip = pod_addresses(&set(PodAddress::PodIp), &m, 6380).unwrap();
        assert_eq!(
            by_ip,
            [("10.0.0.5".to_owned(), 6380), ("10.0.0.6".to_owned(), 6380)]
        );
        let mut dns = set(PodAddress::Dns);
        dns.port = Some(6379);
        let by_name = pod_addresses(&dns, &m, 6380).unwrap();
        assert_eq!(by_name[1].0, "redis-1.redis-headless.cache.svc");
        assert_eq!(by_name[1].1, 6379);
        let nameless = Members {
            service_name: None,
            ..m
        };
        let e = pod_addresses(&dns, &nameless, 6379)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no serviceName"), "{e}");
    }

    #[test]
    fn a_set_that_is_not_whole_is_refused() {
        let short = members(vec![member("redis-0", Some("10.0.0.5"), true)]);
        let e = pod_addresses(&set(PodAddress::PodIp), &short, 6379)
            .unwrap_err()
            .to_string();
        assert!(e.contains("wants 2 pods and has 1"), "{e}");
        let pending = members(vec![
            member("redis-0", Some("10.0.0.5"), true),
            member("redis-1", None, false),
        ]);
        let e = pod_addresses(&set(PodAddress::PodIp), &pending, 6379)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pod redis-1 is not ready"), "{e}");
        let mut going = members(vec![
            member("redis-0", Some("10.0.0.5"), true),
            member("redis-1", Some("10.0.0.6"), true),
        ]);
        going.pods[0].terminating = true;
        let e = pod_addresses(&set(PodAddress::PodIp), &going, 6379)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pod redis-0 is terminating"), "{e}");
    }
}
