//! Answer extraction and comparison for generation tasks, as lm-eval's GSM8K does it:
//! [`Extract`] is the `regex` filter + `take_first` (first or last match; with several
//! groups, the first non-empty one; `[invalid]` when nothing matches), [`Normalizer`] is
//! `exact_match`'s `regexes_to_ignore` + `ignore_case`.

use regex::Regex;

use super::error::{EvalError, Result};
use super::task::Extractor;

/// What lm-eval returns when the regex finds nothing.
pub const INVALID: &str = "[invalid]";

/// A compiled extractor.
#[derive(Debug, Clone)]
pub struct Extract {
    /// Metric variant name (`strict-match`).
    pub name: String,
    re: Regex,
    group_select: i64,
}

impl Extract {
    /// Compile `e`.
    pub fn new(e: &Extractor) -> Result<Self> {
        Ok(Extract {
            name: e.name.clone(),
            re: Regex::new(&e.regex)
                .map_err(|err| EvalError::Invalid(format!("extractor `{}`: {err}", e.name)))?,
            group_select: e.group_select,
        })
    }

    /// The extracted answer of `response`, or [`INVALID`].
    pub fn apply(&self, response: &str) -> String {
        let groups = self.re.captures_len() - 1;
        let matches: Vec<String> = self
            .re
            .captures_iter(response)
            .map(|c| {
                if groups == 0 {
                    c.get(0).map_or("", |m| m.as_str()).to_string()
                } else {
                    (1..=groups)
                        .filter_map(|g| c.get(g).map(|m| m.as_str()))
                        .find(|s| !s.is_empty())
                        .unwrap_or(INVALID)
                        .to_string()
                }
            })
            .collect();
        if matches.is_empty() {
            return INVALID.to_string();
        }
        let n = matches.len() as i64;
        let i = if self.group_select < 0 {
            n + self.group_select
        } else {
            self.group_select
        };
        match usize::try_from(i).ok().and_then(|i| matches.get(i)) {
            Some(m) => m.trim().to_string(),
            None => INVALID.to_string(),
        }
    }
}

/// `exact_match` normalisation: remove every `ignore` regex, then lower-case.
#[derive(Debug, Clone)]
pub struct Normalizer {
    ignore: Vec<Regex>,
    ignore_case: bool,
}

impl Normalizer {
    /// Compile the regexes.
    pub fn new(ignore: &[String], ignore_case: bool) -> Result<Self> {
        let ignore = ignore
            .iter()
            .map(|r| {
                Regex::new(r).map_err(|e| EvalError::Invalid(format!("ignore regex {r:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Normalizer {
            ignore,
            ignore_case,
        })
    }

    /// Normalised text.
    pub fn apply(&self, text: &str) -> String {
        let mut t = text.to_string();
        for re in &self.ignore {
            t = re.replace_all(&t, "").into_owned();
        }
        if self.ignore_case {
            t = t.to_lowercase();
        }
        t
    }

    /// Whether prediction and reference agree after normalisation.
    pub fn matches(&self, prediction: &str, reference: &str) -> bool {
        self.apply(prediction) == self.apply(reference)
    }
}
