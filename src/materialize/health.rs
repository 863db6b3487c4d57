//! `/healthz`, `/readyz` and Prometheus `/metrics` on a plain blocking listener: the sidecar
//! needs three fixed responses, not an HTTP framework (and stays a few MiB of RSS). The port
//! is reachable from the pod network, so every connection is bounded in size, time and number.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the endpoints report. Labels are bounded: the outcome only, never a Secret or value.
#[derive(Debug, Default)]
pub struct State {
    pub ready: bool,
    pub renders_ok: u64,
    pub renders_failed: u64,
    pub last_success_unix: f64,
    pub secrets: usize,
}

pub type Shared = Arc<Mutex<State>>;

impl State {
    pub fn record_success(&mut self, secrets: usize) {
        self.ready = true;
        self.renders_ok += 1;
        self.secrets = secrets;
        self.last_success_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
    }

    pub fn record_failure(&mut self) {
        self.ready = false;
        self.renders_failed += 1;
    }

    fn metrics(&self) -> String {
        format!(
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
        )
    }
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
