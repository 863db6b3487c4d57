//! Volumes laid out as the kubelet lays them out for a pod: ConfigMap volumes from the rendered
//! objects, Secret volumes from what the API fake holds, with `items`, `defaultMode` and the
//! `..data` symlink swap.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
use serde_json::Value;

use super::kube_api::KubeApi;
use super::unb64;
use crate::manifests::of_kind;
use crate::materialize::kubelet_update;

/// A ConfigMap or Secret volume of `spec` as the kubelet lays it out (`..data` swap,
/// `items`, `defaultMode`), from the rendered ConfigMaps and the Secrets the API holds now in
/// `namespace`.
pub fn volume(
    api: &KubeApi,
    objects: &[Value],
    spec: &PodSpec,
    name: &str,
    namespace: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    update_volume(api, objects, spec, name, namespace, dir.path());
    dir
}

/// Lays the volume's current content into `dir`, as the kubelet refreshes a mounted volume.
pub fn update_volume(
    api: &KubeApi,
    objects: &[Value],
    spec: &PodSpec,
    name: &str,
    namespace: &str,
    dir: &Path,
) {
    let v = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"));
    let (data, items, mode): (Vec<(String, Vec<u8>)>, _, _) = if let Some(cm) = &v.config_map {
        let found = of_kind::<ConfigMap>(objects, "ConfigMap")
            .into_iter()
            .find(|c| c.metadata.name == Some(cm.name.clone()))
            .unwrap_or_else(|| panic!("no ConfigMap {}", cm.name));
        let data = found
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        (data, cm.items.clone(), cm.default_mode)
    } else if let Some(sv) = &v.secret {
        let secret_name = sv.secret_name.clone().unwrap();
        let secret = api
            .get("secrets", namespace, &secret_name)
            .unwrap_or_else(|| panic!("no Secret {secret_name}"));
        let data = secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), unb64(v).into_bytes()))
            .collect();
        (data, sv.items.clone(), sv.default_mode)
    } else {
        panic!("volume {name} is neither a ConfigMap nor a Secret")
    };
    let files: Vec<(String, Vec<u8>)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                let bytes = data.iter().find(|(k, _)| *k == i.key).unwrap().1.clone();
                (i.path.clone(), bytes)
            })
            .collect(),
        None => data,
    };
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    kubelet_update(dir, &refs);
    let mode = mode.unwrap_or(0o644) as u32;
    for (f, _) in &files {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}
