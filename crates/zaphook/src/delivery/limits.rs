//! How many attempts the dispatcher may start: a cap over all endpoints, a cap per endpoint,
//! and an endpoint's optional rate limit (a token bucket refilled at `rateLimit` per second,
//! holding at most one second's worth).

use std::collections::HashMap;

use tokio::time::{Duration, Instant};

struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.refilled = now;
    }
}

pub struct Limits {
    max_total: usize,
    per_endpoint: usize,
    total: usize,
    in_flight: HashMap<i64, usize>,
    buckets: HashMap<i64, Bucket>,
}

/// What the limits allow at one moment, to decide claims away from the dispatcher (inside a
/// store job). Spending from it changes nothing in the `Limits` it came from.
#[derive(Debug, Clone)]
pub struct Room {
    total: usize,
    per_endpoint: usize,
    in_flight: HashMap<i64, usize>,
    tokens: HashMap<i64, usize>,
}

impl Room {
    /// How many attempts endpoint `id` may start now; takes them from the room.
    pub fn take(&mut self, id: i64, rate_limit: Option<i64>) -> usize {
        let busy = self.in_flight.get(&id).copied().unwrap_or(0);
        let mut room = self.total.min(self.per_endpoint.saturating_sub(busy));
        if let Some(rate) = rate_limit.filter(|r| *r > 0) {
            let tokens = self.tokens.get(&id).copied().unwrap_or(rate as usize);
            room = room.min(tokens);
        }
        room
    }

    /// Records that `n` attempts of endpoint `id` were claimed.
    pub fn claimed(&mut self, id: i64, n: usize) {
        self.total = self.total.saturating_sub(n);
        *self.in_flight.entry(id).or_default() += n;
        if let Some(t) = self.tokens.get_mut(&id) {
            *t = t.saturating_sub(n);
        }
    }
}

impl Limits {
    pub fn new(max_total: usize, per_endpoint: usize) -> Self {
        Limits {
            max_total,
            per_endpoint,
            total: 0,
            in_flight: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    pub fn has_room(&self) -> bool {
        self.total < self.max_total
    }

    /// The room now, buckets refilled.
    pub fn room(&mut self) -> Room {
        let now = Instant::now();
        let mut tokens = HashMap::new();
        for (id, bucket) in &mut self.buckets {
            bucket.refill(now);
            tokens.insert(*id, bucket.tokens.floor().max(0.0) as usize);
        }
        Room {
            total: self.max_total.saturating_sub(self.total),
            per_endpoint: self.per_endpoint,
            in_flight: self.in_flight.clone(),
            tokens,
        }
    }

    /// Whether endpoint `id` may start one more attempt now.
    pub fn can_start(&mut self, id: i64, rate_limit: Option<i64>) -> bool {
        if self.total >= self.max_total
            || self.in_flight.get(&id).copied().unwrap_or(0) >= self.per_endpoint
        {
            return false;
        }
        match (rate_limit.filter(|r| *r > 0), self.buckets.get_mut(&id)) {
            (Some(_), Some(bucket)) => {
                bucket.refill(Instant::now());
                bucket.tokens >= 1.0
            }
            _ => true,
        }
    }

    /// An attempt of endpoint `id` started; it spends a token when the endpoint is limited.
    pub fn started(&mut self, id: i64, rate_limit: Option<i64>) {
        *self.in_flight.entry(id).or_default() += 1;
        self.total += 1;
        match rate_limit.filter(|r| *r > 0) {
            Some(rate) => {
                let now = Instant::now();
                let bucket = self.buckets.entry(id).or_insert(Bucket {
                    rate: rate as f64,
                    tokens: rate as f64,
                    refilled: now,
                });
                bucket.rate = rate as f64;
                bucket.tokens -= 1.0;
            }
            None => {
                self.buckets.remove(&id);
            }
        }
    }

    pub fn finished(&mut self, id: i64) {
        if let Some(n) = self.in_flight.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&id);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// When the emptiest rate-limited endpoint has a token again.
    pub fn next_token_at(&self) -> Option<Instant> {
        self.buckets
            .values()
            .filter(|b| b.tokens < 1.0)
            .map(|b| b.refilled + Duration::from_secs_f64((1.0 - b.tokens) / b.rate))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_endpoint() {
        let mut l = Limits::new(3, 2);
        assert_eq!(l.room().take(1, None), 2);
        l.started(1, None);
        l.started(1, None);
        assert_eq!(l.room().take(1, None), 0);
        assert_eq!(l.room().take(2, None), 1);
        l.started(2, None);
        assert!(!l.has_room());
        l.finished(1);
        assert_eq!(l.room().take(1, None), 1);
        // Claims taken from one room count against the others of it.
        let mut room = Limits::new(3, 2).room();
        assert_eq!(room.take(1, None), 2);
        room.claimed(1, 2);
        assert_eq!(room.take(1, None), 0);
        assert_eq!(room.take(2, None), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_refills_over_time() {
        let mut l = Limits::new(100, 100);
        assert_eq!(l.room().take(1, Some(4)), 4);
        for _ in 0..4 {
            l.started(1, Some(4));
            l.finished(1);
        }
        assert_eq!(l.room().take(1, Some(4)), 0);
        let next = l.next_token_at().expect("a refill time");
        assert_eq!(next - Instant::now(), Duration::from_millis(250));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(l.room().take(1, Some(4)), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            l.room().take(1, Some(4)),
            4,
            "a bucket holds one second's worth"
        );
    }
}
