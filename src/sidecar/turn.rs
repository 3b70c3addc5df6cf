//! ICE servers for clients: STUN, and TURN with short-lived credentials.
//!
//! firesfu does not relay; a standard TURN server (coturn) does, configured with
//! `use-auth-secret` and the same `static-auth-secret` as the sidecar. Credentials follow the
//! TURN REST API scheme (draft-uberti-behave-turn-rest): `username = "<expiry>:<uid>"`,
//! `credential = base64(HMAC-SHA1(secret, username))`. The TURN server recomputes the HMAC
//! and refuses the username after its expiry, so the secret never leaves the two servers and
//! a leaked credential dies on its own.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// For TURN: `<expiry unix seconds>:<user id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// For TURN: base64(HMAC-SHA1(secret, username)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TurnConfigError {
    #[error("{0:?} is not a {1} URL (RFC 7064/7065: {1}:host[:port][?transport=udp|tcp])")]
    BadUrl(String, &'static str),
    #[error(
        "FIRESFU_TURN_URLS needs the shared secret (FIRESFU_TURN_SECRET or FIRESFU_TURN_SECRET_FILE)"
    )]
    NoSecret,
    #[error("the TURN secret is empty")]
    EmptySecret,
}

/// What the sidecar hands out.
#[derive(Clone)]
pub struct IceConfig {
    stun: Vec<String>,
    turn: Vec<String>,
    secret: Option<String>,
    ttl: Duration,
}

impl std::fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceConfig")
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl IceConfig {
    pub fn new(
        stun: Vec<String>,
        turn: Vec<String>,
        secret: Option<String>,
        ttl: Duration,
    ) -> Result<Self, TurnConfigError> {
        for url in &stun {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return Err(TurnConfigError::BadUrl(url.clone(), "stun"));
            }
        }
        for url in &turn {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return Err(TurnConfigError::BadUrl(url.clone(), "turn"));
            }
        }
        let secret = secret.map(|s| s.trim().to_owned());
        match (&secret, turn.is_empty()) {
            (None, false) => return Err(TurnConfigError::NoSecret),
            (Some(s), _) if s.is_empty() => return Err(TurnConfigError::EmptySecret),
            _ => {}
        }
        Ok(IceConfig {
            stun,
            turn,
            secret,
            ttl,
        })
    }

    /// For everyone (`/v1/config`): the STUN servers, which need no credential.
    pub fn public(&self) -> Vec<IceServer> {
        if self.stun.is_empty() {
            return Vec::new();
        }
        vec![IceServer {
            urls: self.stun.clone(),
            username: None,
            credential: None,
        }]
    }

    /// For a joining user: STUN, and TURN with credentials valid until `now + ttl`.
    pub fn for_user(&self, uid: &str, now: i64) -> Vec<IceServer> {
        let mut servers = self.public();
        if let (Some(secret), false) = (&self.secret, self.turn.is_empty()) {
            let username = format!("{}:{uid}", now + self.ttl.as_secs() as i64);
            let credential = credential(secret, &username);
            servers.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }
}

/// base64(HMAC-SHA1(secret, username)): what coturn's `use-auth-secret` expects.
pub fn credential(secret: &str, username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, username.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Known answer: printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(
            credential("s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
        let config = IceConfig::new(
            vec!["stun:stun.example.com:3478".into()],
            vec!["turn:turn.example.com:3478?transport=udp".into()],
            Some("s3cret\n".into()),
            Duration::from_secs(3600),
        )
        .unwrap();
        let servers = config.for_user("alice", 1_699_996_400);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].username.as_deref(), Some("1700000000:alice"));
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("TtElzSjT0GdnTQ9xdcRNxx96yQs=")
        );
        assert_eq!(config.public().len(), 1, "no TURN without a login");
    }

    #[test]
    fn bad_configurations_are_refused() {
        let ttl = Duration::from_secs(60);
        assert_eq!(
            IceConfig::new(vec![], vec!["turn:x".into()], None, ttl).unwrap_err(),
            TurnConfigError::NoSecret
        );
        assert!(matches!(
            IceConfig::new(vec!["turn:x".into()], vec![], None, ttl),
            Err(TurnConfigError::BadUrl(..))
        ));
        assert!(matches!(
            IceConfig::new(vec![], vec!["http://x".into()], Some("s".into()), ttl),
            Err(TurnConfigError::BadUrl(..))
        ));
        assert_eq!(
            IceConfig::new(vec![], vec!["turn:x".into()], Some(" ".into()), ttl).unwrap_err(),
            TurnConfigError::EmptySecret
        );
        assert!(
            IceConfig::new(vec![], vec![], None, ttl)
                .unwrap()
                .for_user("u", 0)
                .is_empty()
        );
    }
}
