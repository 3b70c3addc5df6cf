//! Login and registration limits, with time as an input.
//!
//! The policy (docs/sidecar.md):
//! - **per (username, address)**, strict: 5 failed logins in 15 minutes block that address for
//!   that account until the window ends (guessing one account's password from one place is slow);
//! - **per username**, gentle: after 5 failures from addresses that never logged into the
//!   account, each further attempt from such an address waits 2^(n−5) s after the last failure
//!   (at most 60 s). Addresses the user logged in from before are not delayed at all, so an
//!   attacker cannot lock a user out of their own account; a distributed guesser gets at most one
//!   guess a minute per account;
//! - **per address**, any accounts: 100 attempts in 15 minutes (spraying many accounts);
//! - **registrations**: 10 accounts per address per hour.
//!
//! An attempt counts as a failure from the moment it starts (`begin`) until it succeeds: check
//! and record are one step under one lock, so parallel wrong passwords cannot all be checked.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const PAIR_FAILURES: u32 = 5;
pub const FREE_FAILURES: u32 = 5;
pub const MAX_DELAY: Duration = Duration::from_secs(60);
pub const ADDR_ATTEMPTS: u32 = 100;
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);
pub const REGISTRATIONS: u32 = 10;
/// Addresses remembered per user as "logged in from here before".
const KNOWN_ADDRESSES: usize = 16;
/// Past this many entries, expired ones are dropped.
const PRUNE_AT: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug)]
struct Counter<K: Hash + Eq> {
    length: Duration,
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new(length: Duration) -> Self {
        Counter {
            length,
            windows: HashMap::new(),
        }
    }

    fn current(&mut self, key: &K, now: Instant) -> &mut Window {
        let length = self.length;
        let w = self.windows.entry(key.clone()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(w.started) >= length {
            *w = Window {
                started: now,
                count: 0,
            };
        }
        w
    }

    /// `Some(retry after)` when the key reached `limit` in its window.
    fn blocked(&mut self, key: &K, limit: u32, now: Instant) -> Option<Duration> {
        let length = self.length;
        let w = self.current(key, now);
        (w.count >= limit).then(|| length.saturating_sub(now.duration_since(w.started)))
    }

    fn add(&mut self, key: &K, now: Instant) {
        self.current(key, now).count += 1;
    }

    fn remove(&mut self, key: &K) {
        self.windows.remove(key);
    }

    fn prune(&mut self, now: Instant) {
        let length = self.length;
        if self.windows.len() > PRUNE_AT {
            self.windows
                .retain(|_, w| now.duration_since(w.started) < length);
        }
    }
}

#[derive(Debug, Default)]
struct User {
    failures: u32,
    last_failure: Option<Instant>,
    known: HashSet<IpAddr>,
}

#[derive(Debug)]
pub struct LoginLimiter {
    pairs: Counter<(String, IpAddr)>,
    addrs: Counter<IpAddr>,
    users: HashMap<String, User>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            pairs: Counter::new(WINDOW),
            addrs: Counter::new(WINDOW),
            users: HashMap::new(),
        }
    }
}

fn at_least_a_second(d: Duration) -> Duration {
    d.max(Duration::from_secs(1))
}

impl LoginLimiter {
    /// Starts a login attempt, counted as a failure until [`LoginLimiter::succeeded`].
    /// `Err(retry_after)` when it must be refused.
    pub fn begin(&mut self, username: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.pairs.prune(now);
        self.addrs.prune(now);
        if self.users.len() > PRUNE_AT {
            self.users.retain(|_, u| {
                u.last_failure
                    .is_some_and(|t| now.duration_since(t) < WINDOW)
            });
        }
        let name = username.to_lowercase();
        let pair = (name.clone(), addr);
        if let Some(retry) = self.addrs.blocked(&addr, ADDR_ATTEMPTS, now) {
            return Err(at_least_a_second(retry));
        }
        if let Some(retry) = self.pairs.blocked(&pair, PAIR_FAILURES, now) {
            return Err(at_least_a_second(retry));
        }
        let user = self.users.entry(name).or_default();
        if let Some(last) = user.last_failure
            && now.duration_since(last) >= WINDOW
        {
            user.failures = 0;
        }
        if !user.known.contains(&addr) && user.failures >= FREE_FAILURES {
            let exponent = (user.failures - FREE_FAILURES).min(16);
            let delay = Duration::from_secs(1 << exponent).min(MAX_DELAY);
            let since = user.last_failure.map_or(delay, |t| now.duration_since(t));
            if since < delay {
                return Err(at_least_a_second(delay - since));
            }
        }
        user.failures += 1;
        user.last_failure = Some(now);
        self.pairs.add(&pair, now);
        self.addrs.add(&addr, now);
        Ok(())
    }

    /// The attempt begun with these arguments succeeded: it no longer counts as a failure, the
    /// account's failures are forgiven and the address is remembered as the user's.
    pub fn succeeded(&mut self, username: &str, addr: IpAddr) {
        let name = username.to_lowercase();
        self.pairs.remove(&(name.clone(), addr));
        let user = self.users.entry(name).or_default();
        user.failures = 0;
        user.last_failure = None;
        if user.known.len() >= KNOWN_ADDRESSES {
            user.known.clear();
        }
        user.known.insert(addr);
    }
}

/// Accounts created per address.
#[derive(Debug)]
pub struct RegistrationLimiter {
    addrs: Counter<IpAddr>,
    per_window: u32,
}

impl Default for RegistrationLimiter {
    fn default() -> Self {
        RegistrationLimiter::new(REGISTRATIONS)
    }
}

impl RegistrationLimiter {
    /// At most `per_hour` registrations per address and hour.
    pub fn new(per_hour: u32) -> Self {
        RegistrationLimiter {
            addrs: Counter::new(REGISTRATION_WINDOW),
            per_window: per_hour,
        }
    }

    /// Counts a registration attempt; `Err(retry_after)` beyond the limit.
    pub fn begin(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        self.addrs.prune(now);
        if let Some(retry) = self.addrs.blocked(&addr, self.per_window, now) {
            return Err(at_least_a_second(retry));
        }
        self.addrs.add(&addr, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn parallel_attempts_count_before_any_is_checked() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        // 40 attempts begun at once (none finished yet): only the first 5 go through.
        let allowed = (0..40)
            .filter(|_| l.begin("ada", ip(1), t0).is_ok())
            .count();
        assert_eq!(allowed, PAIR_FAILURES as usize);
    }

    #[test]
    fn an_address_is_blocked_for_an_account_after_its_failures_until_the_window_ends() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for _ in 0..PAIR_FAILURES {
            assert!(l.begin("Ada", ip(1), t0).is_ok());
        }
        let retry = l
            .begin("ada", ip(1), t0 + Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(retry, WINDOW - Duration::from_secs(60));
        assert!(
            l.begin("bob", ip(1), t0).is_ok(),
            "other accounts are unaffected"
        );
        assert!(l.begin("ada", ip(1), t0 + WINDOW).is_ok());
    }

    #[test]
    fn an_attacker_cannot_lock_the_user_out_of_their_own_account() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        // Ada logged in from home before.
        l.begin("ada", ip(1), t0).unwrap();
        l.succeeded("ada", ip(1));
        // An attacker fails 5 times, then more from other addresses.
        let attacker = IpAddr::from([203, 0, 113, 9]);
        for _ in 0..PAIR_FAILURES {
            l.begin("ada", attacker, t0).unwrap();
        }
        assert!(l.begin("ada", attacker, t0).is_err());
        // Ada, from home, is not delayed at all.
        for i in 0..3 {
            let t = t0 + Duration::from_millis(10 * i);
            assert!(l.begin("ada", ip(1), t).is_ok(), "attempt {i}");
            l.succeeded("ada", ip(1));
        }
    }

    #[test]
    fn failures_from_unknown_addresses_slow_further_guesses_exponentially() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for n in 0..FREE_FAILURES {
            l.begin("ada", ip(n as u8 + 10), t0).unwrap();
        }
        // The sixth attempt from yet another address waits 1 s after the last failure …
        assert_eq!(l.begin("ada", ip(50), t0), Err(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        l.begin("ada", ip(50), t1).unwrap();
        // … the next 2 s, then 4 s …
        assert!(
            l.begin("ada", ip(51), t1 + Duration::from_millis(1500))
                .is_err()
        );
        let t2 = t1 + Duration::from_secs(2);
        l.begin("ada", ip(51), t2).unwrap();
        assert_eq!(l.begin("ada", ip(52), t2), Err(Duration::from_secs(4)));
        // … never more than a minute.
        let mut t = t2;
        for k in 0..12u32 {
            t += MAX_DELAY;
            l.begin("ada", ip(60 + k as u8), t).unwrap();
        }
        assert_eq!(l.begin("ada", ip(99), t), Err(MAX_DELAY));
    }

    #[test]
    fn an_address_is_limited_across_accounts() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for i in 0..ADDR_ATTEMPTS {
            assert!(l.begin(&format!("user{i}"), ip(7), t0).is_ok());
        }
        assert!(l.begin("fresh", ip(7), t0).is_err());
        assert!(l.begin("fresh", ip(8), t0).is_ok());
    }

    #[test]
    fn registrations_are_limited_per_address() {
        let t0 = Instant::now();
        let mut r = RegistrationLimiter::default();
        for _ in 0..REGISTRATIONS {
            r.begin(ip(1), t0).unwrap();
        }
        assert!(r.begin(ip(1), t0).is_err());
        assert!(r.begin(ip(2), t0).is_ok());
        assert!(r.begin(ip(1), t0 + REGISTRATION_WINDOW).is_ok());
    }
}
