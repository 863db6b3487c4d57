//! `materialize`: decrypt mounted SOPS files with the mounted keyring and project every value
//! as a file on an in-memory volume, atomically, once (init container) or on every change
//! (native sidecar). The layout it writes and why a reader never sees a mix is in `projection.rs`.

pub mod health;
pub mod inputs;
pub mod projection;
pub mod template;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::file_io::FsError;
use crate::manifest::{
    self, GENERATION_ANNOTATION, ROTATED_AT_ANNOTATION, ScopeError, SecretValues,
};
use crate::sops::store::Format;

use self::health::{RenderedSecret, SecretSource};
use self::inputs::InputError;
use self::projection::{FileMode, Payload, ProjectionError};
use self::template::{Template, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// A file that does not decrypt, is not a Secret, or is bound to another namespace.
    #[error("{file}")]
    Scope { file: PathBuf, source: ScopeError },
    #[error("Secret {0:?} is defined twice in the source directory")]
    Duplicate(String),
    #[error("template {0:?} has the same name as a Secret")]
    TemplateClash(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{0}: no SOPS files (*.yaml, *.yml, *.json) to render")]
    NoFiles(PathBuf),
    #[error("nothing to render: give --source with --keys, or --secret NAME=DIR")]
    NoInputs,
    /// A source file could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

#[derive(Clone, Debug)]
pub struct Options {
    /// SOPS-encrypted Secret manifests (with `keys`), if any.
    pub source: Option<PathBuf>,
    pub keys: Option<PathBuf>,
    /// Plain Secret volumes mounted by the kubelet, by Secret name (values read as they are;
    /// the kubelet refreshes them when the Secret changes, e.g. after a rotation).
    pub secret_dirs: Vec<(String, PathBuf)>,
    pub out: PathBuf,
    /// The pod's namespace: every rendered Secret must be bound to it.
    pub namespace: String,
    pub templates: Vec<Template>,
    pub mode: FileMode,
    /// How often the inputs are checked for changes.
    pub interval: Duration,
}

/// What `/metrics` says of a rendered Secret: read from its manifest's annotations, as
/// `rotate` reads them (no generation is 0); a Secret volume has none to read.
fn rendered(s: &SecretValues, source: SecretSource) -> RenderedSecret {
    let annotation = |name: &str| {
        s.annotations
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (generation, rotated_at) = match source {
        SecretSource::Sops => (
            annotation(GENERATION_ANNOTATION).map_or(Some(0), |g| g.parse().ok()),
            annotation(ROTATED_AT_ANNOTATION)
                .and_then(crate::sops::tree::Timestamp::parse_rfc3339)
                .map(|t| t.unix()),
        ),
        SecretSource::Volume => (None, None),
    };
    RenderedSecret {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        source,
        generation,
        rotated_at,
    }
}

/// Decrypts and checks every source file; returns the files to project and what `/metrics`
/// reports of each Secret.
pub fn render(opts: &Options) -> Result<(Payload, Vec<RenderedSecret>), MaterializeError> {
    let mut secrets: Vec<SecretValues> = Vec::new();
    let mut sources: Vec<SecretSource> = Vec::new();
    let mut found_any = false;
    if let (Some(source), Some(keys)) = (&opts.source, &opts.keys) {
        let ring = inputs::load_keyring(keys)?;
        let files: Vec<PathBuf> = inputs::visible_files(source)?
            .into_iter()
            .filter(|p| matches!(Format::from_path(p), Format::Yaml | Format::Json))
            .collect();
        if files.is_empty() {
            return Err(MaterializeError::NoFiles(source.clone()));
        }
        found_any = true;
        for path in &files {
            let bytes = crate::file_io::read(path)?;
            let found =
                manifest::open_scoped(&bytes, Format::from_path(path), &ring, &opts.namespace)
                    .map_err(|source| MaterializeError::Scope {
                        file: path.clone(),
                        source,
                    })?;
            for values in found {
                if secrets.iter().any(|s| s.name == values.name) {
                    return Err(MaterializeError::Duplicate(values.name));
                }
                secrets.push(values);
                sources.push(SecretSource::Sops);
            }
        }
    }
    for (name, dir) in &opts.secret_dirs {
        found_any = true;
        if secrets.iter().any(|s| &s.name == name) {
            return Err(MaterializeError::Duplicate(name.clone()));
        }
        let mut values = Vec::new();
        for file in inputs::visible_files(dir)? {
            let key = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if manifest::valid_key(&key) {
                values.push((
                    key,
                    crate::secret::SecretBytes::new(crate::file_io::read(&file)?),
                ));
            }
        }
        secrets.push(SecretValues {
            name: name.clone(),
            namespace: opts.namespace.clone(),
            secret_type: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            values,
        });
        sources.push(SecretSource::Volume);
    }
    if !found_any {
        return Err(MaterializeError::NoInputs);
    }
    let mut payload: Payload = Vec::new();
    for s in &secrets {
        for (key, value) in &s.values {
            payload.push((format!("{}/{key}", s.name), value.clone()));
        }
    }
    for t in &opts.templates {
        if secrets.iter().any(|s| s.name == t.name) {
            return Err(MaterializeError::TemplateClash(t.name.clone()));
        }
        payload.push((t.name.clone(), t.render(&secrets)?));
    }
    let report = secrets
        .iter()
        .zip(sources)
        .map(|(s, source)| rendered(s, source))
        .collect();
    Ok((payload, report))
}

/// Renders and projects once. Returns what was rendered, for `/metrics`.
pub fn once(opts: &Options) -> Result<Vec<RenderedSecret>, MaterializeError> {
    let (payload, secrets) = render(opts)?;
    projection::project(&opts.out, &payload, opts.mode)?;
    Ok(secrets)
}

/// Renders, then re-renders whenever `--source` or `--keys` change, until `stop` is set. A bad
/// update keeps the last good files and marks the state not ready. Each render is an event
/// (never a value).
pub fn watch(opts: &Options, state: &health::Shared, stop: &AtomicBool) {
    let dirs: Vec<&Path> = opts
        .source
        .iter()
        .chain(opts.keys.iter())
        .chain(opts.secret_dirs.iter().map(|(_, d)| d))
        .map(PathBuf::as_path)
        .collect();
    let mut last: Option<[u8; 32]> = None;
    while !stop.load(Ordering::Relaxed) {
        let fp = inputs::fingerprint(&dirs);
        if last != Some(fp) {
            last = Some(fp);
            let started = Instant::now();
            match once(opts) {
                Ok(rendered) => {
                    let n = rendered.len();
                    state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record_success(rendered);
                    let elapsed = started.elapsed();
                    tracing::info!(
                        target: crate::log::MATERIALIZE,
                        outcome = "rendered",
                        secrets = n,
                        out = %opts.out.display(),
                        elapsed_ms = elapsed.as_secs_f64() * 1e3,
                        "rendered {n} Secrets into {} in {elapsed:?}",
                        opts.out.display(),
                    );
                }
                Err(e) => {
                    state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record_failure();
                    let error = crate::sops::error_text::with_causes(&e);
                    tracing::warn!(
                        target: crate::log::MATERIALIZE,
                        outcome = "failed",
                        error,
                        "render failed, keeping the last good files: {error}"
                    );
                }
            }
        }
        sleep_unless_stopped(opts.interval, stop);
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let end = Instant::now() + total;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step.min(end.saturating_duration_since(Instant::now())));
    }
}

/// The namespace of the pod from its service-account mount, if present.
pub fn pod_namespace(sa_dir: &Path) -> Option<String> {
    std::fs::read_to_string(sa_dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
