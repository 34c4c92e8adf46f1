//! Device tokens: minted by backends (or `natter token`), checked by the edge at HELLO.
//!
//! A token is ASCII: `v1.<key id>.<payload>.<signature>`, where `payload` is the unpadded
//! base64url of the JSON `{"u":user,"d":device,"exp":expiry_ms}` and `signature` is the
//! unpadded base64url of HMAC-SHA256(secret of `key id`, `v1.<key id>.<payload>`). Carrying the
//! key id lets the edge verify against a set of keys, so a new key can sign while tokens signed
//! with the old one stay valid until it is removed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::TokenKey;

const VERSION: &str = "v1";

/// The identity a valid token proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    #[serde(rename = "u")]
    pub user: String,
    /// The device id.
    #[serde(rename = "d")]
    pub device: String,
    /// Expiry, in milliseconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

/// Why a token was refused; each maps to the wire code sent before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Malformed, signed with an unknown key, wrongly signed, or naming invalid ids.
    #[error("token is not valid")]
    Unauthenticated,
    /// Well signed but past its expiry.
    #[error("token has expired")]
    Expired,
}

impl AuthError {
    /// The ERROR code for this refusal.
    pub fn code(self) -> natter_codec::ErrorCode {
        match self {
            Self::Unauthenticated => natter_codec::ErrorCode::UNAUTHENTICATED,
            Self::Expired => natter_codec::ErrorCode::TOKEN_EXPIRED,
        }
    }
}

/// The set of keys tokens may be signed with; the first one signs new tokens.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    keys: Vec<TokenKey>,
}

impl TokenKeys {
    /// A key set; `None` when it is empty, since then no token could ever be valid.
    pub fn new(keys: Vec<TokenKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Signs a token for `user` on `device`, valid until `expires_at` (ms since the epoch).
    pub fn mint(&self, user: &str, device: &str, expires_at: u64) -> String {
        let claims = Claims {
            user: user.into(),
            device: device.into(),
            expires_at,
        };
        let key = &self.keys[0];
        // Serializing a struct of strings and an integer cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}.{}", key.id, URL_SAFE_NO_PAD.encode(json));
        let signature = URL_SAFE_NO_PAD.encode(sign(&key.secret, &signed));
        format!("{signed}.{signature}")
    }

    /// Checks a token's signature, ids and expiry at `now_ms`.
    pub fn verify(&self, token: &[u8], now_ms: u64) -> Result<Claims, AuthError> {
        let token = std::str::from_utf8(token).map_err(|_| AuthError::Unauthenticated)?;
        let (signed, signature) = token.rsplit_once('.').ok_or(AuthError::Unauthenticated)?;
        let mut parts = signed.splitn(3, '.');
        let (Some(VERSION), Some(key_id), Some(payload)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Unauthenticated);
        };
        let key = self
            .keys
            .iter()
            .find(|key| key.id == key_id)
            .ok_or(AuthError::Unauthenticated)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Unauthenticated)?;
        let mut mac = mac(&key.secret);
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::Unauthenticated)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Unauthenticated)?;
        let claims: Claims =
            serde_json::from_slice(&json).map_err(|_| AuthError::Unauthenticated)?;
        let ids_valid = natter_codec::ids::is_valid_user_id(&claims.user)
            && natter_codec::ids::is_valid_device_id(&claims.device);
        if !ids_valid {
            return Err(AuthError::Unauthenticated);
        }
        if claims.expires_at <= now_ms {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

fn sign(secret: &str, signed: &str) -> Vec<u8> {
    let mut mac = mac(secret);
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, secret: &str) -> TokenKey {
        TokenKey {
            id: id.into(),
            secret: secret.into(),
        }
    }

    fn keys(list: &[(&str, &str)]) -> TokenKeys {
        TokenKeys::new(list.iter().map(|(id, s)| key(id, s)).collect()).unwrap()
    }

    #[test]
    fn a_minted_token_verifies() {
        let keys = keys(&[("k1", "secret")]);
        let token = keys.mint("alice", "laptop", 2_000);
        let claims = keys.verify(token.as_bytes(), 1_000).unwrap();
        assert_eq!(claims.user, "alice");
        assert_eq!(claims.device, "laptop");
        assert_eq!(claims.expires_at, 2_000);
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let keys = keys(&[("k1", "secret")]);
        let token = keys.mint("alice", "laptop", 2_000);
        assert_eq!(
            keys.verify(token.as_bytes(), 2_000),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn a_wrong_signature_is_unauthenticated() {
        let ours = keys(&[("k1", "secret")]);
        let theirs = keys(&[("k1", "other secret")]);
        let token = theirs.mint("alice", "laptop", 2_000);
        assert_eq!(
            ours.verify(token.as_bytes(), 0),
            Err(AuthError::Unauthenticated)
        );

        // Changing the payload invalidates the signature.
        let good = ours.mint("alice", "laptop", 2_000);
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"{"u":"bob","d":"laptop","exp":2000}"#);
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = &forged_payload;
        let forged = parts.join(".");
        assert_eq!(
            ours.verify(forged.as_bytes(), 0),
            Err(AuthError::Unauthenticated)
        );
    }

    #[test]
    fn garbage_is_unauthenticated() {
        let keys = keys(&[("k1", "secret")]);
        for token in [
            &b""[..],
            b"v1",
            b"v1.k1.x.y",
            b"v2.k1.e30.AAAA",
            b"\xff\xfe",
        ] {
            assert_eq!(
                keys.verify(token, 0),
                Err(AuthError::Unauthenticated),
                "{token:?}"
            );
        }
    }

    #[test]
    fn rotation_accepts_old_and_new_keys_until_the_old_is_removed() {
        let old = keys(&[("k1", "old")]);
        let rotated = keys(&[("k2", "new"), ("k1", "old")]);
        let retired = keys(&[("k2", "new")]);
        let old_token = old.mint("alice", "phone", 10);
        let new_token = rotated.mint("alice", "phone", 10);
        assert!(new_token.starts_with("v1.k2."));
        assert!(rotated.verify(old_token.as_bytes(), 0).is_ok());
        assert!(rotated.verify(new_token.as_bytes(), 0).is_ok());
        assert!(retired.verify(new_token.as_bytes(), 0).is_ok());
        assert_eq!(
            retired.verify(old_token.as_bytes(), 0),
            Err(AuthError::Unauthenticated)
        );
    }

    #[test]
    fn invalid_ids_are_refused_even_when_signed() {
        let keys = keys(&[("k1", "secret")]);
        let token = keys.mint("al ice", "laptop", 10);
        assert_eq!(
            keys.verify(token.as_bytes(), 0),
            Err(AuthError::Unauthenticated)
        );
    }
}
