//! The session of `edit` (and of `exec-file` and `exec-env`): the private directory holding
//! the plaintext and the process given it (the editor, the command), owned together so that a
//! signal (TERM, HUP, INT, QUIT; an SSH drop is a HUP) ends both before credseal exits, instead
//! of killing credseal and leaving the plaintext on disk and the user typing into an editor
//! whose result nobody reads back.
//!
//! A thread waits for the signals. It takes the same lock as every step that creates the
//! plaintext, starts or reaps the editor, or writes the result, and exits the process while
//! still holding it: after an interruption the main thread can start nothing new.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::cli::exit::{CliResult, Code, Failure};
use credseal::file_io;

const SIGNALS: [(i32, Signal, &str); 4] = [
    (SIGTERM, Signal::TERM, "SIGTERM"),
    (SIGHUP, Signal::HUP, "SIGHUP"),
    (SIGINT, Signal::INT, "SIGINT"),
    (SIGQUIT, Signal::QUIT, "SIGQUIT"),
];

/// How long the editor gets to exit after each signal: time to restore the terminal (and
/// for vim or nano to save a recovery file, which lands in the private directory too).
const GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(25);

pub struct Session {
    shared: Arc<Mutex<Shared>>,
    /// What was interrupted, for the message: "edit", "exec-file", …
    what: &'static str,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    dir: Option<tempfile::TempDir>,
    editor: Option<Editor>,
    /// The result is being written or the command is over: a late signal changes nothing.
    finished: bool,
}

struct Editor {
    child: Child,
    /// The editor leads its own process group, and everything it started is in it.
    own_group: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere must not stop the cleanup.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// Starts handling the signals; `file` names the encrypted file and `what` the command in
    /// the message.
    pub fn start(file: String, what: &'static str) -> CliResult<Session> {
        let mut signals = Signals::new(SIGNALS.map(|(raw, _, _)| raw)).map_err(|e| {
            Failure::new(Code::Generic, e).context("cannot install the signal handlers")
        })?;
        let handle = signals.handle();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            if let Some(raw) = signals.forever().next() {
                interrupt(&for_thread, raw, &file, what);
            }
        });
        Ok(Session {
            shared,
            what,
            handle,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// A new private (0700) directory, removed on every exit path, signals included. Created
    /// once; later calls return the same one.
    pub fn private_dir(&self) -> CliResult<PathBuf> {
        let what = self.what;
        let mut s = self.lock();
        if let Some(dir) = &s.dir {
            return Ok(dir.path().to_owned());
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("credseal-{what}-"))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                Failure::new(Code::Generic, e)
                    .context("cannot create a private temporary directory")
            })?;
        let path = dir.path().to_owned();
        // Owned by the session before anything is put in it.
        s.dir = Some(dir);
        Ok(path)
    }

    /// Writes the plaintext, mode 0600, into the private directory.
    pub fn create_plaintext(&self, name: &str, data: &[u8]) -> CliResult<PathBuf> {
        let path = self.private_dir()?.join(name);
        file_io::create_new(&path, data, 0o600)
            .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e))?;
        Ok(path)
    }

    /// Runs the editor on `file` and waits for it to exit.
    pub fn edit(&self, editor: &[String], file: &Path) -> CliResult<ExitStatus> {
        let mut cmd = Command::new(&editor[0]);
        cmd.args(&editor[1..]).arg(file);
        // An editor that cannot be started: sops' code for an editor that cannot be run.
        self.run(cmd, &format!("editor {}", editor[0]), Code::NoEditorFound)
    }

    /// Runs `cmd` (`label` names it in errors; `cannot_start` is the code when it cannot be
    /// started) and waits for it to exit.
    pub fn run(&self, mut cmd: Command, label: &str, cannot_start: Code) -> CliResult<ExitStatus> {
        // Without a terminal the child leads its own process group, so stopping it stops what
        // it started too (a wrapper script's child, a GUI editor's helper). On a terminal it
        // must stay in credseal's group, the foreground one, or reading the terminal would
        // stop it (SIGTTIN); the terminal's own signals reach it there anyway.
        let own_group = !std::io::stdin().is_terminal();
        if own_group {
            cmd.process_group(0);
        }
        {
            let mut s = self.lock();
            let child = cmd.spawn().map_err(|e| {
                Failure::new(cannot_start, e).context(format!("cannot run {label}"))
            })?;
            s.editor = Some(Editor { child, own_group });
        }
        loop {
            {
                let mut s = self.lock();
                let Some(ed) = s.editor.as_mut() else {
                    // Only the signal thread takes it, and it exits the process with the lock.
                    return Err(Failure::msg(
                        Code::Interrupted,
                        format!("{} interrupted", self.what),
                    ));
                };
                match ed.child.try_wait() {
                    Ok(Some(status)) => {
                        s.editor = None;
                        return Ok(status);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let mut ed = s.editor.take().expect("checked above");
                        ed.stop(Signal::TERM);
                        return Err(Failure::new(Code::Generic, e)
                            .context(format!("cannot wait for {label}")));
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs the final write with signals held off: one arriving now waits for it and is then
    /// ignored, so the file is either untouched or written, and the exit code says which.
    pub fn finish<T>(&self, write: impl FnOnce() -> T) -> T {
        let mut s = self.lock();
        s.finished = true;
        write()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        {
            let mut s = self.lock();
            s.finished = true;
            if let Some(mut ed) = s.editor.take() {
                ed.stop(Signal::TERM);
            }
            drop(s.dir.take());
        }
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Editor {
    /// Forwards `first`, then TERM (which editors answer by restoring the terminal), then
    /// KILL, each after a grace period, and reaps the editor.
    fn stop(&mut self, first: Signal) {
        let pid = Pid::from_child(&self.child);
        let own_group = self.own_group;
        let send = |sig: Signal| {
            let _ = if own_group {
                kill_process_group(pid, sig)
            } else {
                kill_process(pid, sig)
            };
        };
        let mut then = vec![first];
        if first != Signal::TERM {
            then.push(Signal::TERM);
        }
        for sig in then {
            send(sig);
            let deadline = Instant::now() + GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    // What it started may ignore the signal and outlive it.
                    if own_group {
                        let _ = kill_process_group(pid, Signal::KILL);
                    }
                    return;
                }
                std::thread::sleep(POLL);
            }
        }
        send(Signal::KILL);
        let _ = self.child.wait();
    }
}

/// The signal thread's work: stop the editor (or command), remove the plaintext, exit with the lock held.
fn interrupt(shared: &Mutex<Shared>, raw: i32, file: &str, what: &str) {
    let mut s = lock(shared);
    if s.finished {
        return;
    }
    let (_, sig, name) =
        SIGNALS
            .into_iter()
            .find(|(r, _, _)| *r == raw)
            .unwrap_or((raw, Signal::TERM, "a signal"));
    if let Some(mut ed) = s.editor.take() {
        ed.stop(sig);
    }
    drop(s.dir.take());
    let child = if what == "edit" {
        "the editor"
    } else {
        "the command"
    };
    eprintln!(
        "credseal: {file}: {what} interrupted by {name}: {child} was stopped and the plaintext removed; the file is untouched"
    );
    std::process::exit(Code::Interrupted.as_u8().into());
}
