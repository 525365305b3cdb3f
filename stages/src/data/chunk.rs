//! Exact chunking of long documents for encoding.
//!
//! The `tokenizers` crate needs on the order of 100 bytes of scratch memory per input
//! byte while encoding (alignments, splits, token strings), so one 20 MB document costs
//! gigabytes, and it occupies one thread while the others idle. For tokenizers whose
//! pre-tokenization is GPT-2 byte-level (optionally after digit splitting) with no
//! normalizer, a whitespace character that follows a non-whitespace character always
//! starts a pre-token: every GPT-2 pattern that matches non-whitespace stops before
//! whitespace (only a leading ` ` is taken), and the pre-token starting there is matched
//! the same way whether or not text precedes it (the regex has no look-behind; its one
//! look-ahead, `\s+(?!\S)`, never looks past the non-whitespace character that ends a
//! chunk). BPE never merges across pre-tokens, so splitting the text right before such a
//! whitespace character (a space before a word, a newline after a line's last word)
//! gives the same ids as encoding it whole; [`splits_safely`] recognises those
//! tokenizers and [`chunk_ranges`] finds the split points.

use std::ops::Range;

use serde_json::Value;

/// Documents longer than this many bytes are encoded in chunks of about this size.
pub const CHUNK_BYTES: usize = 32 << 10;

/// Whether splitting before whitespace that follows non-whitespace preserves ids for
/// the tokenizer described by `tokenizer_json` (a parsed `tokenizer.json`). Added
/// tokens must hold no whitespace (a cut could fall inside one) and not `rstrip` (one
/// ending a chunk would no longer absorb the whitespace after it); truncation and
/// padding, which act on the whole encoding, must be off.
pub fn splits_safely(tokenizer_json: &Value) -> bool {
    let off = |key: &str| tokenizer_json.get(key).is_none_or(Value::is_null);
    let normalizer_ok = off("normalizer") && off("truncation") && off("padding");
    let added_ok = tokenizer_json
        .get("added_tokens")
        .and_then(Value::as_array)
        .is_none_or(|list| {
            list.iter().all(|t| {
                t.get("content")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.chars().any(char::is_whitespace))
                    && t.get("rstrip").and_then(Value::as_bool) != Some(true)
            })
        });
    let model_ok = tokenizer_json.get("model").is_some_and(|m| {
        m.get("type").and_then(Value::as_str) == Some("BPE")
            && m.get("dropout").is_none_or(Value::is_null)
    });
    normalizer_ok && added_ok && model_ok && pre_ok(tokenizer_json.get("pre_tokenizer"))
}

fn pre_ok(pre: Option<&Value>) -> bool {
    let Some(pre) = pre else { return false };
    match pre.get("type").and_then(Value::as_str) {
        Some("ByteLevel") => {
            pre.get("add_prefix_space").and_then(Value::as_bool) == Some(false)
                && pre.get("use_regex").and_then(Value::as_bool) != Some(false)
        }
        Some("Sequence") => {
            let list = pre
                .get("pretokenizers")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let byte_level = list
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("ByteLevel"))
                .count();
            byte_level == 1
                && list
                    .iter()
                    .all(|p| match p.get("type").and_then(Value::as_str) {
                        Some("Digits") => true,
                        Some("ByteLevel") => pre_ok(Some(p)),
                        _ => false,
                    })
        }
        _ => false,
    }
}

/// Byte ranges that cover `text` in order, split only right before a whitespace
/// character that follows a non-whitespace character, each at least `target` bytes
/// (longer when no such point comes soon). Short texts are one range.
pub fn chunk_ranges(text: &str, target: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(cut) = next_cut(text, start + target.max(1)) {
        out.push(start..cut);
        start = cut;
    }
    out.push(start..text.len());
    out
}

/// The first split point at or after byte `from`: a whitespace character whose
/// predecessor is not whitespace.
fn next_cut(text: &str, from: usize) -> Option<usize> {
    let mut from = from;
    while from < text.len() && !text.is_char_boundary(from) {
        from += 1;
    }
    let tail = text.get(from..).filter(|t| !t.is_empty())?;
    let mut prev_ws = text[..from]
        .chars()
        .next_back()
        .is_none_or(char::is_whitespace);
    for (i, c) in tail.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws {
            return Some(from + i);
        }
        prev_ws = ws;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_text_and_cut_only_before_whitespace_after_non_whitespace() {
        let text = "alpha\nbeta  \ngamma\n  delta\nepsilon zeta\u{3000}東京 é".repeat(50);
        let ranges = chunk_ranges(&text, 40);
        assert!(ranges.len() > 10);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(text.len()));
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            let cut = w[0].end;
            assert!(text[cut..].starts_with(char::is_whitespace));
            assert!(!text[..cut].ends_with(char::is_whitespace));
        }
        assert_eq!(chunk_ranges("short", 40), vec![0..5]);
        // One long word: no split point, one range.
        let word = "x".repeat(100);
        assert_eq!(chunk_ranges(&word, 10), vec![0..100]);
        // A target inside a multi-byte character.
        let wide = "東京 ".repeat(40);
        for w in chunk_ranges(&wide, 5).windows(2) {
            assert!(wide.is_char_boundary(w[0].end));
        }
    }

    #[test]
    fn only_byte_level_bpe_without_prefix_space_is_split() {
        let gpt2 = serde_json::json!({
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "model": {"type": "BPE", "dropout": null},
            "added_tokens": [{"content": "<|endoftext|>"}]
        });
        assert!(splits_safely(&gpt2));
        let mut prefix = gpt2.clone();
        prefix["pre_tokenizer"]["add_prefix_space"] = true.into();
        assert!(!splits_safely(&prefix));
        let mut metaspace = gpt2.clone();
        metaspace["pre_tokenizer"] = serde_json::json!({"type": "Metaspace"});
        assert!(!splits_safely(&metaspace));
        let mut newline_token = gpt2.clone();
        newline_token["added_tokens"] = serde_json::json!([{"content": "\n\n"}]);
        assert!(!splits_safely(&newline_token));
        let mut rstrip = gpt2.clone();
        rstrip["added_tokens"] = serde_json::json!([{"content": "<m>", "rstrip": true}]);
        assert!(!splits_safely(&rstrip));
        let mut truncated = gpt2;
        truncated["truncation"] = serde_json::json!({"max_length": 512});
        assert!(!splits_safely(&truncated));
    }
}
