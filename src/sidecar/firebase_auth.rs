//! How the browser signs in to Firestore as the user: a Firebase custom token (production) or
//! the emulator's mock user token (development).
//!
//! A custom token is an RS256 JWT issued by a service account. Two ways to sign it:
//! - a service-account key file (`FIRESFU_FIREBASE_SERVICE_ACCOUNT`), signed locally;
//! - no key file at all (`FIRESFU_FIREBASE_SIGNING_ACCOUNT`): the workload's own Google identity
//!   (Application Default Credentials; Workload Identity on GKE) signs through Google's
//!   `signBlob` API, as the Firebase Admin SDKs do. The account needs
//!   `roles/iam.serviceAccountTokenCreator` on itself.

use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::problem::Problem;

const CUSTOM_TOKEN_AUDIENCE: &str =
    "https://identitytoolkit.googleapis.com/google.identity.identitytoolkit.v1.IdentityToolkit";
/// Firebase accepts custom tokens for at most an hour.
const LIFETIME_SECS: i64 = 3600;

/// How the browser signs in to Firestore as the user.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirebaseCredentials {
    pub uid: String,
    /// For `signInWithCustomToken` (production).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_token: Option<String>,
    /// Development: use the emulator's mock user token for `uid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulator: Option<bool>,
}

pub enum FirebaseTokens {
    /// Development: the emulator accepts a mock token naming the uid
    /// (`connectFirestoreEmulator(db, host, port, {mockUserToken: {user_id: uid}})`).
    Emulator,
    /// A service-account key file.
    KeyFile { email: String, key: EncodingKey },
    /// The workload's own identity, signing through Google.
    Signer {
        email: String,
        signer: google_cloud_auth::signer::Signer,
    },
}

/// The custom token's claims (what Firebase Auth verifies).
pub fn claims(email: &str, uid: &str, now: i64) -> Value {
    json!({"iss": email, "sub": email, "aud": CUSTOM_TOKEN_AUDIENCE,
           "iat": now, "exp": now + LIFETIME_SECS, "uid": uid})
}

impl FirebaseTokens {
    pub fn key_file(path: &Path) -> anyhow::Result<FirebaseTokens> {
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )?;
        let email = json["client_email"]
            .as_str()
            .context("no client_email in the service account")?
            .to_owned();
        let pem = json["private_key"]
            .as_str()
            .context("no private_key in the service account")?;
        Ok(FirebaseTokens::KeyFile {
            email,
            key: EncodingKey::from_rsa_pem(pem.as_bytes())?,
        })
    }

    /// Signs as `expected` through `signer`; fails at start if the workload's identity is
    /// another account (a misconfiguration that would otherwise fail every join).
    pub async fn signer(
        signer: google_cloud_auth::signer::Signer,
        expected: &str,
    ) -> anyhow::Result<FirebaseTokens> {
        let email = signer
            .client_email()
            .await
            .context("cannot learn the workload's service account")?;
        if email != expected {
            bail!(
                "FIRESFU_FIREBASE_SIGNING_ACCOUNT is {expected} but this workload runs as {email}"
            );
        }
        Ok(FirebaseTokens::Signer { email, signer })
    }

    /// From Application Default Credentials.
    pub async fn from_adc(expected: &str) -> anyhow::Result<FirebaseTokens> {
        let signer = google_cloud_auth::credentials::Builder::default()
            .build_signer()
            .context("cannot build a signer from the Application Default Credentials")?;
        Self::signer(signer, expected).await
    }

    pub async fn for_uid(&self, uid: &str, now: i64) -> Result<FirebaseCredentials, Problem> {
        let token = match self {
            FirebaseTokens::Emulator => {
                return Ok(FirebaseCredentials {
                    uid: uid.to_owned(),
                    custom_token: None,
                    emulator: Some(true),
                });
            }
            FirebaseTokens::KeyFile { email, key } => jsonwebtoken::encode(
                &Header::new(Algorithm::RS256),
                &claims(email, uid, now),
                key,
            )
            .map_err(|e| {
                tracing::error!("cannot sign a Firebase custom token: {e}");
                Problem::internal()
            })?,
            FirebaseTokens::Signer { email, signer } => {
                let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
                let payload = URL_SAFE_NO_PAD.encode(claims(email, uid, now).to_string());
                let input = format!("{header}.{payload}");
                let signature = signer.sign(input.as_bytes()).await.map_err(|e| {
                    tracing::warn!("cannot sign a Firebase custom token through Google: {e}");
                    Problem::unavailable("the token signer")
                })?;
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
            }
        };
        Ok(FirebaseCredentials {
            uid: uid.to_owned(),
            custom_token: Some(token),
            emulator: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    /// A throwaway RSA service account (the key is made here, at test time).
    fn service_account() -> (Value, DecodingKey) {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use aws_lc_rs::signature::KeyPair;
        let der: Pkcs8V1Der = key.as_der().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        let public = DecodingKey::from_rsa_der(key.public_key().as_ref());
        let json = json!({
            "type": "service_account", "project_id": "demo-p", "private_key_id": "k1",
            "private_key": pem, "client_email": "sidecar@demo-p.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
        });
        (json, public)
    }

    fn verified(token: &str, key: &DecodingKey) -> Value {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[CUSTOM_TOKEN_AUDIENCE]);
        jsonwebtoken::decode::<Value>(token, key, &v)
            .unwrap()
            .claims
    }

    #[tokio::test]
    async fn google_signed_custom_tokens_verify_with_the_accounts_key() {
        let (json, public) = service_account();
        let signer = google_cloud_auth::credentials::service_account::Builder::new(json)
            .build_signer()
            .unwrap();
        let tokens = FirebaseTokens::signer(signer, "sidecar@demo-p.iam.gserviceaccount.com")
            .await
            .unwrap();
        let now = crate::sidecar::unix_now();
        let creds = tokens.for_uid("u-123", now).await.unwrap();
        let claims = verified(creds.custom_token.as_deref().unwrap(), &public);
        assert_eq!(claims["uid"], "u-123");
        assert_eq!(claims["iss"], "sidecar@demo-p.iam.gserviceaccount.com");
        assert_eq!(claims["exp"], now + LIFETIME_SECS);
    }

    #[tokio::test]
    async fn another_identity_than_the_configured_account_is_refused_at_start() {
        let (json, _) = service_account();
        let signer = google_cloud_auth::credentials::service_account::Builder::new(json)
            .build_signer()
            .unwrap();
        assert!(
            FirebaseTokens::signer(signer, "other@demo-p.iam.gserviceaccount.com")
                .await
                .is_err()
        );
    }
}
