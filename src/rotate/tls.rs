//! TLS for the engines with libpq's `sslmode` meanings, over rustls (ring).
//!
//! | sslmode | encrypted | chain checked | host checked |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `require` | yes | only with a CA (then as `verify-ca`, as libpq does) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` | yes | yes | yes |
//!
//! `allow` and `prefer` are refused: they fall back to plaintext without saying so. A given CA
//! (`sslrootcert`, or the plan's `admin.ca`) means `verify-full` unless the URL says otherwise.

use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "sslmode={0}: it falls back to plaintext silently; use disable, require, verify-ca or verify-full"
    )]
    Fallback(String),
    #[error("unknown sslmode {0:?}: use disable, require, verify-ca or verify-full")]
    Unknown(String),
    #[error(
        "sslmode={0} needs a CA certificate (sslrootcert= in the URL, or admin.ca in the plan)"
    )]
    NoCa(&'static str),
    #[error("{origin}: cannot read the CA certificate: {reason}")]
    Ca { origin: String, reason: String },
}

/// A PEM held in memory, with where it came from (a file, or a Secret's key) for errors. The
/// rotator runs on a read-only root with no `/tmp`: nothing it fetches is written to disk.
pub struct Pem {
    pub source: String,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl Pem {
    pub fn read(path: &Path) -> Result<Pem, TlsError> {
        let source = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => Ok(Pem {
                source,
                bytes: Zeroizing::new(bytes),
            }),
            Err(e) => Err(TlsError::Ca {
                origin: source,
                reason: e.to_string(),
            }),
        }
    }
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pem({})", self.source)
    }
}

impl SslMode {
    pub fn parse(s: &str) -> Result<SslMode, TlsError> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" | "prefer" => Err(TlsError::Fallback(s.to_owned())),
            other => Err(TlsError::Unknown(other.to_owned())),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Pem) -> Result<RootCertStore, TlsError> {
    let err = |reason: String| TlsError::Ca {
        origin: ca.source.clone(),
        reason,
    };
    let mut store = RootCertStore::empty();
    let mut found = 0;
    for cert in rustls_pki_types_pem(&ca.bytes) {
        store.add(cert).map_err(|e| err(e.to_string()))?;
        found += 1;
    }
    if found == 0 {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(store)
}

/// The `-----BEGIN CERTIFICATE-----` blocks of a PEM file, decoded.
fn rustls_pki_types_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut inside = false;
    let mut b64 = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            inside = true;
            b64.clear();
        } else if line == "-----END CERTIFICATE-----" {
            inside = false;
            if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&b64) {
                out.push(CertificateDer::from(der));
            }
        } else if inside {
            b64.push_str(line);
        }
    }
    out
}

/// The client configuration for a mode; `None` for `disable`.
pub fn client_config(mode: SslMode, ca: Option<&Pem>) -> Result<Option<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, ca) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Require, None) => Arc::new(AcceptAny(provider.signature_verification_algorithms)),
        (SslMode::VerifyFull, Some(ca)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                .build()
                .map_err(|e| TlsError::Ca {
                    origin: ca.source.clone(),
                    reason: e.to_string(),
                })?
        }
        (SslMode::Require | SslMode::VerifyCa, Some(ca)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider)
                .build()
                .map_err(|e| TlsError::Ca {
                    origin: ca.source.clone(),
                    reason: e.to_string(),
                })?;
            Arc::new(AnyName(inner))
        }
        (SslMode::VerifyCa, None) => return Err(TlsError::NoCa("verify-ca")),
        (SslMode::VerifyFull, None) => return Err(TlsError::NoCa("verify-full")),
    };
    Ok(Some(
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

/// `verify-ca`: the chain must lead to the CA; the name may be anything.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` without a CA: encrypted, not authenticated (libpq's meaning).
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(m, c, d, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(m, c, d, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(SslMode::parse("verify-full").unwrap(), SslMode::VerifyFull);
        assert!(matches!(
            SslMode::parse("prefer"),
            Err(TlsError::Fallback(_))
        ));
        assert!(matches!(
            client_config(SslMode::VerifyFull, None),
            Err(TlsError::NoCa(_))
        ));
        assert!(client_config(SslMode::Disable, None).unwrap().is_none());
        assert!(client_config(SslMode::Require, None).unwrap().is_some());
    }
}
