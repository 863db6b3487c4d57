//! The command-line layer: the only code that reads argv, the environment, the working
//! directory, and writes to stdout/stderr. Each subcommand is one file with `Args` + `run()`.

#[cfg(feature = "cluster")]
pub mod apply;
pub mod check;
#[cfg(feature = "cluster")]
pub mod cluster_key;
pub mod completion;
pub mod config;
pub mod decrypt;
pub mod diff;
pub mod edit;
pub mod encrypt;
pub mod env;
pub mod exec;
pub mod exit;
pub mod filestatus;
pub mod io;
pub mod key_plan;
pub mod keygen;
pub mod keyring;
#[cfg(feature = "cluster")]
pub mod kube;
pub mod log;
pub mod materialize;
pub mod merge_driver;
#[cfg(feature = "cluster")]
pub mod pull;
pub mod rekey;
#[cfg(feature = "cluster")]
pub mod rotate;
pub mod set;
pub mod sopsfile;
#[cfg(feature = "cluster")]
pub mod status;
pub mod updatekeys;

use clap::{Parser, Subcommand};

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code};
use credseal::sops::tree::Timestamp;

/// SOPS-compatible age encryption for Kubernetes database credentials.
#[derive(Parser, Debug)]
#[command(name = "credseal", version, after_long_help = exit_help())]
#[cfg_attr(
    not(feature = "cluster"),
    command(
        about = "credseal, sidecar build: encrypt, decrypt, check and materialize. apply, cluster-key and rotate are in the full build (the default image)."
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr (rotate's audit, the sidecar's renders, warnings, the final
    /// error) as text or as one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        env = env::LOG_FORMAT,
        hide_env_values = true,
        default_value_t = log::LogFormat::Text
    )]
    pub log_format: log::LogFormat,
}

fn exit_help() -> String {
    Code::help_table()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Encrypt a file (a Kubernetes Secret manifest, YAML, JSON, dotenv or any file) with age.
    Encrypt(encrypt::Args),
    /// Decrypt a SOPS file, verifying its MAC.
    Decrypt(decrypt::Args),
    /// Edit an encrypted file in $EDITOR; unchanged values keep their exact ciphertext.
    Edit(edit::Args),
    /// Set one value in an encrypted file: from standard input, or as JSON like `sops set`
    /// (argument, --value-stdin, --value-file).
    Set(set::SetArgs),
    /// Remove one value from an encrypted file.
    Unset(set::UnsetArgs),
    /// Run a command with the file's decrypted top-level values as environment variables.
    #[command(name = "exec-env")]
    ExecEnv(exec::EnvArgs),
    /// Run a command with the decrypted file at a private temporary path (`{}` in the command).
    #[command(name = "exec-file")]
    ExecFile(exec::FileArgs),
    /// Print whether a file is SOPS-encrypted: {"encrypted":true} or {"encrypted":false}.
    Filestatus(filestatus::Args),
    /// Re-wrap the data key for the recipients .sops.yaml now requires; values untouched.
    Updatekeys(updatekeys::Args),
    /// Draw a new data key and re-encrypt every value with it.
    Rekey(rekey::Args),
    /// Generate an age identity file, as age-keygen does.
    Keygen(keygen::Args),
    /// Decrypt mounted SOPS Secrets into files on an in-memory volume (init container or
    /// native sidecar), atomically, and keep them current.
    Materialize(materialize::Args),
    #[cfg(feature = "cluster")]
    /// Server-side-apply encrypted Secret manifests to the cluster, decrypted in memory (the
    /// deploy hook).
    Apply(apply::Args),
    #[cfg(feature = "cluster")]
    /// Bring values a rotation set in the cluster back into the encrypted files in git
    /// (only those values, lastmodified and mac change).
    Pull(pull::Args),
    #[cfg(feature = "cluster")]
    /// Manage the cluster's age identity Secret (Flux sops-age layout).
    #[command(name = "cluster-key")]
    ClusterKey(cluster_key::Args),
    #[cfg(feature = "cluster")]
    /// Rotate PostgreSQL and Redis passwords by a plan, crash-safely.
    Rotate(rotate::Args),
    #[cfg(feature = "cluster")]
    /// Show each credential of a rotation plan: generation, last rotation, next due time,
    /// rotation in progress and lock holder. Reads only.
    Status(status::Args),
    /// Refuse plaintext Secrets and stale or broken SOPS files (pre-commit and CI).
    Check(check::Args),
    /// Show which keys changed between two encrypted files (values as keyed fingerprints);
    /// `--textconv` serves git's diff driver.
    Diff(diff::Args),
    /// git's merge driver for encrypted files: merges key by key, re-encrypts, fresh MAC.
    #[command(name = "merge-driver")]
    MergeDriver(merge_driver::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion(completion::CompletionArgs),
    /// Print the man page (roff), or write one page per command with --dir.
    Man(completion::ManArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> CliResult {
    let env = Env::from_process();
    match cli.command {
        Command::Encrypt(a) => encrypt::run(a, &env),
        Command::Decrypt(a) => decrypt::run(a, &env),
        Command::Edit(a) => edit::run(a, &env),
        Command::Set(a) => set::run_set(a, &env),
        Command::Unset(a) => set::run_unset(a, &env),
        Command::ExecEnv(a) => exec::run_env(a, &env),
        Command::ExecFile(a) => exec::run_file(a, &env),
        Command::Filestatus(a) => filestatus::run(a),
        Command::Updatekeys(a) => updatekeys::run(a, &env),
        Command::Rekey(a) => rekey::run(a, &env),
        Command::Keygen(a) => keygen::run(a),
        Command::Materialize(a) => materialize::run(a),
        #[cfg(feature = "cluster")]
        Command::Apply(a) => apply::run(a, &env),
        #[cfg(feature = "cluster")]
        Command::Pull(a) => pull::run(a, &env),
        #[cfg(feature = "cluster")]
        Command::ClusterKey(a) => cluster_key::run(a, &env),
        #[cfg(feature = "cluster")]
        Command::Rotate(a) => rotate::run(a, &env),
        #[cfg(feature = "cluster")]
        Command::Status(a) => status::run(a, &env),
        Command::Check(a) => check::run(a, &env),
        Command::Diff(a) => diff::run(a, &env),
        Command::MergeDriver(a) => merge_driver::run(a, &env),
        Command::Completion(a) => completion::run_completion(a),
        Command::Man(a) => completion::run_man(a),
    }
}

/// The current UTC time, whole seconds (sops' `lastmodified`).
pub fn now() -> Timestamp {
    use credseal::clock::{Clock, SystemClock};
    SystemClock.now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
