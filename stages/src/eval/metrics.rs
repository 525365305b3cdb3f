//! Aggregate metrics: the mean of per-item values with lm-eval's standard error (sample
//! standard deviation over `sqrt(n)`), and the per-task JSON objects of `metrics.json`.

use serde_json::{Map, Value};

/// Mean of `values` (0 when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// lm-eval's `mean_stderr`: sample standard deviation (n - 1) divided by `sqrt(n)`.
pub fn stderr(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let mu = mean(values);
    let var = values.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// Per-item values of each metric of one task, in insertion order.
#[derive(Debug, Clone, Default)]
pub struct MetricSet {
    entries: Vec<(String, Vec<f64>)>,
    /// Items scored.
    pub n: usize,
}

impl MetricSet {
    /// Record one item's value of `metric`.
    pub fn push(&mut self, metric: &str, value: f64) {
        match self.entries.iter_mut().find(|(k, _)| k == metric) {
            Some((_, v)) => v.push(value),
            None => self.entries.push((metric.to_string(), vec![value])),
        }
    }

    /// Add every value of `other` (a group's micro average over its subtasks).
    pub fn extend(&mut self, other: &MetricSet) {
        for (k, vs) in &other.entries {
            for &v in vs {
                self.push(k, v);
            }
        }
        self.n += other.n;
    }

    /// `{"acc": .., "acc_stderr": .., .., "n": n}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, vs) in &self.entries {
            m.insert(k.clone(), json_f64(mean(vs)));
            // lm-eval style: `exact_match,strict-match` -> `exact_match_stderr,strict-match`.
            let se = match k.split_once(',') {
                Some((metric, filter)) => format!("{metric}_stderr,{filter}"),
                None => format!("{k}_stderr"),
            };
            m.insert(se, json_f64(stderr(vs)));
        }
        m.insert("n".into(), Value::from(self.n));
        Value::Object(m)
    }

    /// Mean of one metric, if recorded.
    pub fn mean_of(&self, metric: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(k, _)| k == metric)
            .map(|(_, v)| mean(v))
    }
}

fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Index of the largest value (the first on ties, as `np.argmax`).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// TruthfulQA MC2: probability mass of the true answers among all answers.
pub fn mc2(logliks: &[f64], labels: &[f64]) -> f64 {
    let max = logliks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (mut t, mut all) = (0.0, 0.0);
    for (&ll, &l) in logliks.iter().zip(labels) {
        let p = (ll - max).exp();
        all += p;
        if l == 1.0 {
            t += p;
        }
    }
    if all > 0.0 { t / all } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_matches_numpy() {
        // np.std([1,0,1,1], ddof=1) / 2 = 0.25
        assert!((stderr(&[1.0, 0.0, 1.0, 1.0]) - 0.25).abs() < 1e-12);
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        let m = mc2(
            &[(0.5f64).ln(), (0.25f64).ln(), (0.25f64).ln()],
            &[1.0, 0.0, 1.0],
        );
        assert!((m - 0.75).abs() < 1e-12);
    }
}
