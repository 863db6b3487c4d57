//! Kubernetes Events on the objects credseal changes.
//!
//! `kubectl describe` finds an object's Events by `involvedObject` name, namespace, kind *and*
//! uid, and orders them by `lastTimestamp`: an Event without the uid or the timestamps is never
//! shown. So each Event carries both, and a count of 1 with its source, as the core/v1 Event
//! recorder of client-go writes them.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::k8s::error::K8sError;

/// Records an Event on the object `kind` `namespace`/`name` whose uid is `uid`.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    client: kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    uid: Option<String>,
    reason: &str,
    message: &str,
    type_: &str,
) -> Result<(), K8sError> {
    let api_version = match kind {
        "Secret" => "v1",
        "CronJob" => "batch/v1",
        _ => "apps/v1",
    };
    let now = k8s_openapi::jiff::Timestamp::now();
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
            uid,
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        source: Some(EventSource {
            component: Some("credseal".into()),
            host: None,
        }),
        reporting_component: Some("credseal".into()),
        ..Event::default()
    };
    Api::<Event>::namespaced(client, namespace)
        .create(&PostParams::default(), &event)
        .await
        .map(drop)
        .map_err(|e| K8sError::from_kube(format!("event on {kind} {namespace}/{name}"), e))
}
