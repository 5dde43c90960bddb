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

    /// How many attempts endpoint `id` may start now. Reserves nothing: call `started` for
    /// each attempt started and `spend_token` for each delivery claimed.
    pub fn room_for(&mut self, id: i64, rate_limit: Option<i64>) -> usize {
        let left_total = self.max_total.saturating_sub(self.total);
        let left_endpoint = self
            .per_endpoint
            .saturating_sub(self.in_flight.get(&id).copied().unwrap_or(0));
        let mut room = left_total.min(left_endpoint);
        match rate_limit.filter(|r| *r > 0) {
            Some(rate) => {
                let now = Instant::now();
                let bucket = self.buckets.entry(id).or_insert(Bucket {
                    rate: rate as f64,
                    tokens: rate as f64,
                    refilled: now,
                });
                bucket.rate = rate as f64;
                bucket.refill(now);
                room = room.min(bucket.tokens.floor() as usize);
            }
            None => {
                self.buckets.remove(&id);
            }
        }
        room
    }

    pub fn spend_token(&mut self, id: i64) {
        if let Some(bucket) = self.buckets.get_mut(&id) {
            bucket.tokens -= 1.0;
        }
    }

    pub fn started(&mut self, id: i64) {
        *self.in_flight.entry(id).or_default() += 1;
        self.total += 1;
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
        assert_eq!(l.room_for(1, None), 2);
        l.started(1);
        l.started(1);
        assert_eq!(l.room_for(1, None), 0);
        assert_eq!(l.room_for(2, None), 1);
        l.started(2);
        assert!(!l.has_room());
        l.finished(1);
        assert_eq!(l.room_for(1, None), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_refills_over_time() {
        let mut l = Limits::new(100, 100);
        assert_eq!(l.room_for(1, Some(4)), 4);
        for _ in 0..4 {
            l.spend_token(1);
        }
        assert_eq!(l.room_for(1, Some(4)), 0);
        let next = l.next_token_at().expect("a refill time");
        assert_eq!(next - Instant::now(), Duration::from_millis(250));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(l.room_for(1, Some(4)), 2);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            l.room_for(1, Some(4)),
            4,
            "a bucket holds one second's worth"
        );
    }
}
