//! `credseal set` and `credseal unset`: change one value, churn-free.

use std::io::Read;
use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::decrypt::open;
use crate::cli::edit::{emit_options, write_back};
use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::Input;
use crate::secret::SecretString;
use crate::sops::json;
use crate::sops::path;
use crate::sops::tree::Node;

#[derive(ClapArgs, Debug)]
pub struct SetArgs {
    /// The encrypted file.
    pub file: PathBuf,
    /// Where to set the value, e.g. '["stringData"]["password"]'.
    pub path: String,
    /// Read the value as JSON (a string, number, bool, object or list), as `sops set` takes it.
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
}

#[derive(ClapArgs, Debug)]
pub struct UnsetArgs {
    /// The encrypted file.
    pub file: PathBuf,
    /// The value to remove, e.g. '["stringData"]["old"]'.
    pub path: String,
}

pub fn run_set(args: SetArgs, env: &Env) -> CliResult {
    let steps = path::parse(&args.path).map_err(|e| Failure::new(Code::InvalidTreePath, e))?;
    let value = read_value(args.json, args.raw, args.allow_empty)?;
    let input = Input::from_path(args.file);
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
        return Err(Failure::msg(
            Code::FileHasNotBeenModified,
            format!(
                "{name}: {} already has that value; file untouched",
                path::display(&steps)
            ),
        ));
    }
    let opts = emit_options(&input, env);
    write_back(&mut opened, &input, &opts)
}

pub fn run_unset(args: UnsetArgs, env: &Env) -> CliResult {
    let steps = path::parse(&args.path).map_err(|e| Failure::new(Code::InvalidTreePath, e))?;
    let input = Input::from_path(args.file);
    let mut opened = open(&input, env, false)?;
    let name = input.display();
    let doc = opened
        .tree
        .documents
        .first_mut()
        .ok_or_else(|| Failure::msg(Code::Generic, format!("{name}: no document")))?;
    path::unset(doc, &steps).map_err(|e| Failure::new(Code::Generic, e).context(name.clone()))?;
    let opts = emit_options(&input, env);
    write_back(&mut opened, &input, &opts)
}

/// The new value from standard input, never echoed anywhere.
fn read_value(as_json: bool, raw: bool, allow_empty: bool) -> CliResult<Node> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).map_err(|e| {
        Failure::new(Code::CouldNotReadInput, e)
            .context("cannot read the value from standard input")
    })?;
    let mut text = SecretString::new(
        String::from_utf8(buf)
            .map_err(|_| Failure::msg(Code::InvalidSetFormat, "the value is not UTF-8 text"))?,
    );
    if as_json {
        return json_value(&text);
    }
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
fn json_value(text: &SecretString) -> CliResult<Node> {
    let invalid = || {
        Failure::msg(
            Code::InvalidSetFormat,
            "the value on standard input is not exactly one JSON value",
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
