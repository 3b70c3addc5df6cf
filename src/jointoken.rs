//! Join tokens: short-lived EdDSA JWTs that the sidecar issues and a broadcast instance checks
//! before it answers an offer. The sidecar publishes its public keys as a JWKS; broadcast
//! instances fetch it. Verification is pure (time is an input) so every rule is unit-tested.

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const ISSUER: &str = "firesfu-sidecar";
pub const AUDIENCE: &str = "firesfu-broadcast";
/// No join token lives longer than this, whatever its `exp` says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub publish: bool,
    pub subscribe: bool,
}

impl Grants {
    /// What a session may do when admission is open (development).
    pub const ALL: Grants = Grants {
        publish: true,
        subscribe: true,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    pub iss: String,
    pub aud: String,
    /// The participant's identity (their Firebase uid).
    pub sub: String,
    pub room: String,
    pub name: String,
    pub grants: Grants,
    pub iat: i64,
    pub exp: i64,
    /// Unique per token: a token admits one session only.
    pub jti: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the join token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the join token is signed with an unknown key")]
    UnknownKey,
    #[error("the join token's signature, issuer or audience is not valid: {0}")]
    Invalid(String),
    #[error("the join token expired")]
    Expired,
    #[error("the join token lives longer than {} minutes", MAX_LIFETIME.as_secs() / 60)]
    TooLong,
    #[error("the join token is for room {token_room:?}, not {room:?}")]
    WrongRoom { token_room: String, room: String },
    #[error("the join token does not grant {0}")]
    Forbidden(&'static str),
}

/// The sidecar's signing key.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot use the join-token key: {0}")]
pub struct KeyError(String);

impl SigningKey {
    /// A fresh key (development: tokens die with the process).
    pub fn generate() -> Result<SigningKey, KeyError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeyError(e.to_string()))?;
        SigningKey::from_pkcs8_der(pkcs8.as_ref())
    }

    /// From a PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| KeyError(e.to_string()))?;
        SigningKey::from_pkcs8_der(&der)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| KeyError(e.to_string()))?;
        let public = pair.public_key().as_ref().to_vec();
        // The key id is derived from the public key, so every instance sharing a key agrees.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &public);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(SigningKey {
            kid,
            encoding: EncodingKey::from_ed_der(der),
            public,
        })
    }

    pub fn issue(&self, claims: &JoinClaims) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| KeyError(e.to_string()))
    }

    /// The JWKS document (RFC 7517, OKP key per RFC 8037).
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.kid, "x": URL_SAFE_NO_PAD.encode(&self.public),
        }]})
    }
}

/// Public keys a broadcast instance accepts, by key id.
#[derive(Clone, Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, DecodingKey>,
}

impl VerifyingKeys {
    pub fn from_jwks(jwks: &Value) -> Result<VerifyingKeys, KeyError> {
        let mut keys = HashMap::new();
        for key in jwks["keys"]
            .as_array()
            .ok_or_else(|| KeyError("no `keys` array".into()))?
        {
            if key["kty"] != "OKP" || key["crv"] != "Ed25519" {
                continue;
            }
            let (Some(kid), Some(x)) = (key["kid"].as_str(), key["x"].as_str()) else {
                continue;
            };
            let decoding =
                DecodingKey::from_ed_components(x).map_err(|e| KeyError(e.to_string()))?;
            keys.insert(kid.to_owned(), decoding);
        }
        if keys.is_empty() {
            return Err(KeyError("the JWKS has no Ed25519 key".into()));
        }
        Ok(VerifyingKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a token for `room` at `now` (Unix seconds): signature, issuer, audience, expiry,
    /// lifetime and room. Grants are checked against the offer by [`check_grants`].
    pub fn verify(&self, token: &str, room: &str, now: i64) -> Result<JoinClaims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        // Time is checked below against the injected clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<JoinClaims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::Base64(_) => {
                    TokenError::Malformed(e.to_string())
                }
                _ => TokenError::Invalid(e.to_string()),
            })?
            .claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.exp - claims.iat > MAX_LIFETIME.as_secs() as i64
            || claims.exp - now > MAX_LIFETIME.as_secs() as i64
        {
            return Err(TokenError::TooLong);
        }
        if claims.room != room {
            return Err(TokenError::WrongRoom {
                token_room: claims.room,
                room: room.to_owned(),
            });
        }
        Ok(claims)
    }
}

/// An offer that publishes needs the publish grant; one with receive slots the subscribe one.
pub fn check_grants(grants: Grants, publishes: bool, subscribes: bool) -> Result<(), TokenError> {
    if publishes && !grants.publish {
        return Err(TokenError::Forbidden("publish"));
    }
    if subscribes && !grants.subscribe {
        return Err(TokenError::Forbidden("subscribe"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &str, iat: i64, exp: i64) -> JoinClaims {
        JoinClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "uid-1".into(),
            room: room.into(),
            name: "Ada".into(),
            grants: Grants {
                publish: true,
                subscribe: true,
            },
            iat,
            exp,
            jti: "j1".into(),
        }
    }

    fn keys(k: &SigningKey) -> VerifyingKeys {
        VerifyingKeys::from_jwks(&k.jwks()).unwrap()
    }

    #[test]
    fn a_fresh_token_verifies_for_its_room() {
        let k = SigningKey::generate().unwrap();
        let t = k.issue(&claims("r1", 1000, 1300)).unwrap();
        assert_eq!(keys(&k).verify(&t, "r1", 1001).unwrap().name, "Ada");
    }

    #[test]
    fn expiry_room_and_lifetime_are_enforced() {
        let k = SigningKey::generate().unwrap();
        let v = keys(&k);
        let t = k.issue(&claims("r1", 1000, 1300)).unwrap();
        assert_eq!(v.verify(&t, "r1", 1300), Err(TokenError::Expired));
        assert!(matches!(
            v.verify(&t, "r2", 1100),
            Err(TokenError::WrongRoom { .. })
        ));
        let long = k.issue(&claims("r1", 1000, 1000 + 3600)).unwrap();
        assert_eq!(v.verify(&long, "r1", 1001), Err(TokenError::TooLong));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let k = SigningKey::generate().unwrap();
        let t = k.issue(&claims("r1", 1000, 1300)).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        body["room"] = json!("r2");
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap());
        let tampered = parts.join(".");
        assert!(matches!(
            keys(&k).verify(&tampered, "r2", 1001),
            Err(TokenError::Invalid(_))
        ));

        let other = SigningKey::generate().unwrap();
        let foreign = other.issue(&claims("r1", 1000, 1300)).unwrap();
        assert_eq!(
            keys(&k).verify(&foreign, "r1", 1001),
            Err(TokenError::UnknownKey)
        );
        assert!(matches!(
            keys(&k).verify("not.a.jwt", "r1", 1001),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn grants_must_cover_the_offer() {
        let listen_only = Grants {
            publish: false,
            subscribe: true,
        };
        assert_eq!(
            check_grants(listen_only, true, true),
            Err(TokenError::Forbidden("publish"))
        );
        assert_eq!(check_grants(listen_only, false, true), Ok(()));
        let speak_only = Grants {
            publish: true,
            subscribe: false,
        };
        assert_eq!(
            check_grants(speak_only, true, true),
            Err(TokenError::Forbidden("subscribe"))
        );
    }

    #[test]
    fn keys_load_from_pem_with_a_stable_id() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
        let a = SigningKey::from_pem(pem).unwrap();
        let b = SigningKey::from_pem(pem).unwrap();
        assert_eq!(a.jwks(), b.jwks());
        let t = a.issue(&claims("r", 10, 20)).unwrap();
        assert!(keys(&b).verify(&t, "r", 11).is_ok());
    }
}
