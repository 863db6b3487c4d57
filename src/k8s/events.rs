//! Kubernetes Events on the objects credseal changes.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::k8s::error::K8sError;

pub async fn record(
    client: kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    reason: &str,
    message: &str,
    type_: &str,
) -> Result<(), K8sError> {
    let api_version = match kind {
        "Secret" => "v1",
        "CronJob" => "batch/v1",
        _ => "apps/v1",
    };
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.credseal.")),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        reporting_component: Some("credseal".into()),
        ..Event::default()
    };
    Api::<Event>::namespaced(client, namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
        .map_err(|e| K8sError::from_kube(format!("event on {kind} {namespace}/{name}"), e))
}
