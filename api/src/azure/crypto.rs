//! Encryption of personal access tokens at rest: AES-256-GCM (authenticated) under the server's key.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Seals and opens tokens with the server key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Why a key or a sealed token is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("LATHE_SECRET_KEY must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("a stored token cannot be decrypted with this server key")]
    Undecryptable,
}

impl Sealer {
    /// A sealer from a base64-encoded 32-byte key.
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// Encrypts a token with a fresh random nonce: `(nonce, ciphertext)`.
    pub fn seal(&self, plaintext: &str) -> (Vec<u8>, Vec<u8>) {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .expect("AES-GCM encryption of a short token cannot fail");
        (nonce.to_vec(), ciphertext)
    }

    /// Decrypts a token sealed with the same key.
    pub fn open(&self, nonce: &[u8], ciphertext: &[u8]) -> Result<String, SealError> {
        if nonce.len() != 12 {
            return Err(SealError::Undecryptable);
        }
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SealError::Undecryptable)?;
        String::from_utf8(plaintext).map_err(|_| SealError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_is_not_in_the_ciphertext() {
        let sealer = Sealer::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let (nonce, ciphertext) = sealer.seal("my-secret-pat");
        assert!(!ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(sealer.open(&nonce, &ciphertext).unwrap(), "my-secret-pat");
        let other = Sealer::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(&nonce, &ciphertext).is_err());
        let mut tampered = ciphertext.clone();
        tampered[0] ^= 1;
        assert!(sealer.open(&nonce, &tampered).is_err());
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}
