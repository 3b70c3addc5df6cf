//! Test builds only (`--features fault-injection`): failures on purpose, to prove the process
//! survives them. Counters come from the environment at start:
//! `FIRESFU_FAULT_FAIL_ANSWER_WRITES=n` and `FIRESFU_FAULT_FAIL_CLAIMS=n` make the next n answer
//! writes or claims fail as a Firestore timeout would. `POST /fault/engine-panic` on the
//! broadcast's HTTP port makes the media thread panic.

use std::sync::atomic::{AtomicU32, Ordering};

static ANSWER_WRITES: AtomicU32 = AtomicU32::new(0);
static CLAIMS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    AnswerWrite,
    Claim,
}

pub fn init_from_env() {
    let read = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ANSWER_WRITES.store(read("FIRESFU_FAULT_FAIL_ANSWER_WRITES"), Ordering::Relaxed);
    CLAIMS.store(read("FIRESFU_FAULT_FAIL_CLAIMS"), Ordering::Relaxed);
}

/// True when this call must fail (and counts it).
pub fn fail(fault: Fault) -> bool {
    let counter = match fault {
        Fault::AnswerWrite => &ANSWER_WRITES,
        Fault::Claim => &CLAIMS,
    };
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}
