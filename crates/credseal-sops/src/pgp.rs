//! PGP master keys: the data key wrapped for a public key offline, as `gpg --encrypt --armor`
//! does for sops, so that credseal can add or re-wrap a PGP entry without a gpg agent. Only
//! public keys are read; decrypting with PGP is left to sops and gpg.

use crate::master_key::normalize_fingerprint;

#[derive(Debug, thiserror::Error)]
pub enum PgpError {
    #[error(
        "{source_name}: not an OpenPGP public key (armored or binary, as `gpg --export` writes it): {reason}"
    )]
    Parse { source_name: String, reason: String },
    #[error(
        "PGP key {fingerprint} has no usable encryption key (no subkey or primary key that may encrypt and is not revoked)"
    )]
    NoEncryptionKey { fingerprint: String },
    #[error("PGP key {fingerprint}: encrypting the data key failed: {reason}")]
    Encrypt { fingerprint: String, reason: String },
    #[error("PGP support is not in this build of credseal (the sidecar build); use the full build")]
    NotBuilt,
}

/// A PGP public key (certificate) that data keys can be wrapped for.
#[derive(Clone)]
pub struct PgpCert {
    /// Upper-case hex fingerprints of the primary key and every subkey.
    fingerprints: Vec<String>,
    #[cfg(feature = "pgp")]
    key: pgp::composed::SignedPublicKey,
}

impl std::fmt::Debug for PgpCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgpCert({})",
            self.fingerprints.first().map_or("", |s| s)
        )
    }
}

impl PgpCert {
    /// Whether this certificate is the key a rule names: by the fingerprint of its primary key
    /// or a subkey, or by a long key id (the last 16 hex digits), as gpg resolves them.
    pub fn answers_to(&self, fingerprint: &str) -> bool {
        let want = normalize_fingerprint(fingerprint);
        want.len() >= 16 && self.fingerprints.iter().any(|fp| fp.ends_with(&want))
    }

    /// The primary key's fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprints[0]
    }

    /// Every certificate in `bytes` (one or many, armored or binary).
    #[cfg(feature = "pgp")]
    pub fn parse_all(bytes: &[u8], source_name: &str) -> Result<Vec<PgpCert>, PgpError> {
        use pgp::composed::{Deserializable, SignedPublicKey};
        use pgp::types::KeyDetails;

        let parse_err = |reason: String| PgpError::Parse {
            source_name: source_name.to_owned(),
            reason,
        };
        let armored = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .is_some_and(|i| bytes[i..].starts_with(b"-----BEGIN PGP"));
        let keys: Vec<SignedPublicKey> = if armored {
            SignedPublicKey::from_armor_many(bytes)
                .map_err(|e| parse_err(e.to_string()))?
                .0
                .collect::<Result<_, _>>()
                .map_err(|e| parse_err(e.to_string()))?
        } else {
            SignedPublicKey::from_bytes_many(bytes)
                .map_err(|e| parse_err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| parse_err(e.to_string()))?
        };
        if keys.is_empty() {
            return Err(parse_err("no key in it".into()));
        }
        Ok(keys
            .into_iter()
            .map(|key| {
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
                let mut fingerprints = vec![hex(key.fingerprint().as_bytes())];
                fingerprints.extend(
                    key.public_subkeys
                        .iter()
                        .map(|s| hex(s.fingerprint().as_bytes())),
                );
                PgpCert { fingerprints, key }
            })
            .collect())
    }

    #[cfg(not(feature = "pgp"))]
    pub fn parse_all(_bytes: &[u8], _source_name: &str) -> Result<Vec<PgpCert>, PgpError> {
        Err(PgpError::NotBuilt)
    }

    /// Encrypts `payload` (the data key) to this key, armored as sops stores it (`enc`, no
    /// trailing newline). The newest subkey allowed to encrypt is used, as gpg picks it.
    #[cfg(feature = "pgp")]
    pub fn wrap(&self, payload: &[u8]) -> Result<String, PgpError> {
        use pgp::composed::{ArmorOptions, MessageBuilder};
        use pgp::crypto::sym::SymmetricKeyAlgorithm;
        use pgp::packet::SignatureType;
        use pgp::types::KeyDetails;

        let fingerprint = self.fingerprint().to_owned();
        let encrypt_err = |e: pgp::errors::Error| PgpError::Encrypt {
            fingerprint: fingerprint.clone(),
            reason: e.to_string(),
        };
        let usable = |sigs: &[pgp::packet::Signature]| {
            !sigs
                .iter()
                .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation))
                && sigs.iter().all(|s| {
                    let flags = s.key_flags();
                    // No flags at all: the algorithm decides (old keys carry none).
                    flags == Default::default() || flags.encrypt_comms() || flags.encrypt_storage()
                })
        };
        let subkey = self
            .key
            .public_subkeys
            .iter()
            .filter(|s| s.algorithm().can_encrypt() && usable(&s.signatures))
            .max_by_key(|s| s.created_at().as_secs());
        let mut rng = rand::rngs::OsRng;
        let mut builder = MessageBuilder::from_bytes("", payload.to_vec())
            .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        match subkey {
            Some(sub) => builder.encrypt_to_key(&mut rng, sub),
            None if self.key.algorithm().can_encrypt() => {
                builder.encrypt_to_key(&mut rng, &self.key)
            }
            None => return Err(PgpError::NoEncryptionKey { fingerprint }),
        }
        .map_err(encrypt_err)?;
        let armored = builder
            .to_armored_string(rng, ArmorOptions::default())
            .map_err(encrypt_err)?;
        Ok(armored.trim_end_matches('\n').to_owned())
    }

    #[cfg(not(feature = "pgp"))]
    pub fn wrap(&self, _payload: &[u8]) -> Result<String, PgpError> {
        Err(PgpError::NotBuilt)
    }
}
