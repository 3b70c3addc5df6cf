//! Who may join: the join-token check of a session's first offer, and the grants every offer
//! is held to.
//!
//! Keys come from the sidecar's JWKS, fetched at start and again when a token names a key we do
//! not know (at most every 10 s, so garbage tokens cannot make us hammer the sidecar). The
//! check itself is `jointoken::VerifyingKeys::verify` (pure); single use of the token's `jti` is
//! enforced by the claim transaction (`store.rs`).

use std::sync::RwLock;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tracing::Instrument;

use super::protocol::{ErrorCode, SessionError};
use crate::jointoken::{Grants, JoinClaims, TokenError, VerifyingKeys, check_grants};
use crate::media::offer::OfferSummary;

const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(10);

pub struct KeyCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<VerifyingKeys>,
    last_fetch: Mutex<Option<Instant>>,
}

pub enum Admission {
    /// Development only (`--dev-no-auth`): anyone may join.
    Open,
    Tokens(KeyCache),
}

impl KeyCache {
    /// Fetches the JWKS, retrying for up to `patience` (the sidecar may start after us).
    pub async fn fetch(url: &str, patience: Duration) -> anyhow::Result<KeyCache> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Instant::now() + patience;
        loop {
            match Self::download(&http, url).await {
                Ok(keys) => {
                    tracing::info!(url, keys = keys.len(), "join-token keys loaded");
                    return Ok(KeyCache {
                        url: url.to_owned(),
                        http,
                        keys: RwLock::new(keys),
                        last_fetch: Mutex::new(Some(Instant::now())),
                    });
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(url, "join-token keys not available yet: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(e.context(format!("cannot load the join-token keys from {url}")));
                }
            }
        }
    }

    async fn download(http: &reqwest::Client, url: &str) -> anyhow::Result<VerifyingKeys> {
        let jwks: serde_json::Value = http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(VerifyingKeys::from_jwks(&jwks)?)
    }

    fn verify(&self, token: &str, room: &str, now: i64) -> Result<JoinClaims, TokenError> {
        self.keys
            .read()
            .map_err(|_| TokenError::UnknownKey)?
            .verify(token, room, now)
    }

    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_AT_MOST_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        match Self::download(&self.http, &self.url).await {
            Ok(keys) => {
                if let Ok(mut k) = self.keys.write() {
                    *k = keys;
                }
            }
            Err(e) => tracing::warn!(url = self.url, "cannot refresh the join-token keys: {e:#}"),
        }
    }
}

pub fn token_error(e: &TokenError) -> SessionError {
    let code = match e {
        TokenError::Expired => ErrorCode::TokenExpired,
        TokenError::WrongRoom { .. } => ErrorCode::TokenWrongRoom,
        TokenError::Forbidden(_) => ErrorCode::TokenForbidden,
        TokenError::Malformed(_)
        | TokenError::UnknownKey
        | TokenError::Invalid(_)
        | TokenError::TooLong => ErrorCode::TokenInvalid,
    };
    SessionError::new(code, e.to_string())
}

impl Admission {
    pub fn requires_token(&self) -> bool {
        matches!(self, Admission::Tokens(_))
    }

    /// Checks the join token of a session's first offer: signature, issuer, audience,
    /// expiry, lifetime, room and that it was issued to the document's `uid`. `Ok(None)` when
    /// admission is open. What the token grants is checked against every offer by the claim.
    pub async fn verify(
        &self,
        token: Option<&str>,
        uid: Option<&str>,
        room: &str,
        now: i64,
    ) -> Result<Option<JoinClaims>, SessionError> {
        let Admission::Tokens(cache) = self else {
            return Ok(None);
        };
        let token = token.ok_or_else(|| {
            SessionError::new(
                ErrorCode::TokenRequired,
                "this server admits only sessions with a join token (field `token`)",
            )
        })?;
        let claims = async {
            match cache.verify(token, room, now) {
                Err(TokenError::UnknownKey) => {
                    cache.refresh().await;
                    cache.verify(token, room, now)
                }
                other => other,
            }
        }
        .instrument(tracing::info_span!("token.verify"))
        .await
        .map_err(|e| token_error(&e))?;
        if let Some(uid) = uid
            && uid != claims.sub
        {
            return Err(SessionError::new(
                ErrorCode::TokenInvalid,
                "the join token was issued to another user",
            ));
        }
        Ok(Some(claims))
    }
}

/// What a session may do, from its join token (everything when admission is open), checked
/// against every offer it makes: first offers and re-offers alike.
pub fn check_offer_grants(grants: Grants, offer: &OfferSummary) -> Result<(), SessionError> {
    check_grants(
        grants,
        offer.published().next().is_some(),
        offer.slots().next().is_some(),
    )
    .map_err(|e| token_error(&e))
}
