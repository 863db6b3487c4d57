//! `credseal edit`: the plaintext goes to a 0600 file in a private temporary directory that is
//! removed on every exit path, signals included (see `session`); only a changed, parseable
//! result is written back.

mod session;

use std::io::{BufRead, IsTerminal, Write};

use clap::Args as ClapArgs;

use crate::cli::decrypt::open;
use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::Input;
use crate::cli::keyring::split_command;
use crate::cli::{config, now, sops_failure};
use crate::fsx;
use crate::sops::file::{Context, Opened};
use crate::sops::store::{self, EmitOptions};
use crate::sops::walk::OsEntropy;

use session::Session;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The encrypted file to edit.
    pub file: std::path::PathBuf,
    /// Do not verify the MAC before editing (to repair a damaged file).
    #[arg(long)]
    pub ignore_mac: bool,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let input = Input::from_path(args.file);
    let name = input.display();
    // Before anything is decrypted: from here on a signal cannot leave plaintext behind.
    let session = Session::start(name.clone())?;
    let mut opened = open(&input, env, args.ignore_mac)?;
    let opts = emit_options(&input, env);
    let format = opened.format;
    let plain = opened
        .emit_plain(format, &opts)
        .map_err(|e| sops_failure(&name, e))?;
    let ext = input
        .file
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let tmp = session.create_plaintext(&format!("plaintext{ext}"), &plain)?;

    let editor = find_editor(env)?;
    let new_tree = loop {
        let status = session.edit(&editor, &tmp)?;
        if !status.success() {
            return Err(Failure::msg(
                Code::Generic,
                format!("editor {} exited with {status}; file untouched", editor[0]),
            ));
        }
        let edited = fsx::read(&tmp).map_err(|e| Failure::new(Code::CouldNotReadInput, e))?;
        if edited == plain {
            return Err(Failure::msg(
                Code::FileHasNotBeenModified,
                format!("{name}: file has not been modified"),
            ));
        }
        match store::load_plain(&edited, format) {
            Ok(tree) => break tree,
            Err(e) => {
                eprintln!("credseal: the edited file is not valid: {e}");
                if !ask_reedit()? {
                    return Err(Failure::new(Code::CouldNotReadInput, e)
                        .context(format!("{name}: edit abandoned, file untouched")));
                }
            }
        }
    };
    if new_tree == opened.tree {
        return Err(Failure::msg(
            Code::FileHasNotBeenModified,
            format!("{name}: file has not been modified"),
        ));
    }
    opened.tree = new_tree;
    session.finish(|| write_back(&mut opened, &input, &opts))
    // `session` is dropped here and on every early return: the plaintext goes with it.
}

/// Emit options for rewriting an existing file: `.sops.yaml` stores settings, else defaults.
pub fn emit_options(input: &Input, env: &Env) -> EmitOptions {
    let loaded = config::find(None, env.config.as_deref()).unwrap_or(None);
    input.emit_options(loaded.as_ref().map(|l| &l.config.stores))
}

/// Re-encrypts an opened file (same data key, unchanged values keep their ciphertext) and
/// replaces the file atomically. Its `version` and metadata layout stay as they were.
pub fn write_back(opened: &mut Opened, input: &Input, opts: &EmitOptions) -> CliResult {
    let mut entropy = OsEntropy;
    let mut ctx = Context {
        entropy: &mut entropy,
        now: now(),
    };
    let out = opened
        .seal(&mut ctx, opts)
        .map_err(|e| sops_failure(&input.display(), e))?;
    fsx::write_atomic(&input.file, &out, 0o644)
        .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e))
}

fn find_editor(env: &Env) -> CliResult<Vec<String>> {
    if let Some(e) = &env.editor {
        return split_command(e).filter(|v| !v.is_empty()).ok_or_else(|| {
            Failure::msg(
                Code::NoEditorFound,
                "the editor command ($SOPS_EDITOR/$EDITOR) cannot be parsed",
            )
        });
    }
    for candidate in ["vim", "nano", "vi"] {
        if let Some(path) = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(candidate))
            .find(|p| p.is_file())
        {
            return Ok(vec![path.to_string_lossy().into_owned()]);
        }
    }
    Err(Failure::msg(
        Code::NoEditorFound,
        "no editor found: set $EDITOR (or $SOPS_EDITOR)",
    ))
}

/// On a terminal, asks whether to edit again; elsewhere the edit is abandoned.
fn ask_reedit() -> CliResult<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    eprint!("Edit again? [Y/n] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(Code::Generic, e))?;
    Ok(!matches!(line.trim(), "n" | "N" | "no"))
}
