//! `credseal materialize`: the init container (`--once`) and native sidecar.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args as ClapArgs;

use crate::cli::exit::{CliResult, Code, Failure};
use credseal::materialize::projection::FileMode;
use credseal::materialize::template::Template;
use credseal::materialize::{self, Options, health};

/// Where Kubernetes mounts the service-account token and namespace.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Directory of SOPS-encrypted Secret manifests (typically a mounted ConfigMap).
    #[arg(long, value_name = "DIR", requires = "keys")]
    pub source: Option<PathBuf>,
    /// Directory of age identities: *.agekey files (Flux's sops-age layout) or keys.txt.
    #[arg(long, value_name = "DIR", requires = "source")]
    pub keys: Option<PathBuf>,
    /// A Secret volume mounted by the kubelet, as NAME=DIR: its values render like those of
    /// the SOPS files (and follow the Secret when it changes, e.g. after a rotation).
    #[arg(long = "secret", value_name = "NAME=DIR")]
    pub secrets: Vec<String>,
    /// Output directory (an emptyDir with medium: Memory); values land in OUT/<secret>/<key>.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Render once and exit (init container); without it, keep watching (native sidecar).
    #[arg(long)]
    pub once: bool,
    /// The pod's namespace (default: the service-account namespace file).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// An extra file rendered from values, e.g.
    /// DATABASE_URL=postgresql://{{db/username}}:{{db/password}}@postgres:5432/app
    /// (values in URL templates are percent-encoded; `{{secret/key | raw}}` opts out).
    #[arg(long = "template", value_name = "NAME=TEMPLATE")]
    pub templates: Vec<String>,
    /// Serve /healthz, /readyz and /metrics on this address, e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// File mode of the rendered files, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "0400")]
    pub mode: String,
    /// Group ID to own the rendered files (pair with --mode 0440 for a reader in that group).
    #[arg(long, value_name = "GID")]
    pub group: Option<u32>,
    /// Seconds between checks of --source and --keys for changes.
    #[arg(long, value_name = "SECONDS", default_value = "2")]
    pub interval: f64,
}

pub fn run(args: Args) -> CliResult {
    let namespace = args
        .namespace
        .clone()
        .or_else(|| materialize::pod_namespace(std::path::Path::new(SERVICE_ACCOUNT_DIR)))
        .ok_or_else(|| {
            Failure::msg(
                Code::ConflictingParameters,
                "no namespace: pass --namespace or run in a pod with a service-account mount",
            )
        })?;
    let mode = u32::from_str_radix(args.mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            Failure::msg(
                Code::ConflictingParameters,
                format!("--mode {:?} is not an octal file mode", args.mode),
            )
        })?;
    let templates = args
        .templates
        .iter()
        .map(|t| Template::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(Code::ConflictingParameters, e))?;
    if !(args.interval > 0.0 && args.interval.is_finite()) {
        return Err(Failure::msg(
            Code::ConflictingParameters,
            "--interval must be a positive number of seconds",
        ));
    }
    let secret_dirs = args
        .secrets
        .iter()
        .map(|a| match a.split_once('=') {
            Some((name, dir)) if credseal::manifest::valid_secret_name(name) && !dir.is_empty() => {
                Ok((name.to_owned(), PathBuf::from(dir)))
            }
            _ => Err(Failure::msg(
                Code::ConflictingParameters,
                format!("--secret {a:?}: expected NAME=DIR"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if args.source.is_none() && secret_dirs.is_empty() {
        return Err(Failure::msg(
            Code::ConflictingParameters,
            "nothing to render: give --source with --keys, or --secret NAME=DIR",
        ));
    }
    let opts = Options {
        source: args.source,
        keys: args.keys,
        secret_dirs,
        out: args.out,
        namespace,
        templates,
        mode: FileMode {
            mode,
            group: args.group,
        },
        interval: Duration::from_secs_f64(args.interval),
    };
    if args.once {
        let n = materialize::once(&opts).map_err(Failure::from)?.len();
        tracing::info!(
            target: credseal::log::MATERIALIZE,
            outcome = "rendered",
            secrets = n,
            out = %opts.out.display(),
            "rendered {n} Secrets into {}",
            opts.out.display()
        );
        return Ok(());
    }

    let state: health::Shared = Arc::new(Mutex::new(health::State::default()));
    if let Some(addr) = &args.listen {
        let listener = TcpListener::bind(addr).map_err(|e| {
            Failure::new(Code::Generic, e).context(format!("cannot listen on {addr}"))
        })?;
        health::serve(listener, state.clone());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Failure::new(Code::Generic, e))?;
    }
    materialize::watch(&opts, &state, &stop);
    tracing::info!(target: credseal::log::MATERIALIZE, outcome = "stopped", "stopping");
    Ok(())
}
