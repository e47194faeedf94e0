//! Bootstrap over images: resample the evaluated image set with replacement, re-accumulate every AP
//! figure on each resample from the per-image match tables, and report percentile intervals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::EvalError;

/// How to bootstrap.
///
/// Each resample draws `n` images with replacement from the `n` evaluated images (a classical
/// bootstrap, images counted with multiplicity, not hotcoco's deduplicated 63 % subsample), and
/// an image drawn twice counts its detections and ground truths twice. Resample `b` draws from
/// `ChaCha8` seeded with `seed`, stream `b`, so results do not depend on thread scheduling and are
/// reproducible for a given `rand` version.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
    /// Two-sided level, e.g. 0.95 for the 2.5th and 97.5th percentiles.
    pub confidence: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Self {
            resamples: 1000,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// A percentile interval of a bootstrapped figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
    /// Resamples in which the figure was defined (a class needs a ground-truth object in the
    /// resample); the percentiles are over these.
    pub resamples: usize,
}

impl Bootstrap {
    pub(crate) fn check(&self) -> Result<(), EvalError> {
        if self.resamples < 2 {
            return Err(EvalError::Bootstrap(format!(
                "needs at least 2 resamples, got {}",
                self.resamples
            )));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(EvalError::Bootstrap(format!(
                "confidence must be a fraction strictly between 0 and 1, got {}",
                self.confidence
            )));
        }
        Ok(())
    }

    /// The image weights of resample `b`: `units.len()` draws from `units` (image slots), counted
    /// into a vector over all `slots` image slots (images outside `units` weigh 0).
    pub(crate) fn weights(&self, b: usize, units: &[u32], slots: usize) -> Vec<u32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(b as u64);
        let mut w = vec![0_u32; slots];
        for _ in 0..units.len() {
            w[units[rng.random_range(0..units.len())] as usize] += 1;
        }
        w
    }

    /// Runs a vector-valued statistic on every resample. `statistic` gets the weights of one
    /// resample and returns its figures (`NaN` where undefined); the result holds, per figure, its
    /// defined values in resample order.
    pub(crate) fn samples<F>(&self, units: &[u32], slots: usize, statistic: F) -> Vec<Vec<f64>>
    where
        F: Fn(&[u32]) -> Vec<f64> + Sync,
    {
        if units.is_empty() {
            return Vec::new();
        }
        let per_resample: Vec<Vec<f64>> = (0..self.resamples)
            .into_par_iter()
            .map(|b| statistic(&self.weights(b, units, slots)))
            .collect();
        let n_stats = per_resample.first().map_or(0, Vec::len);
        (0..n_stats)
            .map(|m| {
                per_resample
                    .iter()
                    .map(|s| s[m])
                    .filter(|v| !v.is_nan())
                    .collect()
            })
            .collect()
    }

    /// The percentile interval of one figure's resampled values; `None` when it was never defined.
    pub(crate) fn interval(&self, values: &[f64]) -> Option<Interval> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let alpha = 1.0 - self.confidence;
        Some(Interval {
            lower: quantile(&sorted, alpha / 2.0),
            upper: quantile(&sorted, 1.0 - alpha / 2.0),
            resamples: sorted.len(),
        })
    }
}

/// The `q`-quantile of sorted, non-empty values with linear interpolation between neighbours
/// (`numpy.quantile`'s default), so the bounds can be reproduced from the samples in Python.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len() - 1;
    let pos = last as f64 * q;
    let i = (pos.floor() as usize).min(last);
    let j = (i + 1).min(last);
    let gamma = pos - i as f64;
    sorted[i] + (sorted[j] - sorted[i]) * gamma
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        // numpy.quantile([1, 2, 3, 4, 5], [0.025, 0.5, 0.975]) == [1.1, 3.0, 4.9]
        assert!((quantile(&v, 0.025) - 1.1).abs() < 1e-12);
        assert!((quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile(&v, 0.975) - 4.9).abs() < 1e-12);
        assert!((quantile(&[7.0], 0.975) - 7.0).abs() < 1e-12);
    }

    #[test]
    fn weights_draw_each_unit_count_with_replacement() {
        let b = Bootstrap::default();
        let units = [1_u32, 3, 4];
        let w = b.weights(5, &units, 6);
        assert_eq!(w.iter().sum::<u32>(), 3);
        assert_eq!((w[0], w[2], w[5]), (0, 0, 0));
        assert_eq!(w, b.weights(5, &units, 6));
        // Across resamples some image must be drawn twice (else this is not a bootstrap).
        assert!((0..50).any(|r| b.weights(r, &units, 6).iter().any(|&c| c > 1)));
    }
}
