//! A join token as a client may present it (any text), verified against a real key set: no
//! panic, and nothing but a token this key signed for this room is ever accepted.
#![no_main]

use std::sync::LazyLock;

use firesfu::jointoken::{SigningKey, VerifyingKeys};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<VerifyingKeys> = LazyLock::new(|| {
    let key = SigningKey::generate().expect("a signing key");
    VerifyingKeys::from_jwks(&key.jwks()).expect("its JWKS")
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    // The key was made in this process: no input can carry its signature.
    assert!(KEYS.verify(token, "room-1", 1_800_000_000).is_err());
});
