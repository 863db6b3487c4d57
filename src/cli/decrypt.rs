//! `credseal decrypt`.

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::{Input, Output};
use crate::cli::sopsfile::{emit_options, open};
use credseal::sops::path;
use credseal::sops::store;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub output: Output,
    /// Print only the value at this path, e.g. '["stringData"]["password"]' (strings are
    /// printed raw, without a trailing newline).
    #[arg(long, value_name = "PATH")]
    pub extract: Option<String>,
    /// Do not verify the MAC (for recovering a damaged file).
    #[arg(long)]
    pub ignore_mac: bool,
}

pub fn run(args: Args, env: &Env) -> CliResult {
    let name = args.input.display();
    let steps = args.extract.as_deref().map(path::parse).transpose()?;
    let opened = open(&args.input, env, args.ignore_mac)?;
    let opts = emit_options(&args.input, env);
    let out_format = args.input.output_format_or(opened.format)?;
    let out = match steps {
        Some(steps) => {
            let doc = opened
                .tree
                .documents
                .first()
                .ok_or_else(|| Failure::msg(Code::Generic, "no document"))?;
            let node = path::get(doc, &steps)
                .map_err(|e| Failure::new(Code::Generic, e).context(name.clone()))?;
            store::emit_value(node, out_format, &opts).map_err(|e| in_file(&name, e))?
        }
        None => opened
            .emit_plain(out_format, &opts)
            .map_err(|e| in_file(&name, e))?,
    };
    args.output.write(&args.input, &out, 0o600)
}
