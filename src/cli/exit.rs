//! The one exit-code table. Where sops has a code for the same failure, credseal uses it.

use std::fmt;

use credseal::check::IgnorePatternError;
use credseal::manifest::ScopeError;
use credseal::materialize::MaterializeError;
use credseal::materialize::inputs::InputError;
use credseal::sops::config::ConfigError;
use credseal::sops::dotenv::DotenvError;
use credseal::sops::file::SopsError;
use credseal::sops::keys::KeyError;
use credseal::sops::path::PathError;
use credseal::sops::store::StoreError;

/// Exit codes, documented in the README and in `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Generic = 1,
    /// Unreadable or unparsable input file; also command-line usage errors (clap).
    CouldNotReadInput = 2,
    CouldNotWriteOutput = 3,
    ErrorDumpingTree = 4,
    ErrorReadingConfig = 5,
    InvalidSetFormat = 7,
    ConflictingParameters = 8,
    ErrorEncryptingTree = 23,
    ErrorDecryptingTree = 25,
    MacMismatch = 51,
    ConfigFileNotFound = 61,
    InvalidTreePath = 91,
    NeedAtLeastOneDocument = 92,
    NoFileSpecified = 100,
    NoEncryptionKeyFound = 111,
    CouldNotRetrieveKey = 128,
    FileHasNotBeenModified = 200,
    NoEditorFound = 201,
    FileAlreadyEncrypted = 203,
    /// The Kubernetes API refused or failed a request.
    KubeError = 210,
    /// The service account lacks a permission (403).
    KubeForbidden = 211,
    /// A concurrent change (409) that a rerun resolves.
    KubeConflict = 212,
    /// `apply` refused to overwrite a Secret rotated after the file was encrypted.
    Downgrade = 213,
    /// A rotation step failed; the pending record keeps the new password, rerun to finish.
    RotationFailed = 220,
    /// Another run holds the credential's rotation lock; nothing was changed.
    RotationLocked = 221,
    /// `check` found a plaintext or unreadable Secret, a clear value, wrong recipients, a bad
    /// file or MAC, or a name the API server refuses.
    CheckFindings = 230,
    /// `edit`, `exec-env` or `exec-file` was interrupted by a signal; the editor or command
    /// was stopped and the plaintext removed. sops' code for an interrupted edit.
    Interrupted = 85,
    /// `merge-driver`: both sides changed one key differently; ours is left as it was. Below
    /// 129 because git takes higher codes from a merge driver for a crash, not a conflict.
    MergeConflict = 31,
}

impl Code {
    pub const TABLE: [(Code, &'static str); 28] = [
        (
            Code::Generic,
            "generic failure (bad metadata or version, extract path not found, …)",
        ),
        (
            Code::CouldNotReadInput,
            "input file missing, unreadable or not valid YAML/JSON/dotenv/INI; usage error",
        ),
        (
            Code::CouldNotWriteOutput,
            "output could not be written (nothing was changed)",
        ),
        (
            Code::ErrorDumpingTree,
            "the result could not be emitted in the output format (a mapping or list to dotenv, …)",
        ),
        (
            Code::ErrorReadingConfig,
            ".sops.yaml is invalid, or no creation rule matches",
        ),
        (
            Code::InvalidSetFormat,
            "the value given to set is not valid: empty without --allow-empty, or not exactly one JSON value with --json",
        ),
        (
            Code::ConflictingParameters,
            "conflicting options (two selectors, --in-place with stdin, …)",
        ),
        (Code::ErrorEncryptingTree, "encryption failed"),
        (
            Code::ErrorDecryptingTree,
            "a value failed to decrypt: tampered, moved, truncated ENC[…], or in clear where it must be encrypted",
        ),
        (
            Code::MergeConflict,
            "merge-driver: a key changed differently on both sides; ours left untouched",
        ),
        (
            Code::MacMismatch,
            "MAC verification failed: the file was changed after encryption",
        ),
        (
            Code::ConfigFileNotFound,
            "no .sops.yaml found where one is required (updatekeys)",
        ),
        (
            Code::Interrupted,
            "edit, exec-env or exec-file was interrupted by a signal (TERM, HUP, INT, QUIT): the editor or command was stopped, the plaintext removed, the file untouched",
        ),
        (Code::InvalidTreePath, "bad --extract / set path syntax"),
        (Code::NeedAtLeastOneDocument, "the input has no document"),
        (
            Code::NoFileSpecified,
            "no input file given, or it does not exist",
        ),
        (
            Code::NoEncryptionKeyFound,
            "no key to encrypt to, or one credseal cannot wrap for (KMS, Vault, …; a PGP key without its public key): nothing written",
        ),
        (
            Code::CouldNotRetrieveKey,
            "no identity could decrypt the data key (the key sources that failed are listed)",
        ),
        (
            Code::FileHasNotBeenModified,
            "edit made no change (or left a new file's example as it was); the file is untouched or not created",
        ),
        (
            Code::NoEditorFound,
            "no editor found ($SOPS_EDITOR, $EDITOR, vim, nano, vi), or the editor failed (exited non-zero); the file is untouched",
        ),
        (
            Code::FileAlreadyEncrypted,
            "encrypt was given a file that is already encrypted",
        ),
        (
            Code::KubeError,
            "the Kubernetes API failed a request (unreachable, not found, invalid)",
        ),
        (
            Code::KubeForbidden,
            "the Kubernetes API refused a request (403): the message names the missing permission",
        ),
        (
            Code::KubeConflict,
            "a concurrent change in the cluster (409); rerun",
        ),
        (
            Code::Downgrade,
            "apply refused to overwrite a Secret rotated after the file was encrypted",
        ),
        (
            Code::RotationFailed,
            "a rotation step failed; nothing is lost, rerun to finish or undo it",
        ),
        (
            Code::RotationLocked,
            "another run is rotating the credential (its lock names it); nothing was changed",
        ),
        (
            Code::CheckFindings,
            "check found problems (plaintext or unreadable Secret, clear value, recipients, another namespace's key, structure, MAC, invalid name)",
        ),
    ];

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The table as text for `--help`.
    pub fn help_table() -> String {
        let mut s = String::from("Exit codes:\n  0    success\n");
        for (code, what) in Code::TABLE {
            s.push_str(&format!("  {:<4} {what}\n", code.as_u8()));
        }
        s
    }
}

/// An error that stands for one code of the table, whichever command meets it. Every library
/// error type that reaches the command line has its impl here, so the same failure (a 403, a
/// MAC mismatch) exits the same way from `apply`, `rotate` or `status`. Failures whose code
/// depends on what the command was doing (reading its input or writing its output) pick the
/// code where they happen instead.
pub trait Coded {
    fn code(&self) -> Code;
}

impl<E> From<E> for Failure
where
    E: Coded + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Failure {
        Failure::new(e.code(), e)
    }
}

/// `e` as a failure that names the file it is about.
pub fn in_file(file: impl fmt::Display, e: impl Into<Failure>) -> Failure {
    e.into().context(file.to_string())
}

impl Coded for SopsError {
    fn code(&self) -> Code {
        match self {
            SopsError::Store(s) => s.code(),
            SopsError::Key(k) => k.code(),
            SopsError::Walk(_) => Code::ErrorDecryptingTree,
            SopsError::MacUndecryptable | SopsError::MacMismatch => Code::MacMismatch,
            SopsError::Metadata(_) => Code::Generic,
            SopsError::CannotWrap { .. } | SopsError::PgpKeyMissing { .. } | SopsError::Pgp(_) => {
                Code::NoEncryptionKeyFound
            }
        }
    }
}

impl Coded for StoreError {
    fn code(&self) -> Code {
        match self {
            // A mapping or list has no dotenv form: the tree cannot be emitted (sops 4).
            StoreError::Dotenv(DotenvError::ComplexValue(_)) => Code::ErrorDumpingTree,
            StoreError::Yaml(_)
            | StoreError::Json(_)
            | StoreError::Dotenv(_)
            | StoreError::BinaryNotUtf8 => Code::CouldNotReadInput,
            StoreError::IniWrite(_) => Code::ErrorDumpingTree,
            StoreError::Ini(_) => Code::CouldNotReadInput,
            StoreError::NoDocument => Code::NeedAtLeastOneDocument,
            StoreError::AlreadyEncrypted => Code::FileAlreadyEncrypted,
            StoreError::BinaryShape | StoreError::WouldNotReadBack(_) => Code::ErrorDumpingTree,
            StoreError::Metadata(_) => Code::Generic,
        }
    }
}

impl Coded for KeyError {
    fn code(&self) -> Code {
        match self {
            KeyError::NoMatchingIdentity { .. }
            | KeyError::NotEnoughShares { .. }
            | KeyError::BadDataKey(_) => Code::CouldNotRetrieveKey,
            KeyError::NoRecipients => Code::NoEncryptionKeyFound,
            _ => Code::Generic,
        }
    }
}

impl Coded for PathError {
    fn code(&self) -> Code {
        Code::InvalidTreePath
    }
}

/// `.sops.yaml`.
impl Coded for ConfigError {
    fn code(&self) -> Code {
        Code::ErrorReadingConfig
    }
}

impl Coded for IgnorePatternError {
    fn code(&self) -> Code {
        Code::CouldNotReadInput
    }
}

impl Coded for ScopeError {
    fn code(&self) -> Code {
        match self {
            ScopeError::Decrypt(e) => e.code(),
            _ => Code::Generic,
        }
    }
}

impl Coded for InputError {
    fn code(&self) -> Code {
        match self {
            InputError::Fs(_) => Code::CouldNotReadInput,
            InputError::Key(_) | InputError::NoIdentities(_) => Code::CouldNotRetrieveKey,
        }
    }
}

impl Coded for MaterializeError {
    fn code(&self) -> Code {
        match self {
            MaterializeError::Scope { source, .. } => source.code(),
            MaterializeError::Input(e) => e.code(),
            MaterializeError::Fs(_) => Code::CouldNotReadInput,
            MaterializeError::Projection(_) => Code::CouldNotWriteOutput,
            _ => Code::Generic,
        }
    }
}

/// The commands that talk to the cluster and the databases (not in the sidecar build).
#[cfg(feature = "cluster")]
mod cluster {
    use super::{Code, Coded};
    use credseal::apply::ApplyError;
    use credseal::cluster_key::ClusterKeyError;
    use credseal::k8s::K8sError;
    use credseal::k8s::lease::LeaseError;
    use credseal::rotate::RotateError;
    use credseal::rotate::lock::LockError;
    use credseal::rotate::plan::PlanError;
    use credseal::rotate::secret_target::SecretTargetError;
    use credseal::rotate::status::StatusError;
    use credseal::rotate::target::TargetError;

    /// A rotation plan is configuration as `.sops.yaml` is.
    impl Coded for PlanError {
        fn code(&self) -> Code {
            Code::ErrorReadingConfig
        }
    }

    impl Coded for K8sError {
        fn code(&self) -> Code {
            match self {
                K8sError::Forbidden { .. } => Code::KubeForbidden,
                K8sError::Conflict { .. } => Code::KubeConflict,
                _ => Code::KubeError,
            }
        }
    }

    impl Coded for ClusterKeyError {
        fn code(&self) -> Code {
            match self {
                ClusterKeyError::Kube(k) => k.code(),
                ClusterKeyError::Missing(_) => Code::KubeError,
                ClusterKeyError::Contended(_) => Code::KubeConflict,
                _ => Code::Generic,
            }
        }
    }

    impl Coded for ApplyError {
        fn code(&self) -> Code {
            match self {
                ApplyError::Scope { source, .. } => source.code(),
                ApplyError::Kube(k) => k.code(),
                ApplyError::Downgrade { .. } => Code::Downgrade,
                _ => Code::Generic,
            }
        }
    }

    /// A rotation's own failures exit 220 (rerun to finish) or 221 (another run holds the lock);
    /// what it shares with other commands (a 403, an unreadable target file) exits as it does there.
    impl Coded for RotateError {
        fn code(&self) -> Code {
            match self {
                RotateError::Target { source, .. } => source.code(),
                RotateError::Forbidden { .. } => Code::KubeForbidden,
                RotateError::Kube { source, .. } if source.is_forbidden() => Code::KubeForbidden,
                RotateError::Secret { source, .. } if source.code() == Code::KubeForbidden => {
                    Code::KubeForbidden
                }
                RotateError::Locked { source, .. } => source.code(),
                _ => Code::RotationFailed,
            }
        }
    }

    impl Coded for SecretTargetError {
        fn code(&self) -> Code {
            match self {
                SecretTargetError::Kube(k) => k.code(),
                _ => Code::RotationFailed,
            }
        }
    }

    impl Coded for LockError {
        fn code(&self) -> Code {
            match self {
                LockError::Lease(LeaseError::Held { .. }) | LockError::FileHeld { .. } => {
                    Code::RotationLocked
                }
                LockError::Lease(LeaseError::Kube(k)) if k.is_forbidden() => Code::KubeForbidden,
                _ => Code::RotationFailed,
            }
        }
    }

    impl Coded for TargetError {
        fn code(&self) -> Code {
            match self {
                TargetError::Sops { source, .. } => source.code(),
                _ => Code::CouldNotReadInput,
            }
        }
    }

    impl Coded for StatusError {
        fn code(&self) -> Code {
            match self {
                StatusError::File(e) => e.code(),
                StatusError::Lock { .. } => Code::CouldNotReadInput,
                StatusError::Kube(e) => e.code(),
                StatusError::Missing(_) | StatusError::NoCluster => Code::KubeError,
                StatusError::NotOurs { .. } | StatusError::Shape { .. } => Code::Generic,
            }
        }
    }
}

/// A failed command: the exit code and a message for the user (never a secret value).
pub struct Failure {
    pub code: Code,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: Code, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }

    pub fn msg(code: Code, msg: impl fmt::Display) -> Self {
        Failure::new(code, anyhow::anyhow!("{msg}"))
    }

    /// Adds what was being done, e.g. the file name.
    pub fn context(self, ctx: impl fmt::Display + Send + Sync + 'static) -> Self {
        Failure {
            code: self.code,
            error: self.error.context(ctx),
        }
    }
}

impl Failure {
    /// The process exit code: the table's, or the status of the command `exec-env` /
    /// `exec-file` ran, passed through.
    pub fn exit_code(&self) -> u8 {
        match self.error.downcast_ref::<ChildExited>() {
            Some(child) => child.code,
            None => self.code.as_u8(),
        }
    }
}

/// The command run by `exec-env` / `exec-file` failed; credseal exits with its code (128 +
/// the signal for one a signal ended), not a code of the table.
#[derive(Debug, thiserror::Error)]
#[error("the command failed ({status})")]
pub struct ChildExited {
    pub code: u8,
    pub status: std::process::ExitStatus,
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (exit {})", self.error, self.code.as_u8())
    }
}

/// The error and its causes, `outer: inner`, as every error is written on one line.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&credseal::sops::error_text::with_causes(
            self.error.as_ref(),
        ))
    }
}

pub type CliResult<T = ()> = Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_shown_once_outermost_first() {
        #[derive(Debug, thiserror::Error)]
        #[error("credential x")]
        struct Wrapping {
            source: std::io::Error,
        }
        let inner = || std::io::Error::other("connection refused");
        let f = Failure::new(Code::Generic, Wrapping { source: inner() });
        assert_eq!(f.to_string(), "credential x: connection refused");
        let f = Failure::new(Code::Generic, inner()).context("reading plan.yaml");
        assert_eq!(f.to_string(), "reading plan.yaml: connection refused");
    }

    #[test]
    fn table_lists_each_code_once() {
        let mut codes: Vec<u8> = Code::TABLE.iter().map(|(c, _)| c.as_u8()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Code::TABLE.len());
        assert!(Code::help_table().contains("51   MAC verification failed"));
    }

    #[test]
    fn readme_documents_the_same_table() {
        let readme = include_str!("../../README.md");
        for (code, what) in Code::TABLE {
            // The README writes code spans in backticks; compare the words.
            let row = format!("| {} | {} |", code.as_u8(), what);
            let readme_rows: Vec<String> = readme.lines().map(|l| l.replace('`', "")).collect();
            assert!(readme_rows.contains(&row), "README lacks the row: {row}");
        }
    }
}
