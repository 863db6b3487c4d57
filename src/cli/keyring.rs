//! Gathers age identities from every source sops reads (docs/sops-format.md §13), in the cli layer because
//! it touches the environment, files and processes.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::env::Env;
use crate::cli::exit::CliResult;
use credseal::file_io::FsError;
use credseal::secret::SecretBytes;
use credseal::sops::keys::Keyring;
use credseal::sops::metadata::Metadata;

/// Loads identities from every source, in sops' order: the SSH keys
/// (`SOPS_AGE_SSH_PRIVATE_KEY_FILE`, `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`), `SOPS_AGE_KEY`,
/// `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY_CMD` (run once per recipient of the file, with
/// `SOPS_AGE_RECIPIENT` set) and the default `keys.txt`. All sources are used together. A
/// source that fails does not stop the others, as in sops: it is remembered in the ring and
/// reported, by name and problem, only if no identity opens the file (exit 128 then).
pub fn load(env: &Env, meta: Option<&Metadata>) -> CliResult<Keyring> {
    let mut ring = Keyring::new();
    if let Some(path) = &env.age_ssh_key_file {
        add_ssh_file(&mut ring, path, "SOPS_AGE_SSH_PRIVATE_KEY_FILE");
    }
    // A build without SSH support does not look in ~/.ssh: the keys there are for SSH, and
    // most users' are of no concern to credseal; only a key named explicitly is reported.
    if cfg!(feature = "ssh") {
        for path in env.default_ssh_keys() {
            if path.exists() {
                add_ssh_file(&mut ring, &path, "SSH key");
            }
        }
    }
    if let Some(text) = &env.age_key {
        if let Err(e) = ring.add_identities(text.expose(), "SOPS_AGE_KEY") {
            ring.add_broken_source(credseal::sops::error_text::with_causes(&e));
        }
    }
    if let Some(path) = &env.age_key_file {
        add_file(&mut ring, path, "SOPS_AGE_KEY_FILE");
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
        let mut problems: Vec<String> = Vec::new();
        for recipient in runs {
            let added = run_key_cmd(cmd, &recipient).and_then(|output| {
                ring.add_identities_bytes(output.expose(), "SOPS_AGE_KEY_CMD output")
                    .map_err(|e| e.to_string())
            });
            // A command that fails for every recipient is one problem, said once.
            if let Err(problem) = added {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        for problem in problems {
            ring.add_broken_source(problem);
        }
    }
    if let Some(path) = env.default_keys_file() {
        if path.exists() {
            add_file(&mut ring, &path, "default keys file");
        }
    }
    Ok(ring)
}

/// Reads a key file straight into a zeroizing buffer (the identities never sit in a plain
/// String); `what` names the source in the problem remembered if it cannot be used.
fn read_key_file(ring: &mut Keyring, path: &Path, what: &str) -> Option<SecretBytes> {
    match SecretBytes::read_file(path) {
        Ok(bytes) => Some(bytes),
        Err(source) => {
            let e = FsError {
                path: path.to_owned(),
                action: "cannot read",
                source,
            };
            ring.add_broken_source(format!(
                "{what} is not usable: {}",
                credseal::sops::error_text::with_causes(&e)
            ));
            None
        }
    }
}

fn add_file(ring: &mut Keyring, path: &Path, what: &str) {
    if let Some(bytes) = read_key_file(ring, path, what) {
        if let Err(e) = ring.add_identities_bytes(bytes.expose(), &path.display().to_string()) {
            ring.add_broken_source(format!(
                "{what}: {}",
                credseal::sops::error_text::with_causes(&e)
            ));
        }
    }
}

fn add_ssh_file(ring: &mut Keyring, path: &Path, what: &str) {
    if let Some(bytes) = read_key_file(ring, path, what) {
        if let Err(e) = ring.add_ssh_identity(bytes.expose(), &path.display().to_string()) {
            ring.add_broken_source(format!(
                "{what}: {}",
                credseal::sops::error_text::with_causes(&e)
            ));
        }
    }
}

/// Runs `SOPS_AGE_KEY_CMD` and reads its standard output straight into a zeroizing buffer
/// (`Command::output` would collect it in a plain `Vec` that grows by reallocation, leaving
/// copies of the identities behind). The error is the problem to report: it names the
/// command, never its output.
fn run_key_cmd(cmd: &str, recipient: &str) -> Result<SecretBytes, String> {
    let argv = split_command(cmd).ok_or("SOPS_AGE_KEY_CMD has unbalanced quotes")?;
    let (prog, args) = argv.split_first().ok_or("SOPS_AGE_KEY_CMD is empty")?;
    let mut child = Command::new(prog)
        .args(args)
        .env("SOPS_AGE_RECIPIENT", recipient)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run SOPS_AGE_KEY_CMD ({prog}): {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let read = SecretBytes::read_from(stdout, 4096);
    let status = child
        .wait()
        .map_err(|e| format!("cannot run SOPS_AGE_KEY_CMD ({prog}): {e}"))?;
    let output =
        read.map_err(|e| format!("cannot read the output of SOPS_AGE_KEY_CMD ({prog}): {e}"))?;
    if !status.success() {
        return Err(format!("SOPS_AGE_KEY_CMD ({prog}) failed with {status}"));
    }
    if std::str::from_utf8(output.expose()).is_err() {
        return Err("SOPS_AGE_KEY_CMD output is not UTF-8".to_owned());
    }
    Ok(output)
}

/// Splits a command line as a POSIX shell would (quotes, backslashes, `#` comments, no
/// expansion); `None` for an unbalanced quote. sops splits with Go's shlex; in two corners
/// this follows the shell instead: a backslash inside double quotes before a character other
/// than `$`, `` ` ``, `"` or `\\` is kept (shlex drops it), and a trailing backslash is kept
/// (shlex refuses the line).
pub fn split_command(s: &str) -> Option<Vec<String>> {
    shell_words::split(s).ok()
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
        assert!(split_command(r#"echo "open"#).is_none());
        assert_eq!(
            split_command(r#"a\"b "c\"d" 'e\f'"#).unwrap(),
            vec![r#"a"b"#, r#"c"d"#, r"e\f"]
        );
        // As a shell: a comment ends the command, a backslash stays before an ordinary
        // character in double quotes.
        assert_eq!(
            split_command(r#"cmd "C:\x" # note"#).unwrap(),
            vec!["cmd", r"C:\x"]
        );
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
    }
}
