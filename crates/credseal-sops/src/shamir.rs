//! Shamir secret sharing over GF(2^8), as sops (HashiCorp Vault's scheme) uses for key groups.
//! Only combination is implemented: credseal reads multi-group files but writes one group.

use crate::secret::SecretBytes;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("at least two shares are needed")]
    TooFew,
    #[error("shares have different lengths")]
    LengthMismatch,
    #[error("two shares have the same x coordinate")]
    DuplicateX,
}

/// Multiplication in GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    r
}

fn inverse(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8).
    let mut result = 1u8;
    let mut base = a;
    let mut e = 254u32;
    while e > 0 {
        if e & 1 != 0 {
            result = mul(result, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    result
}

/// Combines shares (each: secret-length bytes then one x byte) by Lagrange interpolation at 0.
pub fn combine(shares: &[SecretBytes]) -> Result<SecretBytes, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::TooFew);
    }
    let len = shares[0].len();
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return Err(ShamirError::LengthMismatch);
    }
    let xs: Vec<u8> = shares.iter().map(|s| s.expose()[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if xs[..i].contains(x) {
            return Err(ShamirError::DuplicateX);
        }
    }
    let mut secret = vec![0u8; len - 1];
    for (byte, out) in secret.iter_mut().enumerate() {
        let mut acc = 0u8;
        for (i, share) in shares.iter().enumerate() {
            let mut basis = 1u8;
            for (j, xj) in xs.iter().enumerate() {
                if i != j {
                    // l_i(0) = prod x_j / (x_j - x_i); subtraction is xor.
                    basis = mul(basis, mul(*xj, inverse(xj ^ xs[i])));
                }
            }
            acc ^= mul(share.expose()[byte], basis);
        }
        *out = acc;
    }
    Ok(SecretBytes::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits like Vault's `shamir.Split` with a fixed polynomial, for the test only.
    fn split(secret: &[u8], coeffs: &[u8], n: u8) -> Vec<SecretBytes> {
        (1..=n)
            .map(|x| {
                let mut share: Vec<u8> = secret
                    .iter()
                    .map(|&s| {
                        // s + c1*x + c2*x^2 … (Horner)
                        let mut acc = 0u8;
                        for &c in coeffs.iter().rev() {
                            acc = mul(acc, x) ^ c;
                        }
                        mul(acc, x) ^ s
                    })
                    .collect();
                share.push(x);
                SecretBytes::new(share)
            })
            .collect()
    }

    #[test]
    fn any_threshold_subset_recovers_the_secret() {
        let secret: Vec<u8> = (0..32).collect();
        let shares = split(&secret, &[0x53, 0xca], 4);
        for pick in [[0, 1, 2], [1, 2, 3], [0, 2, 3]] {
            let subset: Vec<SecretBytes> = pick.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(combine(&subset).unwrap().expose(), &secret[..]);
        }
        assert_eq!(combine(&shares[..1]).unwrap_err(), ShamirError::TooFew);
        assert_eq!(inverse(0x53), 0xca, "AES field: 0x53 * 0xca = 1");
    }
}
