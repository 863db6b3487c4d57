//! Per-value encryption: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` (docs/sops-format.md §3).

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::generic_array::{ArrayLength, GenericArray};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::secret::{DataKey, SecretBytes};

/// sops' IV length: 256 bits, not GCM's usual 96.
pub const IV_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// The `type:` of an encrypted value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    Str,
    Int,
    Float,
    Bool,
    Time,
    Comment,
    Bytes,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Time => "time",
            ValueType::Comment => "comment",
            ValueType::Bytes => "bytes",
        }
    }

    fn parse(s: &str) -> Option<ValueType> {
        Some(match s {
            "str" => ValueType::Str,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "bool" => ValueType::Bool,
            "time" => ValueType::Time,
            "comment" => ValueType::Comment,
            "bytes" => ValueType::Bytes,
            _ => return None,
        })
    }
}

/// Why an `ENC[…]` value could not be read or opened. Never carries the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    /// The text does not have the `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` shape.
    #[error("not a valid ENC[AES256_GCM,…] value (truncated or hand-edited?)")]
    Malformed,
    /// One of the base64 fields does not decode.
    #[error("the {0} field of the ENC[…] value is not valid base64")]
    BadBase64(&'static str),
    /// The `type:` is not one sops knows.
    #[error("unknown value type in ENC[…]: {0:?}")]
    UnknownType(String),
    /// The IV or tag has a length AES-GCM cannot use.
    #[error("the {0} of the ENC[…] value has an unsupported length")]
    BadLength(&'static str),
    /// AES-GCM authentication failed: wrong data key, a tampered value, or a value moved to
    /// another key path.
    #[error("authentication failed (wrong key, tampered value, or value moved to another key)")]
    Authentication,
}

/// A parsed `ENC[…]` value.
pub struct Encrypted {
    pub data: Vec<u8>,
    pub iv: Vec<u8>,
    pub tag: Vec<u8>,
    pub value_type: ValueType,
}

impl Encrypted {
    /// Parses with sops' regex `^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`
    /// (anchored at the start only, greedy): fields are split at the *last* separators.
    pub fn parse(text: &str) -> Result<Encrypted, CipherError> {
        let rest = text
            .strip_prefix("ENC[AES256_GCM,data:")
            .ok_or(CipherError::Malformed)?;
        let close = rest.rfind(']').ok_or(CipherError::Malformed)?;
        let rest = &rest[..close];
        let (rest, ty) = rest.rsplit_once(",type:").ok_or(CipherError::Malformed)?;
        let (rest, tag) = rest.rsplit_once(",tag:").ok_or(CipherError::Malformed)?;
        let (data, iv) = rest.rsplit_once(",iv:").ok_or(CipherError::Malformed)?;
        if data.is_empty() || iv.is_empty() || tag.is_empty() || ty.is_empty() {
            return Err(CipherError::Malformed);
        }
        let value_type =
            ValueType::parse(ty).ok_or_else(|| CipherError::UnknownType(ty.to_owned()))?;
        Ok(Encrypted {
            data: B64
                .decode(data)
                .map_err(|_| CipherError::BadBase64("data"))?,
            iv: B64.decode(iv).map_err(|_| CipherError::BadBase64("iv"))?,
            tag: B64.decode(tag).map_err(|_| CipherError::BadBase64("tag"))?,
            value_type,
        })
    }

    pub fn to_text(&self) -> String {
        // Written in place: a large value's base64 is not built and then copied again.
        let mut s = String::with_capacity(self.data.len() * 4 / 3 + 100);
        s.push_str("ENC[AES256_GCM,data:");
        B64.encode_string(&self.data, &mut s);
        s.push_str(",iv:");
        B64.encode_string(&self.iv, &mut s);
        s.push_str(",tag:");
        B64.encode_string(&self.tag, &mut s);
        s.push_str(",type:");
        s.push_str(self.value_type.as_str());
        s.push(']');
        s
    }
}

/// Encrypts `plaintext` under the data key with the given IV and AAD.
pub fn encrypt(
    key: &DataKey,
    plaintext: &[u8],
    aad: &[u8],
    iv: &[u8; IV_LEN],
    value_type: ValueType,
) -> Encrypted {
    let cipher = AesGcm::<Aes256, U32>::new(GenericArray::from_slice(key.expose()));
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(iv), aad, &mut buf)
        .expect("AES-GCM encryption of an in-memory value cannot fail below 64 GiB");
    Encrypted {
        data: buf,
        iv: iv.to_vec(),
        tag: tag.to_vec(),
        value_type,
    }
}

/// Decrypts and authenticates; the IV length is whatever the file has (sops accepts any).
pub fn decrypt(key: &DataKey, enc: &Encrypted, aad: &[u8]) -> Result<SecretBytes, CipherError> {
    if enc.tag.len() != TAG_LEN {
        return Err(CipherError::BadLength("tag"));
    }
    match enc.iv.len() {
        32 => open::<U32>(key, enc, aad),
        12 => open::<U12>(key, enc, aad),
        16 => open::<U16>(key, enc, aad),
        _ => Err(CipherError::BadLength("iv")),
    }
}

fn open<N: ArrayLength<u8>>(
    key: &DataKey,
    enc: &Encrypted,
    aad: &[u8],
) -> Result<SecretBytes, CipherError> {
    let cipher = AesGcm::<Aes256, N>::new(GenericArray::from_slice(key.expose()));
    // aes-gcm checks the tag before it decrypts, so on failure `plain` is still ciphertext.
    let mut plain = enc.data.clone();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(&enc.iv),
            aad,
            &mut plain,
            GenericArray::from_slice(&enc.tag),
        )
        .map_err(|_| CipherError::Authentication)?;
    Ok(SecretBytes::new(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(start: u8) -> [u8; 32] {
        std::array::from_fn(|i| start + i as u8)
    }

    /// Spec §16.2 vectors.
    #[test]
    fn spec_vectors() {
        let key = DataKey::from_bytes(seq(0));
        let cases: [(&[u8], ValueType, &str, u8, &str); 4] = [
            (
                b"hunter2",
                ValueType::Str,
                "stringData:password:",
                0x20,
                "ENC[AES256_GCM,data:f7SfPOh95A==,iv:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,tag:WBPE6k3mfjV0rMrvCs5GEw==,type:str]",
            ),
            (
                b"5432",
                ValueType::Int,
                "stringData:port:",
                0x40,
                "ENC[AES256_GCM,data:UU8AVg==,iv:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=,tag:Iyps90WiQgGLeISTv/Ew7Q==,type:int]",
            ),
            (
                b"True",
                ValueType::Bool,
                "stringData:enabled:",
                0x60,
                "ENC[AES256_GCM,data:Pwv3GA==,iv:YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8=,tag:Lx+c3+Vy1WXhnxDo+WaTqw==,type:bool]",
            ),
            (
                b" db password",
                ValueType::Comment,
                "stringData:",
                0xa0,
                "ENC[AES256_GCM,data:idyQprLebbac+WR1,iv:oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=,tag:RJ2GnYN8avslDYUWFzAF4Q==,type:comment]",
            ),
        ];
        for (plain, ty, aad, iv, want) in cases {
            let enc = encrypt(&key, plain, aad.as_bytes(), &seq(iv), ty);
            assert_eq!(enc.to_text(), want);
            let parsed = Encrypted::parse(want).unwrap();
            assert_eq!(parsed.value_type, ty);
            assert_eq!(
                decrypt(&key, &parsed, aad.as_bytes()).unwrap().expose(),
                plain
            );
            assert_eq!(
                decrypt(&key, &parsed, b"other:").err(),
                Some(CipherError::Authentication)
            );
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "ENC[AES256_GCM,data:f7SfPOh95A==,iv:ICEi",
            "ENC[AES256_GCM,data:,iv:AA==,tag:AA==,type:str]",
            "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==]",
            "ENC[AES128_GCM,data:AA==,iv:AA==,tag:AA==,type:str]",
            "plain",
        ] {
            assert_eq!(
                Encrypted::parse(bad).err(),
                Some(CipherError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            Encrypted::parse("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:int64]").err(),
            Some(CipherError::UnknownType("int64".into()))
        );
        assert_eq!(
            Encrypted::parse("ENC[AES256_GCM,data:A!==,iv:AA==,tag:AA==,type:str]").err(),
            Some(CipherError::BadBase64("data"))
        );
    }
}
