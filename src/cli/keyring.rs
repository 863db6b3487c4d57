//! Gathers age identities from every source sops reads (spec §13), in the cli layer because
//! it touches the environment, files and processes.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::env::Env;
use crate::cli::exit::{CliResult, Code, Failure};
use crate::fsx::FsError;
use crate::secret::SecretBytes;
use crate::sops::keys::Keyring;
use crate::sops::metadata::Metadata;

/// Loads identities from `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD` (run once per
/// recipient of the file, with `SOPS_AGE_RECIPIENT` set) and the default `keys.txt`. All
/// sources are used together; a source that fails is an error naming it.
pub fn load(env: &Env, meta: Option<&Metadata>) -> CliResult<Keyring> {
    let mut ring = Keyring::new();
    let bad = |e| Failure::new(Code::CouldNotRetrieveKey, e);
    if let Some(text) = &env.age_key {
        ring.add_identities(text.expose(), "SOPS_AGE_KEY")
            .map_err(bad)?;
    }
    if let Some(path) = &env.age_key_file {
        add_file(&mut ring, path, "SOPS_AGE_KEY_FILE")?;
    }
    if let Some(cmd) = &env.age_key_cmd {
        let recipients: Vec<String> = meta
            .map(|m| m.age_recipients().map(str::to_owned).collect())
            .unwrap_or_default();
        let runs = if recipients.is_empty() {
            vec![String::new()]
        } else {
            recipients
        };
        for recipient in runs {
            let output = run_key_cmd(cmd, &recipient)?;
            ring.add_identities_bytes(output.expose(), "SOPS_AGE_KEY_CMD output")
                .map_err(bad)?;
        }
    }
    if let Some(path) = env.default_keys_file() {
        if path.exists() {
            add_file(&mut ring, &path, "default keys file")?;
        }
    }
    Ok(ring)
}

fn add_file(ring: &mut Keyring, path: &Path, what: &str) -> CliResult {
    // Straight into a zeroizing buffer: the identities never sit in a plain String.
    let bytes = SecretBytes::read_file(path).map_err(|source| {
        let e = FsError {
            path: path.to_owned(),
            action: "cannot read",
            source,
        };
        Failure::new(Code::CouldNotRetrieveKey, e).context(format!("{what} is not usable"))
    })?;
    ring.add_identities_bytes(bytes.expose(), &path.display().to_string())
        .map_err(|e| Failure::new(Code::CouldNotRetrieveKey, e))?;
    Ok(())
}

/// Runs `SOPS_AGE_KEY_CMD` and reads its standard output straight into a zeroizing buffer
/// (`Command::output` would collect it in a plain `Vec` that grows by reallocation, leaving
/// copies of the identities behind).
fn run_key_cmd(cmd: &str, recipient: &str) -> CliResult<SecretBytes> {
    let argv = split_command(cmd).ok_or_else(|| {
        Failure::msg(
            Code::CouldNotRetrieveKey,
            "SOPS_AGE_KEY_CMD has unbalanced quotes",
        )
    })?;
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Failure::msg(Code::CouldNotRetrieveKey, "SOPS_AGE_KEY_CMD is empty"))?;
    let mut child = Command::new(prog)
        .args(args)
        .env("SOPS_AGE_RECIPIENT", recipient)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Failure::new(Code::CouldNotRetrieveKey, e)
                .context(format!("cannot run SOPS_AGE_KEY_CMD ({prog})"))
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let read = SecretBytes::read_from(stdout, 4096);
    let status = child.wait().map_err(|e| {
        Failure::new(Code::CouldNotRetrieveKey, e)
            .context(format!("cannot run SOPS_AGE_KEY_CMD ({prog})"))
    })?;
    let output = read.map_err(|e| {
        Failure::new(Code::CouldNotRetrieveKey, e).context(format!(
            "cannot read the output of SOPS_AGE_KEY_CMD ({prog})"
        ))
    })?;
    if !status.success() {
        return Err(Failure::msg(
            Code::CouldNotRetrieveKey,
            format!("SOPS_AGE_KEY_CMD ({prog}) failed with {status}"),
        ));
    }
    if std::str::from_utf8(output.expose()).is_err() {
        return Err(Failure::msg(
            Code::CouldNotRetrieveKey,
            "SOPS_AGE_KEY_CMD output is not UTF-8",
        ));
    }
    Ok(output)
}

/// Splits a command line shell-style (quotes and backslashes, no expansion), as sops does.
pub fn split_command(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            split_command(r#"pass show "age key" 'x y' a\ b"#).unwrap(),
            vec!["pass", "show", "age key", "x y", "a b"]
        );
        assert!(split_command("echo 'open").is_none());
    }
}
