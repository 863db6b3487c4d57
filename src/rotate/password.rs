//! New passwords from the operating system's CSPRNG, by policy.

use rand::Rng;
use rand::rngs::OsRng;

use crate::rotate::plan::{Charset, PasswordPolicy};
use crate::secret::SecretString;

fn alphabet(c: Charset) -> &'static [u8] {
    match c {
        Charset::UrlSafe => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        Charset::Alphanumeric => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        Charset::Symbols => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~",
    }
}

/// Uniform choice per character (rejection sampling inside `gen_range`).
pub fn generate(policy: &PasswordPolicy) -> SecretString {
    let chars = alphabet(policy.charset);
    let mut rng = OsRng;
    let mut s = String::with_capacity(policy.length);
    for _ in 0..policy.length {
        s.push(chars[rng.gen_range(0..chars.len())] as char);
    }
    SecretString::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_charset_and_uniqueness() {
        let p = PasswordPolicy {
            length: 32,
            charset: Charset::UrlSafe,
        };
        let a = generate(&p);
        let b = generate(&p);
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a.expose(), b.expose());
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
