//! What the caller may do, asked before acting: one `SelfSubjectAccessReview` per call a run
//! will make (any authenticated identity may ask about itself), so a missing permission is
//! reported with the Role rule to add before anything changes, not as a 403 halfway through.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::k8s::error::K8sError;

/// One call: a verb on a resource (in an API group), in a namespace, by name where the API
/// authorizes by name (`create` and `list` never are).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: String,
    pub namespace: String,
    pub name: Option<String>,
}

impl Access {
    pub fn new(
        verb: &'static str,
        group: &'static str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> Access {
        Access {
            verb,
            group,
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.map(str::to_owned),
        }
    }

    /// The Role rule (YAML, in the Role of `namespace`) that grants it.
    pub fn rule(&self) -> String {
        let names = match &self.name {
            Some(n) => format!(", resourceNames: [\"{n}\"]"),
            None => String::new(),
        };
        format!(
            "- {{apiGroups: [\"{}\"], resources: [\"{}\"]{names}, verbs: [\"{}\"]}}  # Role in namespace {}",
            self.group, self.resource, self.verb, self.namespace
        )
    }
}

/// The calls of `wanted` the caller may not make.
pub async fn denied(client: &kube::Client, wanted: &[Access]) -> Result<Vec<Access>, K8sError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut out = Vec::new();
    for a in wanted {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(a.verb.to_owned()),
                    group: Some(a.group.to_owned()),
                    resource: Some(a.resource.clone()),
                    namespace: Some(a.namespace.clone()),
                    name: a.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| K8sError::from_kube("selfsubjectaccessreview", e))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            out.push(a.clone());
        }
    }
    Ok(out)
}
