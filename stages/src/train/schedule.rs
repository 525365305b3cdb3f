//! [`LrSchedule`]: the learning rate of every optimizer step, a pure function of the
//! step so that a resumed run continues exactly where it stopped.
//!
//! With `T` total steps, `W = ceil(warmup * T)` warmup steps and the 0-based step `s`:
//!
//! | phase     | learning rate                                                        |
//! |-----------|----------------------------------------------------------------------|
//! | `s < W`   | `lr * (s + 1) / W` (linear warmup; the first step is not wasted at 0) |
//! | `s >= W`  | `p = (s - W) / max(1, T - W - 1)` in `[0, 1]`, then                  |
//! | cosine    | `min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`                      |
//! | linear    | `min_lr + (lr - min_lr) * (1 - p)`                                    |
//! | constant  | `lr`                                                                 |
//!
//! so the peak `lr` is reached at the last warmup step and `min_lr` at the last step.

use super::params::Schedule;

/// A learning-rate schedule over a fixed number of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate (cosine, linear).
    pub min_lr: f64,
    /// Warmup steps `W`.
    pub warmup_steps: u64,
    /// Total optimizer steps `T`.
    pub total_steps: u64,
    /// Decay after warmup.
    pub kind: Schedule,
}

impl LrSchedule {
    /// A schedule with `warmup` given as a fraction of `total_steps`.
    pub fn new(kind: Schedule, lr: f64, min_lr: f64, warmup: f64, total_steps: u64) -> Self {
        // The epsilon keeps float noise (0.021 * 1000 = 21.000000000000004) from adding a step.
        let warmup_steps =
            ((warmup * total_steps as f64 - 1e-9).ceil().max(0.0) as u64).min(total_steps);
        LrSchedule {
            lr,
            min_lr,
            warmup_steps,
            total_steps,
            kind,
        }
    }

    /// The learning rate of 0-based step `s`.
    pub fn at(&self, s: u64) -> f64 {
        let w = self.warmup_steps;
        if s < w {
            return self.lr * (s + 1) as f64 / w as f64;
        }
        let span = self.total_steps.saturating_sub(w + 1).max(1);
        let p = ((s - w) as f64 / span as f64).clamp(0.0, 1.0);
        let range = self.lr - self.min_lr;
        match self.kind {
            Schedule::Cosine => {
                self.min_lr + range * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Schedule::Linear => self.min_lr + range * (1.0 - p),
            Schedule::Constant => self.lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let s = LrSchedule::new(Schedule::Cosine, 1.0, 0.1, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(99) - 0.1).abs() < 1e-12);
        let c = LrSchedule::new(Schedule::Constant, 0.5, 0.0, 0.0, 3);
        assert_eq!((c.at(0), c.at(2)), (0.5, 0.5));
    }
}
