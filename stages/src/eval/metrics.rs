//! Aggregate metrics: the mean of per-item values with lm-eval's standard error (sample
//! standard deviation over `sqrt(n)`), the ratio aggregates of perplexity tasks
//! (lm-eval's `weighted_perplexity` and `bits_per_byte`: totals over the corpus, not
//! means of per-item ratios) and the per-task JSON objects of `metrics.json`.

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

/// How a metric's per-item values become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The mean of the values, reported with its standard error.
    Mean,
    /// `exp(-Σ loglik / Σ count)` over `(loglik, count)` pairs (lm-eval's
    /// `weighted_perplexity`; no standard error, as lm-eval).
    Perplexity,
    /// `-Σ loglik / Σ bytes / ln 2` over `(loglik, bytes)` pairs.
    BitsPerByte,
}

impl Aggregate {
    fn apply(self, values: &[(f64, f64)]) -> f64 {
        let ratio = || {
            let (a, b) = values
                .iter()
                .fold((0.0, 0.0), |(a, b), (x, w)| (a + x, b + w));
            if b > 0.0 { a / b } else { f64::NAN }
        };
        match self {
            Aggregate::Mean => mean(&values.iter().map(|v| v.0).collect::<Vec<_>>()),
            Aggregate::Perplexity => (-ratio()).exp(),
            Aggregate::BitsPerByte => -ratio() / std::f64::consts::LN_2,
        }
    }
}

/// One metric: its aggregation and per-item `(value, weight)` pairs.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    aggregate: Aggregate,
    values: Vec<(f64, f64)>,
}

/// Per-item values of each metric of one task, in insertion order.
#[derive(Debug, Clone, Default)]
pub struct MetricSet {
    entries: Vec<Entry>,
    /// Items scored.
    pub n: usize,
}

impl MetricSet {
    /// Record one item's value of `metric` (aggregated by its mean).
    pub fn push(&mut self, metric: &str, value: f64) {
        self.push_with(metric, Aggregate::Mean, value, 1.0);
    }

    /// Record one item's `(value, weight)` pair of a metric aggregated by `aggregate`.
    pub fn push_with(&mut self, metric: &str, aggregate: Aggregate, value: f64, weight: f64) {
        match self.entries.iter_mut().find(|e| e.name == metric) {
            Some(e) => e.values.push((value, weight)),
            None => self.entries.push(Entry {
                name: metric.to_string(),
                aggregate,
                values: vec![(value, weight)],
            }),
        }
    }

    /// Item `k`'s value of every metric recorded once per item, in insertion order.
    pub fn item_values(&self, k: usize) -> Vec<(String, f64)> {
        self.entries
            .iter()
            .filter(|e| e.values.len() == self.n)
            .filter_map(|e| Some((e.name.clone(), e.values.get(k)?.0)))
            .collect()
    }

    /// Add every value of `other` (a group's micro average over its subtasks).
    pub fn extend(&mut self, other: &MetricSet) {
        for e in &other.entries {
            for &(v, w) in &e.values {
                self.push_with(&e.name, e.aggregate, v, w);
            }
        }
        self.n += other.n;
    }

    /// `{"acc": .., "acc_stderr": .., .., "n": n}` (ratio aggregates have no stderr).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for e in &self.entries {
            m.insert(e.name.clone(), json_f64(e.aggregate.apply(&e.values)));
            if e.aggregate != Aggregate::Mean {
                continue;
            }
            // lm-eval style: `exact_match,strict-match` -> `exact_match_stderr,strict-match`.
            let se = match e.name.split_once(',') {
                Some((metric, filter)) => format!("{metric}_stderr,{filter}"),
                None => format!("{}_stderr", e.name),
            };
            let vs: Vec<f64> = e.values.iter().map(|v| v.0).collect();
            m.insert(se, json_f64(stderr(&vs)));
        }
        m.insert("n".into(), Value::from(self.n));
        Value::Object(m)
    }

    /// The aggregate value of one metric, if recorded.
    pub fn value_of(&self, metric: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|e| e.name == metric)
            .map(|e| e.aggregate.apply(&e.values))
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

    #[test]
    fn ratio_aggregates_are_corpus_totals() {
        // lm-eval: weighted_perplexity = exp(-Σll/Σw), bits_per_byte = -Σll/Σw/ln 2.
        let mut ms = MetricSet::default();
        for (ll, w) in [(-10.0, 4.0), (-2.0, 8.0)] {
            ms.push_with("word_perplexity", Aggregate::Perplexity, ll, w);
            ms.push_with("bits_per_byte", Aggregate::BitsPerByte, ll, w);
        }
        let mut group = MetricSet::default();
        group.extend(&ms);
        assert!((group.value_of("word_perplexity").unwrap() - 1.0f64.exp()).abs() < 1e-12);
        let bpb = group.value_of("bits_per_byte").unwrap();
        assert!((bpb - 1.0 / std::f64::consts::LN_2).abs() < 1e-12);
        let json = ms.to_json();
        assert!(json.get("word_perplexity_stderr").is_none());
        assert!(json.get("word_perplexity").is_some());
    }
}
