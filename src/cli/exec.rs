//! `credseal exec-env` and `credseal exec-file`: run a command with the decrypted values, as
//! sops does, without leaving plaintext anywhere but the command's own memory or a private
//! temporary directory that is removed on every exit path, signals included (the `edit`
//! session).
//!
//! Not taken from sops: `--background` (deprecated there) and `--user` (needs root to switch
//! users; run credseal as that user instead).

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use clap::Args as ClapArgs;

use crate::cli::edit::Session;
use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{ChildExited, CliResult, Code, Failure};
use crate::cli::io::{Input, InputType};
use crate::cli::sopsfile::{emit_options, open};
use credseal::secret::{SecretBytes, SecretString};
use credseal::sops::dotenv;
use credseal::sops::tree::Node;

/// sops runs the command through the shell, so pipes and `&&` work in it.
const SHELL: &str = "/bin/sh";

#[derive(ClapArgs, Debug)]
pub struct EnvArgs {
    #[command(flatten)]
    pub input_type: InputType,
    /// The encrypted file. Its top-level values become environment variables; a mapping or
    /// list among them is refused.
    pub file: PathBuf,
    /// The command, run with `/bin/sh -c`.
    pub command: String,
    /// Give the command only the decrypted values, not credseal's own environment.
    #[arg(long)]
    pub pristine: bool,
    /// Replace credseal by the command (exec) instead of running it as a child.
    #[arg(long)]
    pub same_process: bool,
}

#[derive(ClapArgs, Debug)]
pub struct FileArgs {
    #[command(flatten)]
    pub input: Input,
    /// The command, run with `/bin/sh -c`; every `{}` in it is replaced by the path of the
    /// decrypted file.
    pub command: String,
    /// Write the plaintext to a regular file (mode 0600) instead of a FIFO: for commands that
    /// read the file more than once or seek in it. The FIFO can be read once.
    #[arg(long)]
    pub no_fifo: bool,
    /// The name of the decrypted file (in a private temporary directory), for commands that
    /// go by its extension.
    #[arg(long, value_name = "NAME", default_value = "tmp-file", value_parser = file_name)]
    pub filename: String,
}

/// Only a name: the file must stay inside the private directory.
fn file_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return Err(format!(
            "{s:?} is not a plain file name (no '/', not '.' or '..')"
        ));
    }
    Ok(s.to_owned())
}

pub fn run_env(args: EnvArgs, env: &Env) -> CliResult {
    let input = args.input_type.input(args.file);
    let name = input.display();
    let opened = open(&input, env, false)?;
    let doc = opened
        .tree
        .documents
        .first()
        .ok_or_else(|| Failure::msg(Code::Generic, format!("{name}: no document")))?;
    let mut vars: Vec<(String, SecretString)> = Vec::new();
    for (key, value) in doc.pairs() {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(Failure::msg(
                Code::Generic,
                format!("{name}: key {key:?} cannot be an environment variable name"),
            ));
        }
        let text = match value {
            Node::Map(_) | Node::Seq(_) => {
                return Err(Failure::msg(
                    Code::Generic,
                    format!(
                        "{name}: key {key:?} holds a mapping or list, which has no environment form; use exec-file"
                    ),
                ));
            }
            Node::Str(s) => s.clone(),
            other => SecretString::new(dotenv::scalar_text(other)),
        };
        vars.push((key.to_owned(), text));
    }
    drop(opened);
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(&args.command);
    if args.pristine {
        cmd.env_clear();
    }
    for (k, v) in &vars {
        cmd.env(k, v.expose());
    }
    if args.same_process {
        let e = cmd.exec();
        return Err(Failure::new(Code::Generic, e).context(format!("cannot run {SHELL}")));
    }
    let session = Session::start(name, "exec-env")?;
    let status = session.run(cmd, SHELL, Code::Generic)?;
    drop(session);
    child_result(status)
}

pub fn run_file(args: FileArgs, env: &Env) -> CliResult {
    let input = &args.input;
    let name = input.display();
    // Before anything is decrypted: from here on a signal cannot leave plaintext behind.
    let session = Session::start(name.clone(), "exec-file")?;
    let opened = open(input, env, false)?;
    let format = input.output_format_or(opened.format)?;
    let plain = SecretBytes::new(
        opened
            .emit_plain(format, &emit_options(input, env))
            .map_err(|e| in_file(&name, e))?,
    );
    drop(opened);
    let path = if args.no_fifo {
        session.create_plaintext(&args.filename, plain.expose())?
    } else {
        let path = session.private_dir()?.join(&args.filename);
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            Failure::new(Code::CouldNotWriteOutput, std::io::Error::from(e))
                .context(format!("cannot create a FIFO in {}", path.display()))
        })?;
        serve_once(path.clone(), plain);
        path
    };
    let command = args.command.replace("{}", &path.to_string_lossy());
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(command);
    let status = session.run(cmd, SHELL, Code::Generic)?;
    // The private directory goes before credseal reports anything.
    drop(session);
    child_result(status)
}

/// Writes the plaintext to the first reader of the FIFO, once, as sops does (a second reader
/// would block: use `--no-fifo`). The thread waits in open(2) until a reader comes; if none
/// does, it ends with the process, the FIFO already removed with the directory.
fn serve_once(path: PathBuf, plain: SecretBytes) {
    std::thread::spawn(move || {
        if let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&path) {
            // A reader that stops early closes the pipe (EPIPE): nothing to report.
            let _ = fifo.write_all(plain.expose());
        }
    });
}

/// The command's exit status becomes credseal's: its code, or 128 + the signal that ended it
/// (as shells report it).
fn child_result(status: ExitStatus) -> CliResult {
    if status.success() {
        return Ok(());
    }
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Err(Failure::new(
        Code::Generic,
        ChildExited {
            code: u8::try_from(code).unwrap_or(1),
            status,
        },
    ))
}
