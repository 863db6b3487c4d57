//! `status`: where each credential of a plan stands — its generation, last rotation, when it
//! is next due, a rotation in progress and who holds its lock — read without taking a lock or
//! changing anything. For a Secret target only metadata is fetched (the target's and the
//! pending record's annotations, the Lease), so no value leaves the API server; a file target
//! is opened as `rotate` opens it, and only its annotations are kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease as LeaseObject;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::file_io;
use crate::k8s::K8sError;
use crate::k8s::access::Access;
use crate::manifest::{GENERATION_ANNOTATION, ROTATED_AT_ANNOTATION};
use crate::rotate::lock;
use crate::rotate::plan::{Credential, FileRef, SecretRef, TargetSpec};
use crate::rotate::secret_target;
use crate::rotate::store::Phase;
use crate::rotate::target::{FileTarget, TargetError};
use crate::sops::keys::Keyring;
use crate::sops::tree::Timestamp;

/// What could not be read of one credential; the rest of its status is still reported.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The target file or its pending record could not be opened.
    #[error(transparent)]
    File(#[from] TargetError),
    /// An API request failed (unreachable, forbidden, …).
    #[error(transparent)]
    Kube(#[from] K8sError),
    #[error("secret {0}: not found")]
    Missing(String),
    #[error("a Secret target needs a cluster connection")]
    NoCluster,
    /// The lock file exists but cannot be examined.
    #[error("{}: cannot tell whether it is locked", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Something `rotate` would refuse sits where the pending record belongs.
    #[error("{what}: not a credseal pending record ({problem}); rotate refuses to use it")]
    NotOurs { what: String, problem: String },
    /// An annotation credseal writes holds something it cannot read.
    #[error("{what}: {problem}")]
    Shape { what: String, problem: String },
}

/// What `read` is given: the cli gathers it from the environment.
pub struct Context<'a> {
    /// Opens file targets and their pending records (as `rotate` does).
    pub keyring: &'a Keyring,
    /// The plan's directory: file paths in it are relative to it.
    pub base_dir: &'a Path,
    pub kube: Option<kube::Client>,
    /// The clock, Unix seconds: due times and Lease expiry are judged against it.
    pub now: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// As the plan names it (relative to the plan).
    File {
        path: String,
    },
    Secret {
        namespace: String,
        name: String,
    },
}

/// A rotation in progress, from its pending record (never its password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingStatus {
    pub phase: Phase,
    /// The generation the rotation will commit (or has committed).
    pub generation: u64,
    /// Dual with a grace: the old password is retired by the first run after this.
    pub retire_after: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// A run holds it now: `holder` as that run named itself, `pid` where the OS says (a file
    /// lock held by a process this one can see), `expires` for a Lease.
    Held {
        holder: Option<String>,
        pid: Option<u32>,
        expires: Option<Timestamp>,
    },
    /// A Lease its holder stopped renewing (a run that died): the next run takes it over.
    Expired {
        holder: String,
        expired: Option<Timestamp>,
    },
    /// Not knowable here (no `/proc/locks`).
    Unknown,
}

#[derive(Debug)]
pub struct CredentialStatus {
    pub name: String,
    pub target: Target,
    /// `None`: the target could not be read.
    pub generation: Option<u64>,
    pub last_rotation: Option<Timestamp>,
    pub rotate_after: Option<Duration>,
    /// `None`: due at every run (no `rotateAfter`, or never rotated), or unreadable.
    pub next_due: Option<Timestamp>,
    /// Whether a run now would rotate it (`None`: the target could not be read).
    pub due: Option<bool>,
    /// `Some(None)`: no rotation in progress; `None`: the pending record could not be read.
    pub pending: Option<Option<PendingStatus>>,
    /// `None`: could not be read.
    pub lock: Option<LockState>,
    pub errors: Vec<StatusError>,
}

/// The calls `status` makes for `cred`, all reads: the Role rules it needs.
pub fn cluster_calls(cred: &Credential) -> Vec<Access> {
    let Some(s) = cred.target.secret() else {
        return Vec::new();
    };
    let pending = pending_name(s);
    vec![
        Access::new("get", "", "secrets", &s.namespace, Some(&s.name)),
        Access::new("get", "", "secrets", &s.namespace, Some(&pending)),
        Access::new(
            "get",
            "coordination.k8s.io",
            "leases",
            &s.namespace,
            Some(&lock::lease_name(&s.name)),
        ),
    ]
}

fn pending_name(s: &SecretRef) -> String {
    format!("{}-credseal-pending", s.name)
}

/// Reads the status of `cred`; what cannot be read is in `errors`, the rest is filled in.
pub async fn read(cred: &Credential, ctx: &Context<'_>) -> CredentialStatus {
    let mut st = CredentialStatus {
        name: cred.name.clone(),
        target: match &cred.target {
            TargetSpec::File(f) => Target::File {
                path: f.path.clone(),
            },
            TargetSpec::Secret(s) => Target::Secret {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
            },
        },
        generation: None,
        last_rotation: None,
        rotate_after: cred.rotate_after,
        next_due: None,
        due: None,
        pending: None,
        lock: None,
        errors: Vec::new(),
    };
    let current = match &cred.target {
        TargetSpec::File(f) => read_file(cred, f, ctx, &mut st),
        TargetSpec::Secret(s) => match &ctx.kube {
            Some(client) => read_secret(cred, s, client, ctx, &mut st).await,
            None => {
                st.errors.push(StatusError::NoCluster);
                None
            }
        },
    };
    if let Some((generation, rotated_at)) = current {
        st.generation = Some(generation);
        st.last_rotation = rotated_at;
        st.next_due = cred.next_due(rotated_at.as_ref()).map(Timestamp::from_unix);
        st.due = Some(cred.is_due(rotated_at.as_ref(), ctx.now));
    }
    st
}

type Current = (u64, Option<Timestamp>);

fn read_file(
    cred: &Credential,
    f: &FileRef,
    ctx: &Context<'_>,
    st: &mut CredentialStatus,
) -> Option<Current> {
    let path = ctx.base_dir.join(&f.path);
    match file_lock(&path) {
        Ok(l) => st.lock = Some(l),
        Err(e) => st.errors.push(e),
    }
    let target = match FileTarget::new(path, &f.key, f.username_key.as_deref(), ctx.keyring) {
        Ok(t) => t,
        Err(e) => {
            st.errors.push(e.into());
            return None;
        }
    };
    match target.pending() {
        Ok(Some(p)) => {
            if p.credential != cred.name {
                st.errors.push(StatusError::Shape {
                    what: target.pending_path().display().to_string(),
                    problem: format!("the pending record belongs to credential {}", p.credential),
                });
            }
            st.pending = Some(Some(PendingStatus {
                phase: p.phase,
                generation: p.generation,
                retire_after: p.retire_after,
            }));
        }
        Ok(None) => st.pending = Some(None),
        Err(e) => st.errors.push(e.into()),
    }
    match target.read() {
        Ok(c) => Some((c.generation, c.rotated_at)),
        Err(e) => {
            st.errors.push(e.into());
            None
        }
    }
}

async fn read_secret(
    cred: &Credential,
    s: &SecretRef,
    client: &kube::Client,
    ctx: &Context<'_>,
    st: &mut CredentialStatus,
) -> Option<Current> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &s.namespace);
    let what = |name: &str| format!("secret {}/{name}", s.namespace);
    // Metadata only: the values stay on the API server.
    let target = match secrets.get_metadata_opt(&s.name).await {
        Ok(Some(m)) => Some(m.metadata),
        Ok(None) => {
            st.errors
                .push(StatusError::Missing(format!("{}/{}", s.namespace, s.name)));
            None
        }
        Err(e) => {
            st.errors.push(K8sError::from_kube(what(&s.name), e).into());
            None
        }
    };
    let pending = pending_name(s);
    match secrets.get_metadata_opt(&pending).await {
        Ok(Some(m)) => {
            let m = m.metadata;
            let annotations = m.annotations.clone().unwrap_or_default();
            let shape = |problem: &str| StatusError::Shape {
                what: what(&pending),
                problem: problem.to_owned(),
            };
            let owner_uid = target.as_ref().and_then(|t| t.uid.as_ref());
            let owned = m
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Secret" && Some(&o.uid) == owner_uid);
            let phase = annotations
                .get(secret_target::PHASE)
                .and_then(|p| Phase::parse(p));
            let generation = annotations
                .get(GENERATION_ANNOTATION)
                .and_then(|g| g.parse().ok());
            if target.is_some() && !owned {
                st.errors.push(StatusError::NotOurs {
                    what: what(&pending),
                    problem: format!("it is not owned by secret {}/{}", s.namespace, s.name),
                });
            } else if let (Some(phase), Some(generation)) = (phase, generation) {
                if let Some(other) = annotations
                    .get(secret_target::CREDENTIAL)
                    .filter(|c| **c != cred.name)
                {
                    st.errors.push(shape(&format!(
                        "the pending record belongs to credential {other}"
                    )));
                }
                let retire_after = match annotations.get(secret_target::RETIRE_AFTER) {
                    Some(t) => match Timestamp::parse_rfc3339(t) {
                        Some(t) => Some(t),
                        None => {
                            st.errors.push(shape("bad retire-after annotation"));
                            None
                        }
                    },
                    None => None,
                };
                st.pending = Some(Some(PendingStatus {
                    phase,
                    generation,
                    retire_after,
                }));
            } else {
                st.errors.push(shape("bad phase or generation annotation"));
            }
        }
        Ok(None) => st.pending = Some(None),
        Err(e) => st
            .errors
            .push(K8sError::from_kube(what(&pending), e).into()),
    }
    match lease_lock(client, &s.namespace, &lock::lease_name(&s.name), ctx.now).await {
        Ok(l) => st.lock = Some(l),
        Err(e) => st.errors.push(e.into()),
    }
    let annotations = target?.annotations.unwrap_or_default();
    // Read as `rotate` reads them (secret_target::read): no generation is 0, a bad time none.
    Some((
        annotations
            .get(GENERATION_ANNOTATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(0),
        annotations
            .get(ROTATED_AT_ANNOTATION)
            .and_then(|t| Timestamp::parse_rfc3339(t)),
    ))
}

/// The Lease as `Lease::acquire` judges it: held while its holder renews it in time.
async fn lease_lock(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    now: i64,
) -> Result<LockState, K8sError> {
    let leases: Api<LeaseObject> = Api::namespaced(client.clone(), namespace);
    let lease = leases
        .get_opt(name)
        .await
        .map_err(|e| K8sError::from_kube(format!("lease {namespace}/{name}"), e))?;
    let Some(spec) = lease.and_then(|l| l.spec) else {
        return Ok(LockState::Free);
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Ok(LockState::Free);
    }
    let expires = crate::k8s::lease::expiry(&spec).map(|t| Timestamp::from_unix(t.as_second()));
    Ok(match expires {
        Some(t) if t.unix() > now => LockState::Held {
            holder: Some(holder),
            pid: None,
            expires: Some(t),
        },
        _ => LockState::Expired {
            holder,
            expired: expires,
        },
    })
}

/// Whether a run holds the `flock(2)` beside `target`, found in `/proc/locks` without taking
/// it (a shared lock taken just to look would make a starting run exit 221). Locks held by
/// processes in another PID namespace (another container sharing the volume) are not listed
/// there, so such a holder reads as free.
pub fn file_lock(target: &Path) -> Result<LockState, StatusError> {
    use std::os::unix::fs::MetadataExt;
    let path = lock::lock_path(target);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockState::Free),
        Err(source) => return Err(StatusError::Lock { path, source }),
    };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Ok(LockState::Unknown);
    };
    let dev = meta.dev();
    let Some(pid) = flock_holder(
        &locks,
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino(),
    ) else {
        return Ok(LockState::Free);
    };
    // The holder writes its name into the file once it has the lock.
    let holder = file_io::read_to_string(&path)
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    Ok(LockState::Held {
        holder,
        pid: (pid != 0).then_some(pid),
        expires: None,
    })
}

/// The PID holding an `flock` on the inode `major:minor:ino`, from the text of `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 6175 fe:00:6243571 0 EOF`; device numbers in hex, a waiter's
/// line has `->` after the number and is skipped). 0: held by a process not visible here.
fn flock_holder(locks: &str, major: u32, minor: u32, ino: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let (ma, mi, i) = (id.next()?, id.next()?, id.next()?);
        let same = u32::from_str_radix(ma, 16).ok()? == major
            && u32::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino;
        same.then(|| f.get(4)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines() {
        let text = "1: POSIX  ADVISORY  WRITE 99 fe:00:42 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 6175 fe:00:6243571 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 6176 fe:00:6243571 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 0 103:02:42 0 EOF\n";
        assert_eq!(flock_holder(text, 0xfe, 0, 6243571), Some(6175));
        assert_eq!(flock_holder(text, 0xfe, 0, 42), None, "a POSIX lock");
        assert_eq!(flock_holder(text, 0x103, 2, 42), Some(0));
        assert_eq!(flock_holder(text, 0xfe, 1, 6243571), None);
    }

    #[test]
    fn a_lock_held_by_this_process_is_seen_with_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("db.enc.yaml");
        assert_eq!(file_lock(&target).unwrap(), LockState::Free);
        let lock_file = std::fs::File::create(lock::lock_path(&target)).unwrap();
        assert_eq!(file_lock(&target).unwrap(), LockState::Free, "unlocked");
        rustix::fs::flock(&lock_file, rustix::fs::FlockOperation::LockExclusive).unwrap();
        std::fs::write(lock::lock_path(&target), "host/pid-1/x\n").unwrap();
        if std::path::Path::new("/proc/locks").exists() {
            assert_eq!(
                file_lock(&target).unwrap(),
                LockState::Held {
                    holder: Some("host/pid-1/x".into()),
                    pid: Some(std::process::id()),
                    expires: None,
                }
            );
        }
        drop(lock_file);
        assert_eq!(file_lock(&target).unwrap(), LockState::Free);
    }
}
