//! "Did you mean" suggestions for near-miss keys, stage names and kinds.

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&word.to_lowercase(), &c.to_lowercase());
        let close = score >= 0.8 || strsim::damerau_levenshtein(word, c) <= 2.min(c.len() / 2);
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// `did you mean `x`?` as a help line.
pub fn help(word: &str, candidates: impl IntoIterator<Item = impl AsRef<str>>) -> Option<String> {
    let owned: Vec<String> = candidates
        .into_iter()
        .map(|c| c.as_ref().to_string())
        .collect();
    let suggestion = did_you_mean(word, owned.iter().map(String::as_str));
    match suggestion {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if !owned.is_empty() && owned.len() <= 12 => Some(format!(
            "expected one of {}",
            owned
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("inptus", ["inputs", "with", "kind"]).as_deref(),
            Some("inputs")
        );
        assert_eq!(
            did_you_mean("tokk", ["tok", "base"]).as_deref(),
            Some("tok")
        );
        assert_eq!(did_you_mean("zzzz", ["inputs", "with"]), None);
    }
}
