//! An encrypted file from the command line's side: read and parse it, decrypt it with the
//! identities the environment names, and write it back re-encrypted. Every subcommand that
//! changes or shows an existing SOPS file goes through here, so they read formats, find
//! `.sops.yaml` stores settings and report failures alike.

use crate::cli::env::Env;
use crate::cli::exit::in_file;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::cli::io::Input;
use crate::cli::{config, keyring, now};
use credseal::file_io;
use credseal::sops::file::{Context, EncryptedFile, Opened};
use credseal::sops::store::EmitOptions;
use credseal::sops::walk::OsEntropy;

/// Reads an input and parses it as a SOPS file (nothing decrypted yet), in the format that
/// `--input-type`, its name or its content says.
pub fn parse(input: &Input) -> CliResult<EncryptedFile> {
    let data = input.read()?;
    let format = input.encrypted_format(&data)?;
    EncryptedFile::parse(&data, format).map_err(|e| in_file(input.display(), e))
}

/// Reads, decrypts and MAC-verifies an input: the shared first half of every command that
/// needs the plaintext.
pub fn open(input: &Input, env: &Env, ignore_mac: bool) -> CliResult<Opened> {
    let file = parse(input)?;
    let ring = keyring::load(env, Some(&file.metadata))?;
    file.open(&ring, ignore_mac)
        .map_err(|e| in_file(input.display(), e))
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
        .map_err(|e| in_file(input.display(), e))?;
    replace(input, &out)
}

/// Replaces the input file with re-encrypted bytes, atomically (mode 0644 if it were new).
pub fn replace(input: &Input, encrypted: &[u8]) -> CliResult {
    file_io::write_atomic(&input.file, encrypted, 0o644)
        .map_err(|e| Failure::new(Code::CouldNotWriteOutput, e))
}
