//! Where the random spread of retry times comes from: the `rand` generator in production, a
//! fixed point of the spread in tests, so that a retry schedule's times are exact and a test
//! can check them against the clock.

#[derive(Debug, Clone, Copy, Default)]
pub enum Jitter {
    #[default]
    Random,
    /// Always this point of the spread, from 0 (earliest) to 1 (latest).
    Fixed(f64),
}

impl Jitter {
    /// A point of the spread, from 0 to 1.
    pub fn unit(&self) -> f64 {
        match self {
            Jitter::Random => rand::random(),
            Jitter::Fixed(unit) => unit.clamp(0.0, 1.0),
        }
    }
}
