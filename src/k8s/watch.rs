//! Following one object until a deadline: a read, then a watch of its name resumed from the
//! last resourceVersion seen (bookmarks included); when the server has compacted past that
//! version (410 Gone), a fresh watch with no resourceVersion, which starts with the object as
//! it is now (the API's "get state and start at most recent": a list and a watch in one call,
//! authorized as a watch); transient failures (a dropped connection, 5xx, 429, a watch that
//! ends) retried with backoff until the deadline. A refusal (403, 404, another 4xx) is never
//! retried: waiting would not change it.
//!
//! kube's own `runtime::watcher` does the same, but it would add 17 crates to the build (a
//! second hashbrown among them), and it retries every error alike, a 403 included.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use kube::api::{Api, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::k8s::error::K8sError;

/// How long one watch request stays open. Below the client's read timeout
/// (`client::API_REQUEST_TIMEOUT`), so a quiet watch ends on the server's terms, and the
/// caller looks at the object again at least this often even if no event arrives.
pub const WATCH_SECONDS: u32 = 20;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A watch that ends sooner than this after it started counts as a failure, so a server or
/// proxy that closes every watch at once is not asked again in a tight loop.
const SHORT_WATCH: Duration = Duration::from_secs(1);

type Events<K> = Pin<Box<dyn Stream<Item = Result<WatchEvent<K>, kube::Error>> + Send>>;

/// Where the next watch starts.
#[derive(Clone, Debug)]
enum Start {
    /// Nothing read yet: read the object first.
    Read,
    /// From this resourceVersion on.
    From(String),
    /// From now, the object's current state first (after a 410).
    Fresh,
}

/// What to do about a failed call.
#[derive(Debug)]
pub enum Failure {
    /// Worth another try after a pause: the connection, the server's load or its health.
    Transient {
        error: K8sError,
        retry_after: Option<Duration>,
    },
    /// The server compacted past our resourceVersion: start afresh.
    Gone,
    /// A refusal (403, 404, another 4xx) or a client-side problem: retrying changes nothing.
    Fatal(K8sError),
}

/// Sorts a kube error for the object described by `what`.
pub fn classify(what: &str, e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(ref status) if status.code == 410 => Failure::Gone,
        kube::Error::Api(ref status) if status.code == 429 || status.code >= 500 => {
            let retry_after = status
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s.into()));
            Failure::Transient {
                error: K8sError::from_kube(what, e),
                retry_after,
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            Failure::Transient {
                error: K8sError::from_kube(what, e),
                retry_after: None,
            }
        }
        other => Failure::Fatal(K8sError::from_kube(what, other)),
    }
}

/// Whether an error from another call of a rollout (listing or deleting pods) is worth
/// another try: the same rule as [`classify`], after the fact.
pub fn is_transient(e: &K8sError) -> bool {
    match e {
        K8sError::Transport { .. } | K8sError::WatchEnded { .. } => true,
        K8sError::Api { code, .. } => *code == 429 || *code >= 500,
        _ => false,
    }
}

/// One object, followed until `deadline`.
pub struct ObjectWatch<K> {
    api: Api<K>,
    name: String,
    what: String,
    deadline: Instant,
    start: Start,
    last: Option<K>,
    events: Option<(Events<K>, Instant)>,
    backoff: Duration,
    /// The failure that a retry has not yet overcome, reported if the deadline comes first
    /// and the object was never read.
    failing: Option<K8sError>,
    /// The caller asked to look at the last object again after a pause.
    again: Option<Duration>,
}

impl<K> ObjectWatch<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    /// Follows `name` through `api`; `what` names it in errors (`Deployment/ns/name`).
    pub fn new(api: Api<K>, name: &str, what: &str, deadline: Instant) -> ObjectWatch<K> {
        ObjectWatch {
            api,
            name: name.to_owned(),
            what: what.to_owned(),
            deadline,
            start: Start::Read,
            last: None,
            events: None,
            backoff: FIRST_BACKOFF,
            failing: None,
            again: None,
        }
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A transient failure of the caller's own calls: the next [`next`](Self::next) returns
    /// the last object again, after a pause that grows with each failure in a row.
    pub fn retry_after_failure(&mut self, error: K8sError) {
        self.failing = Some(error);
        self.again = Some(self.next_backoff(None));
    }

    /// The object as it is now (first call) and each time it changes, and again at least every
    /// [`WATCH_SECONDS`]; `Ok(None)` once the deadline passes.
    pub async fn next(&mut self) -> Result<Option<K>, K8sError> {
        if let Some(pause) = self.again.take() {
            if !self.pause(pause).await {
                return self.expired();
            }
            if let Some(last) = &self.last {
                return Ok(Some(last.clone()));
            }
        }
        loop {
            if Instant::now() >= self.deadline {
                return self.expired();
            }
            let Some((events, started)) = self.events.as_mut() else {
                match self.start.clone() {
                    Start::Read => match self.read().await {
                        Ok(Some(obj)) => return Ok(Some(obj)),
                        Ok(None) => return self.expired(),
                        Err(f) => self.failed(f).await?,
                    },
                    Start::From(rv) => {
                        if let Err(f) = self.watch(&rv).await {
                            self.failed(f).await?;
                        }
                    }
                    Start::Fresh => {
                        if let Err(f) = self.watch("").await {
                            self.failed(f).await?;
                        }
                    }
                }
                continue;
            };
            let started = *started;
            let event = match tokio::time::timeout_at(self.deadline, events.next()).await {
                Err(_) => return self.expired(),
                Ok(e) => e,
            };
            match event {
                None => {
                    // The watch ended: resume where it left off. The object is looked at again,
                    // in case what the caller judges by is not in it (a pod's readiness).
                    self.events = None;
                    if started.elapsed() < SHORT_WATCH {
                        let error = K8sError::WatchEnded {
                            what: self.what.clone(),
                        };
                        self.failed(Failure::Transient {
                            error,
                            retry_after: None,
                        })
                        .await?;
                        continue;
                    }
                    if let Some(last) = &self.last {
                        return Ok(Some(last.clone()));
                    }
                }
                Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                    if let Some(rv) = obj.resource_version() {
                        self.start = Start::From(rv);
                    }
                    self.succeeded();
                    self.last = Some(obj.clone());
                    return Ok(Some(obj));
                }
                Some(Ok(WatchEvent::Deleted(_))) => {
                    self.events = None;
                    return Err(K8sError::NotFound {
                        what: format!("{} (deleted while its rollout was awaited)", self.what),
                    });
                }
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    self.start = Start::From(b.metadata.resource_version);
                }
                Some(Ok(WatchEvent::Error(status))) => {
                    self.events = None;
                    let f = classify(&self.what, kube::Error::Api(status));
                    self.failed(f).await?;
                }
                Some(Err(e)) => {
                    self.events = None;
                    let f = classify(&self.what, e);
                    self.failed(f).await?;
                }
            }
        }
    }

    /// Reads the object; `Ok(None)` when the deadline passed first.
    async fn read(&mut self) -> Result<Option<K>, Failure> {
        let got = tokio::time::timeout_at(self.deadline, self.api.get(&self.name)).await;
        let obj = match got {
            Err(_) => return Ok(None),
            Ok(r) => r.map_err(|e| classify(&self.what, e))?,
        };
        // Without a version (never, from a real server) the watch starts from now instead.
        self.start = obj.resource_version().map_or(Start::Fresh, Start::From);
        self.succeeded();
        self.last = Some(obj.clone());
        Ok(Some(obj))
    }

    /// Starts a watch from `rv`; from now, the current state first, when `rv` is empty.
    async fn watch(&mut self, rv: &str) -> Result<(), Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let seconds = (left.as_secs() as u32 + 1).min(WATCH_SECONDS);
        let params = WatchParams::default()
            .fields(&format!("metadata.name={}", self.name))
            .timeout(seconds);
        let started = tokio::time::timeout_at(self.deadline, self.api.watch(&params, rv)).await;
        let stream = match started {
            // The deadline check at the top of the loop ends it.
            Err(_) => return Ok(()),
            Ok(r) => r.map_err(|e| classify(&self.what, e))?,
        };
        self.events = Some((Box::pin(stream), Instant::now()));
        Ok(())
    }

    /// Deals with a failure: gives up on a fatal one, starts afresh after a 410, and pauses
    /// before the next try after a transient one.
    async fn failed(&mut self, f: Failure) -> Result<(), K8sError> {
        match f {
            Failure::Fatal(e) => Err(e),
            Failure::Gone => {
                // A 410 to a read or a fresh watch is no compaction: do not ask again at once.
                if !matches!(self.start, Start::From(_)) {
                    let pause = self.next_backoff(None);
                    self.pause(pause).await;
                }
                if !matches!(self.start, Start::Read) {
                    self.start = Start::Fresh;
                }
                Ok(())
            }
            Failure::Transient { error, retry_after } => {
                self.failing = Some(error);
                let pause = self.next_backoff(retry_after);
                self.pause(pause).await;
                Ok(())
            }
        }
    }

    fn next_backoff(&mut self, retry_after: Option<Duration>) -> Duration {
        let pause = retry_after.unwrap_or(self.backoff).max(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }

    fn succeeded(&mut self) {
        self.backoff = FIRST_BACKOFF;
        self.failing = None;
    }

    /// Sleeps for `d` or until the deadline; whether time is left after it.
    async fn pause(&self, d: Duration) -> bool {
        let until = (Instant::now() + d).min(self.deadline);
        tokio::time::sleep_until(until).await;
        Instant::now() < self.deadline
    }

    /// The deadline passed: not healthy in time, unless the object could never be read, when
    /// the failure that kept it from being read says more.
    fn expired(&mut self) -> Result<Option<K>, K8sError> {
        match (self.last.is_none(), self.failing.take()) {
            (true, Some(e)) => Err(e),
            _ => Ok(None),
        }
    }
}
