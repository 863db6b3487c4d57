//! Secret-holding types: zeroized on drop, redacted in `Debug`, never `Display`ed.
//!
//! Thin newtypes over the `secrecy` crate (the one age already uses for its identities), so
//! every secret in the process is held the same way. The newtypes keep the crate's own API
//! (`new`, `expose`, …) and add what `secrecy` leaves out: equality and hashing by content,
//! cloning, and buffers that grow without leaving copies behind.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use zeroize::Zeroize;

/// Secret bytes (a data key, a decrypted value, an identities file). The only way in is
/// [`SecretBytes::expose`].
///
/// Held as a boxed `Vec` (not a boxed slice): turning a `Vec` into a slice may reallocate and
/// leave the old buffer unzeroized, and a `Vec` can be grown in place by
/// [`SecretBytes::extend_from_slice`], which never leaves a stale copy when it reallocates.
pub struct SecretBytes(SecretBox<Vec<u8>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(SecretBox::new(Box::new(bytes)))
    }

    /// An empty buffer with room for `capacity` bytes, for builders that know their size.
    pub fn with_capacity(capacity: usize) -> Self {
        SecretBytes::new(Vec::with_capacity(capacity))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    pub fn len(&self) -> usize {
        self.expose().len()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// Appends `bytes`. When the buffer must grow, the new one is allocated here and the old
    /// one zeroized before it is freed (`Vec`'s own growth would free it with the secret in it).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        self.0.expose_secret_mut().extend_from_slice(bytes);
    }

    /// Appends one byte (see [`SecretBytes::extend_from_slice`]).
    pub fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    /// Makes room for `additional` more bytes without leaving an unzeroized copy behind.
    fn reserve(&mut self, additional: usize) {
        let v = self.0.expose_secret_mut();
        let need = v.len().saturating_add(additional);
        if need <= v.capacity() {
            return;
        }
        let mut grown = Vec::with_capacity(need.max(v.capacity().saturating_mul(2)).max(64));
        grown.extend_from_slice(v);
        // `Vec::zeroize` clears the whole allocation, spare capacity included.
        let mut old = std::mem::replace(v, grown);
        old.zeroize();
    }

    /// Reads `reader` to its end straight into a zeroizing buffer (`size_hint`: the expected
    /// length, e.g. a file's size, so that the usual case needs one allocation). Nothing of the
    /// content is left in memory that is freed without being zeroized.
    pub fn read_from(mut reader: impl Read, size_hint: usize) -> io::Result<SecretBytes> {
        // One spare byte so that reading a file of exactly `size_hint` bytes sees EOF without
        // growing the buffer.
        let mut out = SecretBytes::with_capacity(size_hint.saturating_add(1).min(1 << 24));
        loop {
            if out.len() == out.0.expose_secret().capacity() {
                out.reserve(4096);
            }
            let v = out.0.expose_secret_mut();
            let filled = v.len();
            let capacity = v.capacity();
            // No unsafe code: read into zeroed spare capacity, then drop what was not filled.
            v.resize(capacity, 0);
            let read = loop {
                match reader.read(&mut v[filled..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        v.truncate(filled);
                        return Err(e);
                    }
                }
            };
            v.truncate(filled + read);
            if read == 0 {
                return Ok(out);
            }
        }
    }
}

impl SecretBytes {
    /// Reads a whole file (an identities file) into a zeroizing buffer sized from the file's
    /// length. The caller names the path in its error (see `file_io`).
    pub fn read_file(path: &Path) -> io::Result<SecretBytes> {
        let file = std::fs::File::open(path)?;
        let hint = file.metadata().map(|m| m.len() as usize).unwrap_or(0);
        SecretBytes::read_from(file, hint)
    }
}

impl Clone for SecretBytes {
    fn clone(&self) -> Self {
        let mut copy = SecretBytes::with_capacity(self.len());
        copy.extend_from_slice(self.expose());
        copy
    }
}

impl Default for SecretBytes {
    fn default() -> Self {
        SecretBytes::new(Vec::new())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretBytes {}

impl std::hash::Hash for SecretBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expose().hash(state);
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes::new(v)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.len())
    }
}

/// A secret UTF-8 string (a password, a decrypted leaf, identities from the environment).
///
/// A boxed `String` rather than `secrecy::SecretString` (a boxed `str`) so that in-place
/// builders keep a `&mut String` ([`SecretString::expose_mut`]).
pub struct SecretString(SecretBox<String>);

impl SecretString {
    pub fn new(s: String) -> Self {
        SecretString(SecretBox::new(Box::new(s)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Mutable access for in-place builders (the YAML parser folds scalars into it).
    pub fn expose_mut(&mut self) -> &mut String {
        self.0.expose_secret_mut()
    }

    /// The same bytes as [`SecretBytes`], moved (not copied).
    pub fn into_bytes(mut self) -> SecretBytes {
        let bytes = std::mem::take(self.0.expose_secret_mut()).into_bytes();
        SecretBytes::new(bytes)
    }

    /// Checks that `bytes` are UTF-8 and moves them into a [`SecretString`] (no copy); on
    /// failure the bytes are zeroized.
    pub fn from_utf8(bytes: SecretBytes) -> Result<SecretString, std::str::Utf8Error> {
        let mut bytes = bytes;
        let v = std::mem::take(bytes.0.expose_secret_mut());
        match String::from_utf8(v) {
            Ok(s) => Ok(SecretString::new(s)),
            Err(e) => {
                let error = e.utf8_error();
                e.into_bytes().zeroize();
                Err(error)
            }
        }
    }
}

impl Clone for SecretString {
    fn clone(&self) -> Self {
        // Exactly sized, so filling it never reallocates.
        let mut copy = String::with_capacity(self.expose().len());
        copy.push_str(self.expose());
        SecretString::new(copy)
    }
}

impl Default for SecretString {
    fn default() -> Self {
        SecretString::new(String::new())
    }
}

impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for SecretString {}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([REDACTED])")
    }
}

/// The 32-byte data key of a SOPS file.
pub struct DataKey(SecretBox<[u8; 32]>);

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut bytes = bytes;
        let key = DataKey(SecretBox::new(Box::new(bytes)));
        bytes.zeroize();
        key
    }

    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        DataKey::from_bytes(*self.expose())
    }
}

impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::from("hunter2");
        let b = SecretBytes::new(b"hunter2".to_vec());
        let k = DataKey::from_bytes([7; 32]);
        let all = format!("{s:?} {b:?} {k:?}");
        assert!(!all.contains("hunter2"), "{all}");
        assert!(!all.contains("7, 7"), "{all}");
    }

    #[test]
    fn the_types_are_secrecy_boxes() {
        // Held by `secrecy` (zeroize on drop), not by a hand-written wrapper.
        fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let b = SecretBytes::new(b"x".to_vec());
        let s = SecretString::from("x");
        let k = DataKey::from_bytes([1; 32]);
        zeroize_on_drop(&b.0);
        zeroize_on_drop(&s.0);
        zeroize_on_drop(&k.0);
    }

    #[test]
    fn growing_keeps_content_and_equality() {
        let mut b = SecretBytes::with_capacity(1);
        for i in 0..1000u32 {
            b.extend_from_slice(&i.to_le_bytes());
        }
        b.push(9);
        assert_eq!(b.len(), 4001);
        assert_eq!(&b.expose()[4..8], &1u32.to_le_bytes());
        assert_eq!(b.clone(), b);
        assert_ne!(b, SecretBytes::default());
        let s = SecretString::from("pässword");
        assert_eq!(s.clone(), s);
        assert_eq!(s.clone().into_bytes().expose(), "pässword".as_bytes());
        assert_eq!(DataKey::from_bytes([3; 32]).clone().expose(), &[3; 32]);
    }

    #[test]
    fn reads_to_the_end_whatever_the_hint() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for hint in [0, 1, 100, 9_999, 10_000, 20_000] {
            let got = SecretBytes::read_from(&data[..], hint).unwrap();
            assert_eq!(got.expose(), &data[..], "hint {hint}");
        }
        // A reader that returns a few bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(3).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let got = SecretBytes::read_from(Trickle(&data), 5).unwrap();
        assert_eq!(got.expose(), &data[..]);
    }

    #[test]
    fn utf8_is_checked_without_copying() {
        let s = SecretString::from_utf8(SecretBytes::new(b"abc".to_vec())).unwrap();
        assert_eq!(s.expose(), "abc");
        assert!(SecretString::from_utf8(SecretBytes::new(vec![0xff, 0xfe])).is_err());
    }
}
