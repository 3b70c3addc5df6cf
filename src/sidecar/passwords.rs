//! Password hashing: Argon2id with OWASP's recommended parameters (19 MiB, 2 passes, 1 lane),
//! on a bounded number of reusable memory buffers.
//!
//! Every hash and every check fills 19 MiB. Unbounded, 100 concurrent registrations took the
//! sidecar from 21 MiB to 2.5 GiB, and the allocator kept most of it afterwards. Here at most
//! `slots` hashes run at once, each in one of `slots` buffers allocated on first use and reused
//! for good: the hashing memory is at most `slots × 19 MiB` whatever the load. A request waits
//! for a slot at most `queue_wait`, and only `queue_max` may wait; beyond either the caller
//! gets [`Busy`] (503 with `Retry-After`). `make bench` reports what hashing costs under load
//! (docs/benchmarks.md).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;
pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;

fn params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid Argon2 parameters")
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Every hashing slot is taken and the wait was too long (or too many wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is at capacity; retry in {retry_after:?}")]
pub struct Busy {
    pub retry_after: Duration,
}

pub struct Hasher {
    slots: usize,
    permits: Semaphore,
    buffers: Mutex<Vec<Vec<Block>>>,
    waiting: AtomicUsize,
    queue_wait: Duration,
    queue_max: usize,
}

/// How the sidecar hashes: the memory budget decides the slots.
#[derive(Debug, Clone, Copy)]
pub struct HasherConfig {
    /// Memory the hashing buffers may take, MiB (at least one slot).
    pub memory_mib: usize,
    pub queue_wait: Duration,
    pub queue_max: usize,
}

impl Hasher {
    pub fn new(config: HasherConfig) -> Hasher {
        let slots = (config.memory_mib / (MEMORY_KIB as usize / 1024)).max(1);
        Hasher {
            slots,
            permits: Semaphore::new(slots),
            buffers: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            queue_wait: config.queue_wait,
            queue_max: config.queue_max,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Runs `work` with a hashing buffer, on a blocking thread, when a slot is free in time.
    async fn with_slot<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let busy = Busy {
            retry_after: Duration::from_secs(1).max(self.queue_wait),
        };
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_max {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy);
        }
        let permit = tokio::time::timeout(self.queue_wait, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let _permit = match permit {
            Ok(Ok(p)) => p,
            _ => return Err(busy),
        };
        let mut buffer = self
            .buffers
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_default();
        let (buffer, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut buffer);
            (buffer, result)
        })
        .await
        .map_err(|_| busy)?;
        if let Ok(mut buffers) = self.buffers.lock() {
            buffers.push(buffer);
        }
        Ok(result)
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.with_slot(move |buffer| hash_with(&password, buffer))
            .await
    }

    /// Checks `password` against a stored PHC string; with `None` (no such user) burns the
    /// same time against a dummy hash, so a wrong username is not faster to learn.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.with_slot(move |buffer| match stored {
            Some(stored) => verify_with(&password, &stored, buffer),
            None => {
                let _ = verify_with(&password, dummy(), buffer);
                false
            }
        })
        .await
    }
}

fn dummy() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_with("firesfu-dummy-password", &mut Vec::new()))
}

/// Resizes the reusable buffer to what `params` need (a no-op in the steady state).
fn blocks(buffer: &mut Vec<Block>, params: &Params) -> usize {
    let n = params.block_count();
    if buffer.len() != n {
        buffer.clear();
        buffer.resize(n, Block::default());
    }
    n
}

fn hash_with(password: &str, buffer: &mut Vec<Block>) -> String {
    let params = params();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .expect("a generated salt decodes");
    let mut out = [0u8; 32];
    blocks(buffer, &params);
    argon2(params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut buffer[..])
        .expect("Argon2 hashing cannot fail with valid parameters");
    PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().expect("valid parameters"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    }
    .to_string()
}

/// Verifies against a stored PHC string (its own parameters apply, so old hashes still work).
fn verify_with(password: &str, stored: &str, buffer: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&hash), hash.salt, hash.hash)
    else {
        return false;
    };
    // A stored hash asking for more than 64 MiB is not one of ours.
    if params.m_cost() > 64 * 1024 {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    blocks(buffer, &params);
    let algorithm = Algorithm::try_from(hash.algorithm).unwrap_or(Algorithm::Argon2id);
    let version = hash
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut buffer[..])
        .is_ok()
        && Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    fn hasher(memory_mib: usize, queue_max: usize) -> Hasher {
        Hasher::new(HasherConfig {
            memory_mib,
            queue_wait: Duration::from_millis(200),
            queue_max,
        })
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let h = hasher(40, 8);
        let a = h.hash("correct horse battery".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(
            h.verify("correct horse battery".into(), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(
            !h.verify("correct horse batterz".into(), Some(a.clone()))
                .await
                .unwrap()
        );
        assert_ne!(a, h.hash("correct horse battery".into()).await.unwrap());
        assert!(
            !h.verify("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
        );
        assert!(!h.verify("x".into(), None).await.unwrap());
        // The standard implementation agrees: hashes stored before this module still verify,
        // and ours verify there.
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(
            argon2(params())
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn the_memory_budget_decides_the_slots() {
        assert_eq!(hasher(64, 1).slots(), 3);
        assert_eq!(hasher(1, 1).slots(), 1);
    }

    #[tokio::test]
    async fn beyond_the_queue_callers_are_told_to_come_back() {
        let h = std::sync::Arc::new(hasher(19, 1));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.hash(format!("password-{i}-long")).await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                busy += 1;
            }
        }
        assert!(busy >= 3, "one slot, one waiter: most are refused ({busy})");
    }
}
