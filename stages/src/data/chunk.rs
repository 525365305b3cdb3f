//! Exact chunking of long documents for encoding.
//!
//! The `tokenizers` crate needs on the order of 100 bytes of scratch memory per input
//! byte while encoding (alignments, splits, token strings), so one 4 MB file costs
//! ~0.5 GB, and it occupies one thread while the others idle. For tokenizers whose
//! pre-tokenization is GPT-2 byte-level (optionally after digit splitting) with no
//! normalizer, a newline that follows a non-whitespace character always starts a
//! pre-token: every GPT-2 pattern that matches non-whitespace stops before whitespace,
//! and the whitespace run starting there is matched the same way whether or not text
//! precedes it (the regex has no look-behind). BPE never merges across pre-tokens, so
//! splitting the text right before such a newline gives the same ids as encoding it
//! whole; [`splits_safely`] recognises those tokenizers and [`chunk_ranges`] finds the
//! split points.

use std::ops::Range;

use serde_json::Value;

/// Documents longer than this many bytes are encoded in chunks of about this size.
pub const CHUNK_BYTES: usize = 32 << 10;

/// Whether splitting before a newline that follows non-whitespace preserves ids
/// for the tokenizer described by `tokenizer_json` (a parsed `tokenizer.json`).
pub fn splits_safely(tokenizer_json: &Value) -> bool {
    let normalizer_ok = tokenizer_json.get("normalizer").is_none_or(Value::is_null);
    let added_ok = tokenizer_json
        .get("added_tokens")
        .and_then(Value::as_array)
        .is_none_or(|list| {
            list.iter().all(|t| {
                t.get("content")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.chars().any(char::is_whitespace))
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

/// Byte ranges that cover `text` in order, split only right before a newline that
/// follows a non-whitespace character, each about `target` bytes (longer when no such
/// newline comes soon). Short texts are one range.
pub fn chunk_ranges(text: &str, target: usize) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while text.len() - start > target {
        let mut cut = None;
        let mut i = start + target;
        while i < bytes.len() {
            if bytes[i] == b'\n'
                && text[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| !c.is_whitespace())
            {
                cut = Some(i);
                break;
            }
            i += 1;
        }
        match cut {
            Some(c) => {
                out.push(start..c);
                start = c;
            }
            None => break,
        }
    }
    out.push(start..text.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_text_and_cut_only_before_a_newline_after_non_whitespace() {
        let text = "alpha\nbeta  \ngamma\n  delta\nepsilon\nzeta".repeat(50);
        let ranges = chunk_ranges(&text, 40);
        assert!(ranges.len() > 10);
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(text.len()));
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            let cut = w[0].end;
            assert!(text[cut..].starts_with('\n'));
            assert!(!text[..cut].ends_with(char::is_whitespace));
        }
        assert_eq!(chunk_ranges("short", 40), vec![0..5]);
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
        let mut newline_token = gpt2;
        newline_token["added_tokens"] = serde_json::json!([{"content": "\n\n"}]);
        assert!(!splits_safely(&newline_token));
    }
}
