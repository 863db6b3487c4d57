//! `/healthz`, `/readyz` and Prometheus `/metrics` on a plain blocking listener: the sidecar
//! needs three fixed responses, not an HTTP framework (and stays a few MiB of RSS). The port
//! is reachable from the pod network, so every connection is bounded in size, time and number.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the endpoints report. Labels are bounded: an outcome, or a rendered Secret's
/// namespace and name; never a key's value.
#[derive(Debug, Default)]
pub struct State {
    pub ready: bool,
    pub renders_ok: u64,
    pub renders_failed: u64,
    pub last_success_unix: f64,
    pub secrets: usize,
    /// The Secrets of the last successful render (what the projected files hold).
    pub rendered: Vec<RenderedSecret>,
}

/// Where a rendered Secret came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A SOPS-encrypted manifest: its annotations say which rotation it holds.
    Sops,
    /// A Secret volume mounted by the kubelet: values only, no annotations.
    Volume,
}

impl SecretSource {
    fn as_str(self) -> &'static str {
        match self {
            SecretSource::Sops => "sops",
            SecretSource::Volume => "volume",
        }
    }
}

/// One rendered Secret as `/metrics` reports it: its names and the rotation its annotations
/// record, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedSecret {
    pub namespace: String,
    pub name: String,
    pub source: SecretSource,
    /// `credseal.dev/generation` (0 when a manifest has none, as `rotate` reads it); `None` when
    /// not known (a Secret volume, or an annotation that is not a number).
    pub generation: Option<u64>,
    /// `credseal.dev/rotated-at`, Unix seconds; `None` when not recorded.
    pub rotated_at: Option<i64>,
}

pub type Shared = Arc<Mutex<State>>;

impl State {
    pub fn record_success(&mut self, rendered: Vec<RenderedSecret>) {
        self.ready = true;
        self.renders_ok += 1;
        self.secrets = rendered.len();
        self.rendered = rendered;
        self.last_success_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
    }

    /// A failed render keeps the last good files, so the per-Secret metrics stay theirs.
    pub fn record_failure(&mut self) {
        self.ready = false;
        self.renders_failed += 1;
    }

    /// The Prometheus text exposition format (0.0.4), written by hand: the sidecar stays
    /// small, and the format is a line per sample.
    fn metrics(&self) -> String {
        let mut m = format!(
            "# HELP credseal_materialize_renders_total Renders of the projected files, by outcome.\n\
             # TYPE credseal_materialize_renders_total counter\n\
             credseal_materialize_renders_total{{outcome=\"success\"}} {}\n\
             credseal_materialize_renders_total{{outcome=\"error\"}} {}\n\
             # HELP credseal_materialize_last_success_timestamp_seconds Unix time of the last successful render.\n\
             # TYPE credseal_materialize_last_success_timestamp_seconds gauge\n\
             credseal_materialize_last_success_timestamp_seconds {}\n\
             # HELP credseal_materialize_ready Whether the last render succeeded.\n\
             # TYPE credseal_materialize_ready gauge\n\
             credseal_materialize_ready {}\n\
             # HELP credseal_materialize_secrets Secrets in the last successful render.\n\
             # TYPE credseal_materialize_secrets gauge\n\
             credseal_materialize_secrets {}\n",
            self.renders_ok,
            self.renders_failed,
            self.last_success_unix,
            u8::from(self.ready),
            self.secrets
        );
        header(
            &mut m,
            "credseal_renders_total",
            "counter",
            "Renders attempted (each change of the inputs), successful or not.",
        );
        sample(
            &mut m,
            "credseal_renders_total",
            "",
            self.renders_ok + self.renders_failed,
        );
        header(
            &mut m,
            "credseal_render_errors_total",
            "counter",
            "Renders that failed; the last good files were kept.",
        );
        sample(
            &mut m,
            "credseal_render_errors_total",
            "",
            self.renders_failed,
        );
        header(
            &mut m,
            "credseal_render_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful render (0 before the first).",
        );
        sample(
            &mut m,
            "credseal_render_last_success_timestamp_seconds",
            "",
            self.last_success_unix,
        );
        let labels = |s: &RenderedSecret| {
            format!(
                "namespace=\"{}\",name=\"{}\"",
                label_value(&s.namespace),
                label_value(&s.name)
            )
        };
        header(
            &mut m,
            "credseal_secret_info",
            "gauge",
            "Each Secret of the last successful render, by source: sops (an encrypted manifest, whose annotations record its rotation) or volume (a mounted Secret volume, which records none).",
        );
        for s in &self.rendered {
            let l = format!("{{{},source=\"{}\"}}", labels(s), s.source.as_str());
            sample(&mut m, "credseal_secret_info", &l, 1);
        }
        header(
            &mut m,
            "credseal_secret_generation",
            "gauge",
            "Rotation generation of each rendered Secret (its credseal.dev/generation annotation; 0 before the first rotation).",
        );
        for s in &self.rendered {
            if let Some(g) = s.generation {
                let l = format!("{{{}}}", labels(s));
                sample(&mut m, "credseal_secret_generation", &l, g);
            }
        }
        header(
            &mut m,
            "credseal_secret_rotation_timestamp_seconds",
            "gauge",
            "Unix time of the last rotation of each rendered Secret (its credseal.dev/rotated-at annotation); no sample when none is recorded.",
        );
        for s in &self.rendered {
            if let Some(t) = s.rotated_at {
                let l = format!("{{{}}}", labels(s));
                sample(&mut m, "credseal_secret_rotation_timestamp_seconds", &l, t);
            }
        }
        m
    }
}

fn header(m: &mut String, name: &str, kind: &str, help: &str) {
    m.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// `labels` is empty or `{…}`, already escaped.
fn sample(m: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    m.push_str(&format!("{name}{labels} {value}\n"));
}

/// A label value as the exposition format quotes it: backslash, double quote and line feed
/// escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Probes in flight at once; a connection beyond them is closed unanswered, so a flood
/// costs bounded memory and threads.
const MAX_CONNECTIONS: usize = 32;
/// A request line and headers larger than this are refused (a probe sends a few hundred bytes).
const MAX_REQUEST: usize = 8 * 1024;
/// The whole request must arrive within this time, however slowly it trickles in: a client
/// that sends a byte a second cannot hold a connection (the kubelet's probes time out in 1 s
/// by default, so a real probe is never cut off by it).
const REQUEST_DEADLINE: Duration = Duration::from_secs(3);

/// Serves the endpoints on `listener` in a background thread, one short-lived thread per
/// connection, so a slow or hostile client never delays a probe.
pub fn serve(listener: TcpListener, state: Shared) {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let slot = Slot(active.clone());
            let state = state.clone();
            // A small stack: the handler holds one 8 KiB request buffer and a short response.
            let spawned = std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let _slot = slot;
                    let _ = respond(stream, &state);
                });
            drop(spawned);
        }
    });
}

/// A connection slot, given back however the handler ends (also when the spawn fails).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads the request line and headers, bounded in size and in total time.
fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        let head = &buf[..len];
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            buf.truncate(len);
            return Ok(Some(buf));
        }
        if len == MAX_REQUEST {
            return Ok(None);
        }
    }
}

fn respond(mut stream: TcpStream, state: &Shared) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream)? else {
        return write_response(
            &mut stream,
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n",
        );
    };
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body, ctype) = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        match path {
            "/healthz" => ("200 OK", "ok\n".to_owned(), "text/plain"),
            "/readyz" if s.ready => ("200 OK", "ready\n".to_owned(), "text/plain"),
            "/readyz" => (
                "503 Service Unavailable",
                "not ready\n".to_owned(),
                "text/plain",
            ),
            "/metrics" => ("200 OK", s.metrics(), "text/plain; version=0.0.4"),
            _ => ("404 Not Found", "not found\n".to_owned(), "text/plain"),
        }
    };
    write_response(&mut stream, status, ctype, &body)
}

fn write_response(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn per_secret_samples_only_where_known() {
        let mut s = State::default();
        s.record_failure();
        s.record_success(vec![
            RenderedSecret {
                namespace: "ns".into(),
                name: "db".into(),
                source: SecretSource::Sops,
                generation: Some(3),
                rotated_at: Some(1_767_323_045),
            },
            RenderedSecret {
                namespace: "ns".into(),
                name: "pg".into(),
                source: SecretSource::Volume,
                generation: None,
                rotated_at: None,
            },
        ]);
        let m = s.metrics();
        for line in [
            "credseal_renders_total 2",
            "credseal_render_errors_total 1",
            "credseal_secret_info{namespace=\"ns\",name=\"db\",source=\"sops\"} 1",
            "credseal_secret_info{namespace=\"ns\",name=\"pg\",source=\"volume\"} 1",
            "credseal_secret_generation{namespace=\"ns\",name=\"db\"} 3",
            "credseal_secret_rotation_timestamp_seconds{namespace=\"ns\",name=\"db\"} 1767323045",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} in\n{m}");
        }
        assert!(
            !m.contains("name=\"pg\"}"),
            "no rotation samples for a volume:\n{m}"
        );
    }
}
