//! Every environment variable credseal reads, named once and read once, at startup.

use std::ffi::OsString;
use std::path::PathBuf;

use credseal::secret::SecretString;

/// `CREDSEAL_LOG_FORMAT`: `text` or `json`, like `--log-format` (read by clap, which names
/// it in `--help` and refuses a value it does not know).
pub const LOG_FORMAT: &str = "CREDSEAL_LOG_FORMAT";

#[derive(Clone, Default)]
pub struct Env {
    /// `SOPS_AGE_KEY`: identities inline, held zeroizing from the moment it is read.
    pub age_key: Option<SecretString>,
    /// `SOPS_AGE_KEY_FILE`: path of an identities file.
    pub age_key_file: Option<PathBuf>,
    /// `SOPS_AGE_KEY_CMD`: a command whose stdout is an identities file.
    pub age_key_cmd: Option<String>,
    /// `SOPS_AGE_SSH_PRIVATE_KEY_FILE`: path of an SSH private key used as an identity.
    pub age_ssh_key_file: Option<PathBuf>,
    /// `HOME`: where sops looks for `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`.
    pub home: Option<PathBuf>,
    /// `SOPS_AGE_RECIPIENTS`: comma-separated recipients (like `--age`).
    pub age_recipients: Option<String>,
    /// `SOPS_PGP_FP`: comma-separated PGP fingerprints (like `--pgp`).
    pub pgp_fp: Option<String>,
    /// `SOPS_CONFIG`: explicit `.sops.yaml` path.
    pub config: Option<PathBuf>,
    /// `SOPS_EDITOR`, else `EDITOR`.
    pub editor: Option<String>,
    /// `XDG_CONFIG_HOME`, else `$HOME/.config`: where the default `sops/age/keys.txt` lives.
    pub user_config_dir: Option<PathBuf>,
    /// `KUBECONFIG` entries, else `~/.kube/config`.
    #[cfg(feature = "cluster")]
    pub kubeconfig: Vec<PathBuf>,
    /// Whether `KUBERNETES_SERVICE_HOST` is set: running in a pod.
    #[cfg(feature = "cluster")]
    pub in_cluster: bool,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("age_key", &self.age_key.as_ref().map(|_| "[REDACTED]"))
            .field("age_key_file", &self.age_key_file)
            .field("age_key_cmd", &self.age_key_cmd)
            .field("age_ssh_key_file", &self.age_ssh_key_file)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var_os(name)
        .and_then(|v: OsString| v.into_string().ok())
        .filter(|v| !v.is_empty())
}

/// Like [`var`], for a variable holding a secret: the value moves (no copy) into a
/// [`SecretString`], and a value that is not UTF-8 is zeroized before it is dropped.
fn secret_var(name: &str) -> Option<SecretString> {
    use zeroize::Zeroize;
    match std::env::var_os(name)?.into_string() {
        Ok(s) if s.is_empty() => None,
        Ok(s) => Some(SecretString::new(s)),
        Err(not_utf8) => {
            not_utf8.into_encoded_bytes().zeroize();
            None
        }
    }
}

impl Env {
    pub fn from_process() -> Env {
        let user_config_dir = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")));
        Env {
            // Moved (not copied) from the OsString into the secret type.
            age_key: secret_var("SOPS_AGE_KEY"),
            age_key_file: var("SOPS_AGE_KEY_FILE").map(PathBuf::from),
            age_key_cmd: var("SOPS_AGE_KEY_CMD"),
            age_ssh_key_file: var("SOPS_AGE_SSH_PRIVATE_KEY_FILE").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            age_recipients: var("SOPS_AGE_RECIPIENTS"),
            pgp_fp: var("SOPS_PGP_FP"),
            config: var("SOPS_CONFIG").map(PathBuf::from),
            editor: var("SOPS_EDITOR").or_else(|| var("EDITOR")),
            user_config_dir,
            #[cfg(feature = "cluster")]
            kubeconfig: match var("KUBECONFIG") {
                Some(list) => std::env::split_paths(&list).collect(),
                None => var("HOME")
                    .map(|h| PathBuf::from(h).join(".kube").join("config"))
                    .into_iter()
                    .collect(),
            },
            #[cfg(feature = "cluster")]
            in_cluster: var("KUBERNETES_SERVICE_HOST").is_some(),
        }
    }

    /// The SSH keys sops tries besides `SOPS_AGE_SSH_PRIVATE_KEY_FILE`, in its order:
    /// `~/.ssh/id_ed25519`, then `~/.ssh/id_rsa`.
    pub fn default_ssh_keys(&self) -> Vec<PathBuf> {
        self.home
            .as_ref()
            .map(|h| {
                ["id_ed25519", "id_rsa"]
                    .iter()
                    .map(|name| h.join(".ssh").join(name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// sops' default identities file: `<user config dir>/sops/age/keys.txt`.
    pub fn default_keys_file(&self) -> Option<PathBuf> {
        self.user_config_dir
            .as_ref()
            .map(|d| d.join("sops").join("age").join("keys.txt"))
    }
}
