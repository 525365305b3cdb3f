//! Statistics for comparing rows of a results table over the same items: mean and
//! sample standard deviation across seeds, a paired bootstrap confidence interval of the
//! mean difference, and McNemar's test for paired right/wrong outcomes.

use crate::rng::SplitMix64;

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for one value).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// A paired bootstrap estimate of a mean difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Mean of the differences.
    pub mean: f64,
    /// Lower and upper percentile bounds.
    pub lo: f64,
    pub hi: f64,
}

/// Percentile bootstrap of the mean of `diffs` (one per item, A − B): `resamples`
/// resamples of the items with replacement, the `(1 - level) / 2` and `(1 + level) / 2`
/// percentiles of their means (linear interpolation between order statistics, as
/// numpy's default). Deterministic for a given `seed`.
pub fn paired_bootstrap(diffs: &[f64], resamples: usize, level: f64, seed: u64) -> Interval {
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n as f64;
    if n == 0 || resamples == 0 {
        return Interval {
            mean,
            lo: f64::NAN,
            hi: f64::NAN,
        };
    }
    let mut rng = SplitMix64::with_stream(seed, 0x0b00_7574);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diffs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Interval {
        mean,
        lo: percentile(&means, (1.0 - level) / 2.0),
        hi: percentile(&means, (1.0 + level) / 2.0),
    }
}

/// The `q` quantile of sorted `v` by linear interpolation (numpy's `linear`).
fn percentile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// McNemar's test on paired binary outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McNemar {
    /// Pairs where A is right and B wrong.
    pub a_only: u64,
    /// Pairs where B is right and A wrong.
    pub b_only: u64,
    /// Exact two-sided p-value: the binomial test of `a_only` out of `a_only + b_only`
    /// at 1/2 (statsmodels' `mcnemar(exact=True)`).
    pub p_exact: f64,
    /// The chi-square statistic with continuity correction and its p-value (1 degree of
    /// freedom; statsmodels' `mcnemar(exact=False, correction=True)`), except on ties
    /// (`a_only == b_only`): there, as R's `mcnemar.test`, no correction (statistic 0,
    /// p 1), where statsmodels computes `(0 - 1)^2 / n`.
    pub chi2: f64,
    pub p_chi2: f64,
}

/// McNemar's test of paired outcomes `(a_right, b_right)`.
pub fn mcnemar(pairs: impl IntoIterator<Item = (bool, bool)>) -> McNemar {
    let (mut a_only, mut b_only) = (0u64, 0u64);
    for (a, b) in pairs {
        match (a, b) {
            (true, false) => a_only += 1,
            (false, true) => b_only += 1,
            _ => {}
        }
    }
    let n = a_only + b_only;
    let p_exact = if n == 0 {
        1.0
    } else {
        (2.0 * binomial_cdf(a_only.min(b_only), n)).min(1.0)
    };
    let (chi2, p_chi2) = if n == 0 {
        (0.0, 1.0)
    } else {
        let d = (a_only as f64 - b_only as f64).abs() - 1.0;
        let x = d.max(0.0).powi(2) / n as f64;
        // erfc's fit is 3e-8 above 1 at 0: a p-value is at most 1.
        (x, erfc((x / 2.0).sqrt()).min(1.0))
    };
    McNemar {
        a_only,
        b_only,
        p_exact,
        chi2,
        p_chi2,
    }
}

/// P(X <= k) for X ~ Binomial(n, 1/2), summed in log space (no underflow for large n).
fn binomial_cdf(k: u64, n: u64) -> f64 {
    let mut log_pmf = n as f64 * 0.5f64.ln();
    let mut logs = vec![log_pmf];
    for i in 1..=k {
        log_pmf += ((n - i + 1) as f64 / i as f64).ln();
        logs.push(log_pmf);
    }
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max.exp() * logs.iter().map(|l| (l - max).exp()).sum::<f64>()
}

/// The complementary error function, |relative error| < 1.2e-7 (Numerical Recipes'
/// Chebyshev fit, `erfcc`).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_sd_is_the_sample_deviation() {
        let (m, s) = mean_sd(&[0.1, 0.2, 0.3]);
        assert!((m - 0.2).abs() < 1e-15);
        assert!((s - 0.1).abs() < 1e-15);
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
    }

    /// Reference values from statsmodels (dev/check_report_stats.py checks the report
    /// stage against it on more cases):
    /// `mcnemar([[_, 10], [3, _]], exact=True).pvalue` = 0.092285156250,
    /// `exact=False` (continuity-corrected) = 0.0960923295.
    #[test]
    fn mcnemar_matches_statsmodels() {
        let pairs = std::iter::repeat_n((true, false), 10)
            .chain(std::iter::repeat_n((false, true), 3))
            .chain(std::iter::repeat_n((true, true), 40));
        let m = mcnemar(pairs);
        assert_eq!((m.a_only, m.b_only), (10, 3));
        assert!(
            (m.p_exact - 0.092_285_156_25).abs() < 1e-12,
            "{}",
            m.p_exact
        );
        assert!((m.chi2 - 36.0 / 13.0).abs() < 1e-12);
        assert!((m.p_chi2 - 0.096_092_329_5).abs() < 1e-6, "{}", m.p_chi2);
        assert_eq!(mcnemar([(true, true)]).p_exact, 1.0);
    }

    /// Ties: the exact p is 1 (2 x P(X <= 5) of Binomial(10, 1/2), capped), the
    /// corrected statistic is 0, not statsmodels' (0 - 1)^2 / 10, and its p is 1, not
    /// erfc(0)'s fitted 1.00000003 (found by dev/check_report_stats.py).
    #[test]
    fn mcnemar_on_ties_is_p_one_without_a_negative_correction() {
        let pairs = std::iter::repeat_n((true, false), 5)
            .chain(std::iter::repeat_n((false, true), 5))
            .chain(std::iter::repeat_n((false, false), 30));
        let m = mcnemar(pairs);
        assert_eq!((m.a_only, m.b_only), (5, 5));
        assert_eq!((m.p_exact, m.chi2, m.p_chi2), (1.0, 0.0, 1.0));
    }

    #[test]
    fn bootstrap_brackets_the_mean_and_is_deterministic() {
        let diffs: Vec<f64> = (0..200).map(|i| f64::from(i % 3 == 0) - 0.2).collect();
        let a = paired_bootstrap(&diffs, 2000, 0.95, 7);
        assert_eq!(a, paired_bootstrap(&diffs, 2000, 0.95, 7));
        assert!(a.lo < a.mean && a.mean < a.hi, "{a:?}");
        // Normal approximation: mean ± 1.96 sd/sqrt(n).
        let (m, sd) = mean_sd(&diffs);
        let half = 1.96 * sd / (diffs.len() as f64).sqrt();
        assert!((a.lo - (m - half)).abs() < 0.01, "{a:?} vs {}", m - half);
        assert!((a.hi - (m + half)).abs() < 0.01, "{a:?} vs {}", m + half);
    }
}
