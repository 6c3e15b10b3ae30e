//! Token buckets for the OAuth token endpoint, which anyone can reach: one
//! bucket per client id, so one client cannot guess secrets quickly, and one
//! for every request together, so many client ids cannot either.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's size and how fast it refills.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Requests allowed at once.
    pub burst: u32,
    /// Requests allowed per second after the burst.
    pub per_second: f64,
}

/// Per-client token requests: 10 at once, then one a second.
pub const TOKEN_REQUESTS_PER_CLIENT: Rate = Rate {
    burst: 10,
    per_second: 1.0,
};
/// Token requests of every client together: 100 at once, then 20 a second.
pub const TOKEN_REQUESTS_IN_ALL: Rate = Rate {
    burst: 100,
    per_second: 20.0,
};

/// Client buckets kept before the full ones (idle clients) are forgotten; a
/// forgotten bucket is the same as a new one, so forgetting it loses nothing.
const MAX_TRACKED_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated = now;
    }

    /// How long until one token is there (zero when one is).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second)
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    per_client: Rate,
    in_all: Rate,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    all: Bucket,
    clients: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(per_client: Rate, in_all: Rate) -> Self {
        let now = Instant::now();
        Self {
            per_client,
            in_all,
            state: Mutex::new(State {
                all: Bucket::full(in_all, now),
                clients: HashMap::new(),
            }),
        }
    }

    /// Takes a token from `client`'s bucket and from the shared one, or says how
    /// long to wait when either is empty (then neither is taken).
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.all.refill(self.in_all, now);
        let wait = state.all.wait(self.in_all);
        if !wait.is_zero() {
            return Err(wait);
        }
        if state.clients.len() >= MAX_TRACKED_CLIENTS && !state.clients.contains_key(client) {
            let rate = self.per_client;
            state.clients.retain(|_, b| {
                b.refill(rate, now);
                b.tokens < f64::from(rate.burst)
            });
        }
        let bucket = state
            .clients
            .entry(client.to_string())
            .or_insert_with(|| Bucket::full(self.per_client, now));
        bucket.refill(self.per_client, now);
        let wait = bucket.wait(self.per_client);
        if !wait.is_zero() {
            return Err(wait);
        }
        bucket.tokens -= 1.0;
        state.all.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Rate = Rate {
        burst: 3,
        per_second: 1.0,
    };
    const ALL: Rate = Rate {
        burst: 5,
        per_second: 10.0,
    };

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let limiter = RateLimiter::new(CLIENT, ALL);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("spark", t0).is_ok());
        }
        let wait = limiter.check("spark", t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Another client is not held back by this one.
        assert!(limiter.check("trino", t0).is_ok());
        assert!(limiter
            .check("spark", t0 + Duration::from_millis(1001))
            .is_ok());
    }

    #[test]
    fn all_clients_together_are_bounded_too() {
        let limiter = RateLimiter::new(CLIENT, ALL);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(limiter.check(&format!("client-{i}"), t0).is_ok());
        }
        let wait = limiter.check("client-new", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limiter
            .check("client-new", t0 + Duration::from_millis(150))
            .is_ok());
    }

    #[test]
    fn idle_clients_are_forgotten_when_many_are_tracked() {
        let limiter = RateLimiter::new(
            CLIENT,
            Rate {
                burst: u32::MAX,
                per_second: 1.0,
            },
        );
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED_CLIENTS {
            limiter.check(&format!("c{i}"), t0).unwrap();
        }
        let later = t0 + Duration::from_secs(10);
        limiter.check("one-more", later).unwrap();
        let state = limiter.state.lock().unwrap();
        assert_eq!(state.clients.len(), 1, "refilled buckets were dropped");
    }
}
