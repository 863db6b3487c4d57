//! What the admin logs in with, from wherever the plan keeps it: its password (an environment
//! variable, a SOPS file, a Secret, or the rotated credential's own password) and the TLS
//! material for the connection. Held in memory only.

use crate::rotate::plan::{self, AdminPassword, Credential};
use crate::rotate::redis::ClientCert;
use crate::rotate::store::{Current, Pending};
use crate::rotate::tls::Pem;
use crate::rotate::{RotateError, Runner};
use crate::secret::SecretString;
use crate::sops::file::EncryptedFile;
use crate::sops::path;
use crate::sops::store::Format;
use crate::sops::tree::Node;

/// The admin's TLS material: the CA that signed the server's certificate, and a client
/// certificate with its key.
pub struct AdminTls {
    pub ca: Option<Pem>,
    pub client: Option<(Pem, Pem)>,
}

impl AdminTls {
    pub fn client_cert(&self) -> Option<ClientCert<'_>> {
        self.client
            .as_ref()
            .map(|(cert, key)| ClientCert { cert, key })
    }
}

impl Runner<'_> {
    /// The passwords the admin may log in with, in the order to try them. With
    /// `{target: true}` both the current and the pending password: whichever the database
    /// holds depends on how far the last run got.
    pub(crate) async fn admin_passwords(
        &self,
        cred: &Credential,
        current: &Current,
        pending: Option<&Pending>,
    ) -> Result<Vec<SecretString>, RotateError> {
        let err = |reason: String| RotateError::AdminPassword {
            credential: cred.name.clone(),
            reason,
        };
        let Some(spec) = &cred.admin.password else {
            return Ok(vec![SecretString::default()]);
        };
        match spec {
            AdminPassword { target: true, .. } => {
                let mut v = vec![current.password.clone()];
                v.extend(pending.map(|p| p.password.clone()));
                Ok(v)
            }
            AdminPassword {
                env: Some(name), ..
            } => (self.env)(name)
                .map(|v| vec![SecretString::new(v)])
                .ok_or_else(|| err(format!("environment variable {name} is not set"))),
            AdminPassword {
                secret: Some(r), ..
            } => {
                let bytes = self.secret_key(cred, r, &err).await?;
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    err(format!(
                        "secret {}/{} key {} is not UTF-8 text",
                        r.namespace, r.name, r.key
                    ))
                })?;
                Ok(vec![SecretString::new(text)])
            }
            AdminPassword { file: Some(f), .. } => {
                let p = self.base_dir.join(&f.path);
                let bytes = crate::file_io::read(&p).map_err(|e| err(e.to_string()))?;
                let opened = EncryptedFile::parse(&bytes, Format::from_path(&p))
                    .and_then(|e| e.open(self.keyring, false))
                    .map_err(|e| {
                        err(format!(
                            "{}: {}",
                            p.display(),
                            crate::sops::error_text::with_causes(&e)
                        ))
                    })?;
                let steps = path::parse(&f.key).map_err(|e| err(e.to_string()))?;
                let doc = opened.tree.documents.first().cloned().unwrap_or_default();
                match path::get(&doc, &steps) {
                    Ok(Node::Str(s)) => Ok(vec![s.clone()]),
                    _ => Err(err(format!("{}: no string at {}", p.display(), f.key))),
                }
            }
            AdminPassword { .. } => Err(err(
                "admin.password needs env, file, secret or target".into()
            )),
        }
    }

    /// The plan's CA and client certificate for the admin connection.
    pub(crate) async fn admin_tls(&self, cred: &Credential) -> Result<AdminTls, RotateError> {
        let ca = match &cred.admin.ca {
            Some(p) => Some(self.load_pem(cred, p).await?),
            None => None,
        };
        let client = match (&cred.admin.client_cert, &cred.admin.client_key) {
            (Some(c), Some(k)) => {
                Some((self.load_pem(cred, c).await?, self.load_pem(cred, k).await?))
            }
            _ => None,
        };
        Ok(AdminTls { ca, client })
    }

    /// A plan's PEM, from its file or a Secret key, held in memory only.
    async fn load_pem(&self, cred: &Credential, pem: &plan::PemFile) -> Result<Pem, RotateError> {
        let pem_error = |reason: String| RotateError::Pem {
            credential: cred.name.clone(),
            reason,
        };
        let Some(r) = &pem.secret else {
            let path = self.base_dir.join(pem.file.as_deref().unwrap_or_default());
            return Pem::read(&path).map_err(|e| pem_error(e.to_string()));
        };
        let bytes = self.secret_key(cred, r, &pem_error).await?;
        Ok(Pem {
            source: format!("secret {}/{} key {}", r.namespace, r.name, r.key),
            bytes,
        })
    }

    /// One key of a Secret, read through the API and held in zeroizing memory; `missing` makes
    /// the error for a Secret without that key.
    async fn secret_key(
        &self,
        cred: &Credential,
        r: &plan::KeyRef,
        missing: &dyn Fn(String) -> RotateError,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, RotateError> {
        let client = self.cluster(cred)?;
        let secret =
            kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, &r.namespace)
                .get(&r.name)
                .await
                .map_err(|e| RotateError::Kube {
                    credential: cred.name.clone(),
                    source: crate::k8s::K8sError::from_kube(
                        format!("get secret {}/{}", r.namespace, r.name),
                        e,
                    ),
                })?;
        let bytes = secret
            .data
            .and_then(|mut d| d.remove(&r.key))
            .ok_or_else(|| {
                missing(format!(
                    "secret {}/{} has no key {}",
                    r.namespace, r.name, r.key
                ))
            })?;
        Ok(zeroize::Zeroizing::new(bytes.0))
    }
}
