//! What the caller may do, asked before acting: one `SelfSubjectAccessReview` per call a run
//! will make (any authenticated identity may ask about itself), so a missing permission is
//! reported with the Role rule to add before anything changes, not as a 403 halfway through.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::k8s::error::K8sError;

/// One call: a verb on a resource (in an API group), in a namespace, by name where the API
/// authorizes by name (`create` never is; `list` and `watch` are when their field selector
/// names one object, `metadata.name=NAME`).
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

/// Role rules granting exactly `calls`, per namespace: calls on the same resource with the
/// same verbs share a rule and list their names; unnamed calls (create, list) get rules
/// without resourceNames. Deterministic, so the output can be compared and committed.
pub fn role_rules(calls: &[Access]) -> std::collections::BTreeMap<String, Vec<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    // (namespace, group, resource, name) -> verbs
    let mut verbs: BTreeMap<(&str, &str, &str, Option<&str>), BTreeSet<&str>> = BTreeMap::new();
    for c in calls {
        verbs
            .entry((&c.namespace, c.group, &c.resource, c.name.as_deref()))
            .or_default()
            .insert(c.verb);
    }
    // (namespace, group, resource, verbs) -> names
    type Rule<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>);
    let mut rules: BTreeMap<Rule<'_>, Vec<Option<&str>>> = BTreeMap::new();
    for ((ns, group, resource, name), v) in verbs {
        rules
            .entry((ns, group, resource, v.into_iter().collect()))
            .or_default()
            .push(name);
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((ns, group, resource, verbs), names) in rules {
        let quoted = |v: &[&str]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let named: Vec<&str> = names.iter().flatten().copied().collect();
        let names_part = if named.is_empty() {
            String::new()
        } else {
            format!(", resourceNames: [{}]", quoted(&named))
        };
        out.entry(ns.to_owned()).or_default().push(format!(
            "- {{apiGroups: [\"{group}\"], resources: [\"{resource}\"]{names_part}, verbs: [{}]}}",
            quoted(&verbs)
        ));
    }
    out
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
