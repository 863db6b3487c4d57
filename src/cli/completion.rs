//! `credseal completion SHELL` and `credseal man`: generated from the command definition
//! itself, so they cannot drift from the commands.

use std::path::PathBuf;

use clap::{Args as ClapArgs, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::write_stdout;

#[derive(ClapArgs, Debug)]
pub struct CompletionArgs {
    /// The shell to complete for; e.g. `credseal completion bash > /etc/bash_completion.d/credseal`,
    /// or `source <(credseal completion zsh)`.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(ClapArgs, Debug)]
pub struct ManArgs {
    /// Write one page per command (credseal.1, credseal-encrypt.1, …) into this directory
    /// instead of the main page to standard output.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run_completion(args: CompletionArgs) -> CliResult {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "credseal", &mut out);
    write_stdout(&out)
}

pub fn run_man(args: ManArgs) -> CliResult {
    let cmd = Cli::command();
    match args.dir {
        Some(dir) => clap_mangen::generate_to(cmd, &dir).map_err(|e| {
            Failure::new(Code::CouldNotWriteOutput, e)
                .context(format!("cannot write the man pages to {}", dir.display()))
        }),
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Failure::new(Code::Generic, e))?;
            write_stdout(&out)
        }
    }
}
