//! Connecting the way kubectl does: an explicit `--context` or `KUBECONFIG`/`~/.kube/config`
//! when given, the in-cluster service account inside a pod, else the kubeconfig.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::k8s::error::K8sError;

/// Connecting to the Kubernetes API.
pub const API_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One API request (no call credseal makes is a watch or a long poll).
pub const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the configuration comes from; the cli fills it from flags and the environment.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// `--context`.
    pub context: Option<String>,
    /// `KUBECONFIG` entries (colon-separated in the variable), else `~/.kube/config`.
    pub kubeconfig: Vec<PathBuf>,
    /// Whether `KUBERNETES_SERVICE_HOST` is set (we run in a pod).
    pub in_cluster: bool,
}

/// A connected client and the namespace kubectl would use by default.
pub struct Connection {
    pub client: Client,
    pub default_namespace: String,
}

pub async fn connect(source: &Source) -> Result<Connection, K8sError> {
    let existing: Vec<&PathBuf> = source.kubeconfig.iter().filter(|p| p.is_file()).collect();
    let use_kubeconfig = source.context.is_some() || !source.in_cluster;
    let config = if use_kubeconfig && !existing.is_empty() {
        let mut merged: Option<Kubeconfig> = None;
        for p in existing {
            let kc = Kubeconfig::read_from(p)
                .map_err(|e| K8sError::Config(format!("{}: {e}", p.display())))?;
            merged = Some(match merged {
                None => kc,
                Some(m) => m.merge(kc).map_err(|e| K8sError::Config(e.to_string()))?,
            });
        }
        let options = KubeConfigOptions {
            context: source.context.clone(),
            ..KubeConfigOptions::default()
        };
        Config::from_custom_kubeconfig(merged.expect("at least one file"), &options)
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?
    } else if source.in_cluster {
        Config::incluster()
            .map_err(|e| K8sError::Config(format!("in-cluster configuration: {e}")))?
    } else {
        return Err(K8sError::Config(
            "no kubeconfig found (set KUBECONFIG or create ~/.kube/config) and not running in a pod".into(),
        ));
    };
    // An API server (or a proxy in front of it) that accepts and never answers must not hold
    // a run, and a CronJob with concurrencyPolicy: Forbid, for good.
    let mut config = config;
    config.connect_timeout = Some(API_CONNECT_TIMEOUT);
    config.read_timeout = Some(API_REQUEST_TIMEOUT);
    config.write_timeout = Some(API_REQUEST_TIMEOUT);
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| K8sError::Config(e.to_string()))?;
    Ok(Connection {
        client,
        default_namespace,
    })
}
