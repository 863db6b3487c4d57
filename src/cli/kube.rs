//! Shared Kubernetes flags and the runtime for the commands that talk to the API server.

use clap::Args as ClapArgs;

use crate::cli::env::Env;
use crate::cli::exit::{Code, Failure};
use credseal::k8s::client::{self, Connection, Source};

#[derive(ClapArgs, Debug, Clone)]
pub struct KubeArgs {
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Generic, e))
}

pub async fn connect(args: &KubeArgs, env: &Env) -> Result<Connection, Failure> {
    let source = Source {
        context: args.context.clone(),
        kubeconfig: env.kubeconfig.clone(),
        in_cluster: env.in_cluster,
    };
    client::connect(&source).await.map_err(Failure::from)
}
