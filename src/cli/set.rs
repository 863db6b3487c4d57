//! `credseal set` and `credseal unset`: change one value, churn-free.

use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::InputType;
use crate::cli::sopsfile::{emit_options, open, write_back};
use credseal::secret::{SecretBytes, SecretString};
use credseal::sops::json;
use credseal::sops::path::{self, PathError};
use credseal::sops::tree::Node;

#[derive(ClapArgs, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub input_type: InputType,
    /// The encrypted file.
    pub file: PathBuf,
    /// Where to set the value, e.g. '["stringData"]["password"]'.
    pub path: String,
    /// The value as JSON, as `sops set` takes it (e.g. '"s3cret"', 5, '{"a": true}'); with
    /// --value-file, the file holding it. Without it (and without --value-stdin) the value is
    /// read from standard input as text. A value on the command line shows in process
    /// listings: prefer --value-stdin or --value-file for secrets.
    #[arg(
        conflicts_with_all = ["value_stdin", "json", "raw", "allow_empty"],
        value_parser = secret_arg
    )]
    pub value: Option<SecretString>,
    /// Read the value from standard input as JSON, as `sops set --value-stdin`.
    #[arg(long, conflicts_with_all = ["value_file", "json", "raw", "allow_empty"])]
    pub value_stdin: bool,
    /// The VALUE argument names a file holding the value as JSON, as `sops set --value-file`.
    #[arg(long, requires = "value")]
    pub value_file: bool,
    /// Read the value from standard input as JSON (a string, number, bool, object or list).
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Keep standard input exactly, including a trailing newline (by default one trailing
    /// newline, as `echo` adds, is removed).
    #[arg(long)]
    pub raw: bool,
    /// Accept an empty value. Without it an empty standard input (an unset shell variable
    /// piped in) is refused with exit 7 rather than silently emptying the value.
    #[arg(long)]
    pub allow_empty: bool,
    /// Accepted for sops compatibility: credseal never rewrites a file whose value is already
    /// the one given (sops without --idempotent would still bump `lastmodified`).
    #[arg(long)]
    pub idempotent: bool,
}

#[derive(ClapArgs, Debug)]
pub struct UnsetArgs {
    #[command(flatten)]
    pub input_type: InputType,
    /// The encrypted file.
    pub file: PathBuf,
    /// The value to remove, e.g. '["stringData"]["old"]'.
    pub path: String,
    /// A path that is not in the file is not an error: nothing is written, exit 0.
    #[arg(long)]
    pub idempotent: bool,
}

pub fn run_set(args: SetArgs, env: &Env) -> CliResult {
    let steps = path::parse(&args.path)?;
    let value = match (&args.value, args.value_file) {
        (Some(file), true) => json_value(
            &read_value_file(Path::new(file.expose()))?,
            "the value file",
        )?,
        (Some(text), false) => json_value(text, "the value")?,
        (None, _) if args.value_stdin || args.json => {
            json_value(&read_stdin()?, "the value on standard input")?
        }
        (None, _) => text_value(read_stdin()?, args.raw, args.allow_empty)?,
    };
    let input = args.input_type.input(args.file);
    let mut opened = open(&input, env, false)?;
    let name = input.display();
    let doc = opened
        .tree
        .documents
        .first_mut()
        .ok_or_else(|| Failure::msg(Code::Generic, format!("{name}: no document")))?;
    let changed = path::set(doc, &steps, value)
        .map_err(|e| Failure::new(Code::Generic, e).context(name.clone()))?;
    if !changed {
        // Exit 0 as sops: a script setting a value it already has succeeded.
        eprintln!(
            "{name}: {} already has that value; file untouched",
            path::display(&steps)
        );
        return Ok(());
    }
    let opts = emit_options(&input, env);
    write_back(&mut opened, &input, &opts)
}

pub fn run_unset(args: UnsetArgs, env: &Env) -> CliResult {
    let steps = path::parse(&args.path)?;
    let input = args.input_type.input(args.file);
    let mut opened = open(&input, env, false)?;
    let name = input.display();
    let doc = opened
        .tree
        .documents
        .first_mut()
        .ok_or_else(|| Failure::msg(Code::Generic, format!("{name}: no document")))?;
    match path::unset(doc, &steps) {
        Ok(()) => {}
        Err(PathError::NotFound(_)) if args.idempotent => return Ok(()),
        Err(e) => return Err(Failure::new(Code::Generic, e).context(name.clone())),
    }
    let opts = emit_options(&input, env);
    write_back(&mut opened, &input, &opts)
}

fn read_stdin() -> CliResult<SecretString> {
    let bytes = SecretBytes::read_from(std::io::stdin(), 0).map_err(|e| {
        Failure::new(Code::CouldNotReadInput, e)
            .context("cannot read the value from standard input")
    })?;
    utf8(bytes)
}

fn read_value_file(file: &Path) -> CliResult<SecretString> {
    let bytes = SecretBytes::read_file(file).map_err(|e| {
        Failure::new(Code::CouldNotReadInput, e)
            .context(format!("cannot read the value file {}", file.display()))
    })?;
    utf8(bytes)
}

fn utf8(bytes: SecretBytes) -> CliResult<SecretString> {
    SecretString::from_utf8(bytes)
        .map_err(|_| Failure::msg(Code::InvalidSetFormat, "the value is not UTF-8 text"))
}

/// A value given on the command line, held as a secret from the moment it is parsed (the
/// arguments' `Debug` shows it redacted).
fn secret_arg(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::new(s.to_owned()))
}

/// Standard input as a text value, never echoed anywhere.
fn text_value(mut text: SecretString, raw: bool, allow_empty: bool) -> CliResult<Node> {
    if !raw {
        let s = text.expose_mut();
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
    }
    // An empty value is nearly always a mistake upstream (`printf '%s' "$UNSET" | credseal
    // set`), and it would silently blank a password.
    if text.expose().is_empty() && !allow_empty {
        return Err(Failure::msg(
            Code::InvalidSetFormat,
            "the value on standard input is empty; pass --allow-empty to set an empty value",
        ));
    }
    Ok(Node::Str(text))
}

/// Exactly one JSON value. It is parsed as `{"v": <value>}` so the JSON store's number and
/// string rules apply; a second member means the input smuggled in more than one value
/// (`"a", "w": 5`), which must not be cut down to its first.
fn json_value(text: &SecretString, what: &str) -> CliResult<Node> {
    let invalid = || {
        Failure::msg(
            Code::InvalidSetFormat,
            format!("{what} is not exactly one JSON value (a string needs its quotes: '\"text\"')"),
        )
    };
    let wrapped = SecretString::new(format!("{{\"v\": {}}}", text.expose()));
    let map = json::parse(wrapped.expose().as_bytes()).map_err(|_| invalid())?;
    let mut pairs = map.pairs();
    match (pairs.next(), pairs.next()) {
        (Some(("v", value)), None) => Ok(value.clone()),
        _ => Err(invalid()),
    }
}
