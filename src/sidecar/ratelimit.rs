//! Login rate limiting, per username and per client address, with time as an input.
//!
//! A username gets `USER_FAILURES` failed attempts per window (guessing one account's password
//! is slow); an address gets `ADDR_ATTEMPTS` attempts of any kind per window (spraying many
//! accounts from one place is slow too). A successful login clears the username's failures.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const USER_FAILURES: u32 = 5;
pub const ADDR_ATTEMPTS: u32 = 100;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug)]
struct Counter<K: Hash + Eq> {
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq> Default for Counter<K> {
    fn default() -> Self {
        Counter {
            windows: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn current(&mut self, key: &K, now: Instant) -> Window {
        let w = self.windows.entry(key.clone()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(w.started) >= WINDOW {
            *w = Window {
                started: now,
                count: 0,
            };
        }
        *w
    }

    fn add(&mut self, key: &K, now: Instant) {
        self.current(key, now);
        if let Some(w) = self.windows.get_mut(key) {
            w.count += 1;
        }
    }

    fn prune(&mut self, now: Instant) {
        self.windows
            .retain(|_, w| now.duration_since(w.started) < WINDOW);
    }
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    users: Counter<String>,
    addrs: Counter<IpAddr>,
}

impl LoginLimiter {
    /// `Err(retry_after)` when this attempt must be refused.
    pub fn check(&mut self, username: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.users.windows.len() + self.addrs.windows.len() > 100_000 {
            self.users.prune(now);
            self.addrs.prune(now);
        }
        let user = self.users.current(&username.to_lowercase(), now);
        let by_addr = self.addrs.current(&addr, now);
        let blocked = [(user, USER_FAILURES), (by_addr, ADDR_ATTEMPTS)]
            .into_iter()
            .filter(|(w, limit)| w.count >= *limit)
            .map(|(w, _)| WINDOW.saturating_sub(now.duration_since(w.started)))
            .max();
        match blocked {
            Some(retry) => Err(retry.max(Duration::from_secs(1))),
            None => {
                self.addrs.add(&addr, now);
                Ok(())
            }
        }
    }

    pub fn failed(&mut self, username: &str, now: Instant) {
        self.users.add(&username.to_lowercase(), now);
    }

    pub fn succeeded(&mut self, username: &str) {
        self.users.windows.remove(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_username_is_blocked_after_its_failures_until_the_window_ends() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for i in 0..USER_FAILURES {
            assert!(l.check("Ada", ip(i as u8), t0).is_ok());
            l.failed("Ada", t0);
        }
        let retry = l
            .check("ada", ip(99), t0 + Duration::from_secs(60))
            .unwrap_err();
        assert_eq!(retry, WINDOW - Duration::from_secs(60));
        assert!(
            l.check("bob", ip(99), t0).is_ok(),
            "other users are unaffected"
        );
        assert!(l.check("ada", ip(99), t0 + WINDOW).is_ok());
    }

    #[test]
    fn success_clears_the_failures() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for _ in 0..USER_FAILURES - 1 {
            l.check("ada", ip(1), t0).unwrap();
            l.failed("ada", t0);
        }
        l.succeeded("ada");
        for _ in 0..USER_FAILURES - 1 {
            l.check("ada", ip(1), t0).unwrap();
            l.failed("ada", t0);
        }
        assert!(l.check("ada", ip(1), t0).is_ok());
    }

    #[test]
    fn an_address_is_blocked_after_many_attempts_on_any_accounts() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::default();
        for i in 0..ADDR_ATTEMPTS {
            assert!(l.check(&format!("user{i}"), ip(7), t0).is_ok());
        }
        assert!(l.check("fresh", ip(7), t0).is_err());
        assert!(l.check("fresh", ip(8), t0).is_ok());
    }
}
