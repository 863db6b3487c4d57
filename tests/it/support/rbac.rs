//! RBAC as the API server's authorizer evaluates it, over the Roles, ClusterRoles and bindings
//! the fake holds (put from the rendered manifests): a request is allowed when a binding of the
//! caller's ServiceAccount grants a rule matching its verb, API group, resource (with
//! subresource) and name. `resourceNames` never match `create` or `deletecollection`: those
//! requests carry no name when they are authorized; a `list` or `watch` carries one only when
//! its field selector names one object (`metadata.name=NAME`), as the real request info does.

use std::collections::BTreeMap;

use serde_json::Value;

/// What the authorizer sees of a request.
pub struct Attributes<'a> {
    pub user: &'a str,
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

type Objects = BTreeMap<(String, String, String), Value>;

pub fn allowed(objects: &Objects, a: &Attributes<'_>) -> bool {
    let bindings = objects.iter().filter(|((r, ns, _), _)| {
        (r == "rolebindings" && ns == a.namespace) || r == "clusterrolebindings"
    });
    for ((kind, ns, _), binding) in bindings {
        if !binds(binding, ns, a.user) {
            continue;
        }
        let role_ref = &binding["roleRef"];
        let role_name = role_ref["name"].as_str().unwrap_or_default().to_owned();
        let role = match role_ref["kind"].as_str() {
            // A RoleBinding to a Role grants in its own namespace only.
            Some("Role") if kind == "rolebindings" => {
                objects.get(&("roles".into(), ns.clone(), role_name))
            }
            Some("ClusterRole") => objects.get(&("clusterroles".into(), String::new(), role_name)),
            _ => None,
        };
        let rules = role.and_then(|r| r["rules"].as_array());
        if rules.is_some_and(|rules| rules.iter().any(|rule| grants(rule, a))) {
            return true;
        }
    }
    false
}

/// Whether `binding` (in `namespace`) names the ServiceAccount `user` is.
fn binds(binding: &Value, namespace: &str, user: &str) -> bool {
    binding["subjects"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            let ns = s["namespace"].as_str().unwrap_or(namespace);
            match s["kind"].as_str() {
                Some("ServiceAccount") => {
                    user == format!(
                        "system:serviceaccount:{ns}:{}",
                        s["name"].as_str().unwrap_or_default()
                    )
                }
                Some("User") => s["name"].as_str() == Some(user),
                _ => false,
            }
        })
    })
}

fn grants(rule: &Value, a: &Attributes<'_>) -> bool {
    let has = |field: &str, want: &str| {
        rule[field]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x == "*" || x == want))
    };
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_owned(),
    };
    let names = rule["resourceNames"].as_array().filter(|n| !n.is_empty());
    let name_ok = match names {
        None => true,
        Some(names) => {
            !matches!(a.verb, "create" | "deletecollection")
                && a.name.is_some_and(|n| names.iter().any(|x| x == n))
        }
    };
    has("verbs", a.verb) && has("apiGroups", a.group) && has("resources", &resource) && name_ok
}

/// The API server's 403 message for a denied request.
pub fn forbidden_message(a: &Attributes<'_>) -> String {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_owned(),
    };
    let what = match a.name {
        Some(n) => format!("{resource} \"{n}\""),
        None => resource.clone(),
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{what} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        a.user, a.verb, a.group
    )
}
