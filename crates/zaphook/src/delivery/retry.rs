//! When to try a failed delivery again: the schedule of DESIGN.md with ±20 % jitter, and a
//! receiver's `Retry-After` honoured within [base, 2 × base] of the step it replaces.

use std::time::Duration;

use crate::store::NextStep;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt; after the last one the delivery is dead.
    pub schedule: Vec<Duration>,
    /// Fraction of each delay added or removed at random.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        RetryPolicy {
            schedule: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                minutes(2),
                minutes(10),
                minutes(30),
                minutes(60),
                minutes(3 * 60),
                minutes(6 * 60),
                minutes(12 * 60),
                minutes(24 * 60),
            ],
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// What follows a failed attempt, given how many attempts came before it. `unit` is a
    /// random number in [0, 1) that places the delay inside the jitter band.
    pub fn after_failure(
        &self,
        attempts_before: i64,
        now_ms: i64,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> NextStep {
        let Some(base) = usize::try_from(attempts_before)
            .ok()
            .and_then(|n| self.schedule.get(n))
        else {
            return NextStep::Dead;
        };
        let delay = match retry_after {
            Some(asked) => asked.clamp(*base, *base * 2),
            None => base.mul_f64(1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0)),
        };
        NextStep::RetryAt(now_ms + delay.as_millis() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_within_the_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.after_failure(0, 0, None, 0.0), NextStep::RetryAt(4_000));
        assert_eq!(p.after_failure(0, 0, None, 0.5), NextStep::RetryAt(5_000));
        assert_eq!(p.after_failure(0, 0, None, 1.0), NextStep::RetryAt(6_000));
        assert_eq!(
            p.after_failure(1, 100, None, 0.5),
            NextStep::RetryAt(30_100)
        );
        assert_eq!(
            p.after_failure(9, 0, None, 0.5),
            NextStep::RetryAt(86_400_000)
        );
        assert_eq!(p.after_failure(10, 0, None, 0.5), NextStep::Dead);
    }

    #[test]
    fn whole_schedule_spans_about_two_days() {
        let total: Duration = RetryPolicy::default().schedule.iter().sum();
        assert!(total > Duration::from_secs(46 * 3600) && total < Duration::from_secs(50 * 3600));
    }

    #[test]
    fn retry_after_is_clamped_to_base_and_twice_base() {
        let p = RetryPolicy::default();
        let at = |s| p.after_failure(1, 0, Some(Duration::from_secs(s)), 0.5);
        assert_eq!(at(1), NextStep::RetryAt(30_000));
        assert_eq!(at(45), NextStep::RetryAt(45_000));
        assert_eq!(at(3600), NextStep::RetryAt(60_000));
    }
}
