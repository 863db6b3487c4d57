//! `credseal merge-driver %O %A %B %P`: git's merge driver for encrypted files. Decrypts the
//! three versions, merges key path by key path, and writes the result over %A re-encrypted
//! (unchanged values keep their ciphertext) with a fresh MAC. A conflict leaves %A untouched.

use std::path::PathBuf;

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::Input;
use crate::cli::sopsfile::{emit_options, open, write_back};
use credseal::merge;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The common ancestor (%O); an empty file when both sides added the file.
    pub base: PathBuf,
    /// Ours (%A): the merge result is written here.
    pub ours: PathBuf,
    /// Theirs (%B).
    pub theirs: PathBuf,
    /// The path in the repository (%P): names the file and gives its format.
    pub path: Option<PathBuf>,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let input = |file: PathBuf| Input {
        filename_override: args.path.clone(),
        ..Input::from_path(file)
    };
    let (base_in, ours_in, theirs_in) = (
        input(args.base.clone()),
        input(args.ours.clone()),
        input(args.theirs.clone()),
    );
    let name = args
        .path
        .as_ref()
        .unwrap_or(&args.ours)
        .display()
        .to_string();
    let base_empty = std::fs::metadata(&args.base).is_ok_and(|m| m.len() == 0);
    let base = if base_empty {
        None
    } else {
        Some(open(&base_in, env, false)?)
    };
    let mut ours = open(&ours_in, env, false)?;
    let theirs = open(&theirs_in, env, false)?;

    let merged = merge::merge(base.as_ref().map(|b| &b.tree), &ours.tree, &theirs.tree)
        .map_err(|paths| {
            for p in &paths {
                eprintln!("{name}: conflict at {p}");
            }
            Failure::msg(
                Code::MergeConflict,
                format!(
                    "{name}: {} key(s) changed differently on both sides; resolve with `credseal edit`",
                    paths.len()
                ),
            )
        })?;
    let theirs_recipients: Vec<&str> = theirs.metadata.age_recipients().collect();
    let ours_recipients: Vec<&str> = ours.metadata.age_recipients().collect();
    if theirs_recipients != ours_recipients {
        eprintln!(
            "{name}: the other side has different recipients; kept ours, run `credseal updatekeys` if .sops.yaml changed"
        );
    }
    ours.tree = merged;
    ours.adopt_ivs(&theirs);
    let opts = emit_options(&ours_in, env);
    write_back(&mut ours, &ours_in, &opts)
}
