//! `/healthz`, `/readyz` and Prometheus `/metrics` on a plain blocking listener: the sidecar
//! needs three fixed responses, not an HTTP framework (and stays a few MiB of RSS).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Serves the endpoints on `listener` in a background thread.
pub fn serve(listener: TcpListener, state: Shared) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = respond(stream, &state);
        }
    });
}

fn respond(mut stream: TcpStream, state: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
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
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
