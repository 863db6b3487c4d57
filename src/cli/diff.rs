//! `credseal diff`: what changed between two encrypted files, or (`--textconv`) one file as
//! review text for git's diff driver. Values are shown as keyed fingerprints, never in clear.

use std::path::PathBuf;

use crate::cli::env::Env;
use crate::cli::exit::CliResult;
use crate::cli::io::{Input, InputType, write_stdout};
use crate::cli::sopsfile::open;
use credseal::diff::{self, Change};
use credseal::sops::file::EncryptedFile;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The old file (with --textconv: the one file to show).
    pub old: PathBuf,
    /// The new file.
    #[arg(required_unless_present = "textconv")]
    pub new: Option<PathBuf>,
    /// Print one file as `path: fingerprint` lines, for `git config diff.credseal.textconv`.
    /// Without an identity the file is printed as it is.
    #[arg(long, conflicts_with = "new")]
    pub textconv: bool,
    #[command(flatten)]
    pub input_type: InputType,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    if args.textconv {
        return textconv(args.input_type.input(args.old), env);
    }
    let old = open(&args.input_type.input(args.old), env, false)?;
    let new = open(
        &args.input_type.input(args.new.expect("clap requires it")),
        env,
        false,
    )?;
    let mut out = String::new();
    for line in recipient_changes(&old.metadata, &new.metadata) {
        out.push_str(&line);
        out.push('\n');
    }
    let (changes, unchanged) = diff::compare(&old, &new);
    for c in &changes {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    write_stdout(out.as_bytes())?;
    let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
    eprintln!(
        "credseal diff: {} changed, {} added, {} removed, {unchanged} unchanged",
        count(|c| matches!(c, Change::Changed(..))),
        count(|c| matches!(c, Change::Added(..))),
        count(|c| matches!(c, Change::Removed(..))),
    );
    Ok(())
}

fn recipient_changes(
    old: &credseal::sops::metadata::Metadata,
    new: &credseal::sops::metadata::Metadata,
) -> Vec<String> {
    let before: Vec<&str> = old.age_recipients().collect();
    let after: Vec<&str> = new.age_recipients().collect();
    let mut lines: Vec<String> = after
        .iter()
        .filter(|r| !before.contains(r))
        .map(|r| format!("+ recipient {r}"))
        .collect();
    lines.extend(
        before
            .iter()
            .filter(|r| !after.contains(r))
            .map(|r| format!("- recipient {r}")),
    );
    lines
}

fn textconv(input: Input, env: &Env) -> CliResult {
    let data = input.read()?;
    let format = input.encrypted_format(&data)?;
    // Files that are not SOPS files, or that this machine cannot decrypt, diff as they are.
    let Ok(file) = EncryptedFile::parse(&data, format) else {
        return write_stdout(&data);
    };
    let ring = crate::cli::keyring::load(env, Some(&file.metadata))?;
    let opened = match file.open(&ring, false) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "credseal diff: {}: {}; showing the file as it is",
                input.display(),
                credseal::sops::error_text::with_causes(&e)
            );
            return write_stdout(&data);
        }
    };
    let mut out = String::new();
    for r in opened.metadata.age_recipients() {
        out.push_str(&format!("recipient {r}\n"));
    }
    for (path, shown) in diff::entries(&opened, &opened) {
        out.push_str(&format!("{path}: {shown}\n"));
    }
    write_stdout(out.as_bytes())
}
