//! The keys a command wraps a data key for, and where the public keys of PGP ones come from:
//! `--pgp-public-keys` files, `pgp_public_keys:` in `.sops.yaml` (top level or the rule), then
//! `gpg --export` for fingerprints still unknown. Reading files and running gpg is why this
//! lives in the cli layer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args as ClapArgs;

use crate::cli::config::Loaded;
use crate::cli::exit::{CliResult, Code, Failure};
use credseal::file_io;
use credseal::sops::config::CreationRule;
use credseal::sops::file::KeyPlan;
use credseal::sops::master_key::{KeyKind, MasterKey};
use credseal::sops::pgp::PgpCert;

/// Where PGP public keys come from, for the commands that may wrap for them.
#[derive(ClapArgs, Debug, Default, Clone)]
pub struct PgpSources {
    /// A file of PGP public keys (`gpg --export` output, armored or binary) to wrap the data
    /// key for the PGP fingerprints the rule or flags name; repeatable. Without it, the files
    /// in `pgp_public_keys:` of .sops.yaml, then `gpg --export FINGERPRINT`.
    #[arg(long = "pgp-public-keys", value_name = "FILE")]
    pub pgp_public_keys: Vec<PathBuf>,
}

/// A plan for `keys`, with the public keys of the PGP ones that `need_wrap` selects.
pub fn plan(
    keys: Vec<MasterKey>,
    need_wrap: impl Fn(&MasterKey) -> bool,
    sources: &PgpSources,
    loaded: Option<&Loaded>,
    rule: Option<&CreationRule>,
) -> CliResult<KeyPlan> {
    let wanted: Vec<&MasterKey> = keys
        .iter()
        .filter(|k| k.kind == KeyKind::Pgp && need_wrap(k))
        .collect();
    let mut certs: Vec<PgpCert> = Vec::new();
    if !wanted.is_empty() {
        let config_dir = loaded
            .and_then(|l| l.path.parent())
            .unwrap_or(Path::new("."));
        let from_config = loaded
            .map(|l| l.config.pgp_public_keys.iter())
            .into_iter()
            .flatten()
            .chain(rule.map(|r| r.pgp_public_keys.iter()).into_iter().flatten())
            .map(|f| config_dir.join(f));
        for file in sources.pgp_public_keys.iter().cloned().chain(from_config) {
            let bytes =
                file_io::read(&file).map_err(|e| Failure::new(Code::CouldNotRetrieveKey, e))?;
            certs.extend(
                PgpCert::parse_all(&bytes, &file.display().to_string())
                    .map_err(|e| Failure::new(Code::CouldNotRetrieveKey, e))?,
            );
        }
        for k in wanted {
            if !certs.iter().any(|c| c.answers_to(&k.id)) {
                certs.extend(gpg_export(&k.id));
            }
        }
    }
    Ok(KeyPlan {
        keys,
        pgp_certs: certs,
    })
}

/// The public key gpg holds for `fingerprint`, if gpg is installed and has it. gpg reads only
/// its public keyring for this: no agent, no passphrase.
fn gpg_export(fingerprint: &str) -> Vec<PgpCert> {
    let Ok(out) = Command::new("gpg")
        .args(["--batch", "--no-tty", "--export", fingerprint])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    if !out.status.success() || out.stdout.is_empty() {
        return Vec::new();
    }
    PgpCert::parse_all(&out.stdout, "gpg --export").unwrap_or_default()
}

/// Splits sops' comma-separated key flags (`--pgp`, `--add-age`, …) into keys of `field`.
pub fn from_flag(field: &str, list: Option<&str>) -> Vec<MasterKey> {
    list.into_iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| MasterKey::from_rule(field, s))
        .collect()
}
