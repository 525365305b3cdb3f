//! A deliberately tiny template language for prompts in task definitions.
//!
//! `{path}` inserts a record field (`query`, `answer.text`, `choices[0]`), `{path|f|g:arg}`
//! applies filters left to right, `{{` and `}}` are literal braces. Filters: `trim`,
//! `trim_end`, `lower`, `upper`, `capitalize` (Python's `str.capitalize`), `spaces`
//! (underscores to spaces), `strip_prefix:TEXT`, `before:TEXT` (the text before the
//! first TEXT), `hellaswag` (lm-eval's HellaSwag `preprocess`). [`apply_filter`] is also used for task-level `context_filters` /
//! `choice_filters`.

use std::sync::OnceLock;

use super::data::Field;
use super::error::{EvalError, Result};

/// Render `template`, looking fields up with `lookup` (which returns `None` when absent).
pub fn render<'a>(template: &str, lookup: &dyn Fn(&str) -> Option<&'a Field>) -> Result<String> {
    let err = |message: String| EvalError::Template {
        template: template.to_string(),
        message,
    };
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
            continue;
        }
        if tail.starts_with('}') {
            return Err(err("unmatched `}` (write `}}` for a literal brace)".into()));
        }
        let end = tail
            .find('}')
            .ok_or_else(|| err("unclosed `{` (write `{{` for a literal brace)".into()))?;
        let expr = &tail[1..end];
        let mut parts = expr.split('|');
        let path = parts.next().unwrap_or("").trim();
        let value = resolve(path, lookup).ok_or_else(|| err(format!("no field `{path}`")))?;
        let mut text = value
            .to_text()
            .ok_or_else(|| err(format!("field `{path}` is {}, not text", value.kind())))?;
        for filter in parts {
            text = apply_filter(filter, &text).map_err(err)?;
        }
        out.push_str(&text);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Follow `a.b[2]` through nested fields.
pub fn resolve<'a>(path: &str, lookup: &dyn Fn(&str) -> Option<&'a Field>) -> Option<&'a Field> {
    let mut segments = path.split('.');
    let first = segments.next()?;
    let (name, indices) = split_indices(first)?;
    let mut value = lookup(name)?;
    value = index_into(value, &indices)?;
    for seg in segments {
        let (name, indices) = split_indices(seg)?;
        value = index_into(value.get(name)?, &indices)?;
    }
    Some(value)
}

fn split_indices(seg: &str) -> Option<(&str, Vec<usize>)> {
    let Some(open) = seg.find('[') else {
        return Some((seg, Vec::new()));
    };
    let mut indices = Vec::new();
    for part in seg[open..].split('[').skip(1) {
        indices.push(part.strip_suffix(']')?.trim().parse().ok()?);
    }
    Some((&seg[..open], indices))
}

fn index_into<'a>(mut value: &'a Field, indices: &[usize]) -> Option<&'a Field> {
    for &i in indices {
        value = match value {
            Field::List(items) => items.get(i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Apply one filter (`name` or `name:arg`) to `text`.
pub fn apply_filter(filter: &str, text: &str) -> std::result::Result<String, String> {
    let (name, arg) = match filter.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a)),
        None => (filter.trim(), None),
    };
    Ok(match (name, arg) {
        ("trim", None) => text.trim().to_string(),
        ("trim_end", None) => text.trim_end().to_string(),
        ("lower", None) => text.to_lowercase(),
        ("upper", None) => text.to_uppercase(),
        ("capitalize", None) => capitalize(text),
        ("spaces", None) => text.replace('_', " "),
        ("strip_prefix", Some(p)) => text.strip_prefix(p).unwrap_or(text).to_string(),
        ("before", Some(sep)) if !sep.is_empty() => {
            text.split(sep).next().unwrap_or(text).to_string()
        }
        ("hellaswag", None) => hellaswag_preprocess(text),
        ("wikitext", None) => wikitext_detokenize(text),
        _ => {
            return Err(format!(
                "unknown filter `{filter}`; known: trim, trim_end, lower, upper, capitalize, spaces, strip_prefix:TEXT, before:TEXT, hellaswag, wikitext"
            ));
        }
    })
}

/// Python's `str.capitalize`: first character upper case, the rest lower case.
pub fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.as_str().to_lowercase().chars())
            .collect(),
        None => String::new(),
    }
}

/// lm-eval's `hellaswag.utils.preprocess`: strip, ` [title]` -> `. `, drop `[...]`
/// artifacts of the WikiHow part, collapse double spaces (once, as Python's `replace`).
pub fn hellaswag_preprocess(text: &str) -> String {
    static BRACKETS: OnceLock<regex::Regex> = OnceLock::new();
    let re = BRACKETS.get_or_init(|| regex::Regex::new(r"\[.*?\]").expect("valid regex"));
    let t = text.trim().replace(" [title]", ". ");
    re.replace_all(&t, "").replace("  ", " ")
}

/// lm-eval's `wikitext_detokenizer`, step by step in its order (including its literal
/// `/'[0-9]/` replacement).
pub fn wikitext_detokenize(text: &str) -> String {
    static PATTERNS: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            (r"\(\s*([^)]*?)\s*\)", "(${1})"),
            (r"\[\s*([^\]]*?)\s*\]", "[${1}]"),
            (r"\{\s*([^}]*?)\s*\}", "{${1}}"),
            (r#""\s*([^"]*?)\s*""#, "\"${1}\""),
            (r"'\s*([^']*?)\s*'", "'${1}'"),
        ]
        .into_iter()
        .map(|(p, r)| (regex::Regex::new(p).expect("valid regex"), r))
        .collect()
    });
    static SLASH_DIGIT: OnceLock<regex::Regex> = OnceLock::new();
    let slash_digit =
        SLASH_DIGIT.get_or_init(|| regex::Regex::new(r"/' [0-9]/").expect("valid regex"));
    let mut s = text.replace("s '", "s'");
    s = slash_digit
        .replace_all(&s, regex::NoExpand("/'[0-9]/"))
        .into_owned();
    for (from, to) in [
        (" @-@ ", "-"),
        (" @,@ ", ","),
        (" @.@ ", "."),
        (" : ", ": "),
        (" ; ", "; "),
        (" . ", ". "),
        (" ! ", "! "),
        (" ? ", "? "),
        (" , ", ", "),
    ] {
        s = s.replace(from, to);
    }
    for (re, to) in patterns {
        s = re.replace_all(&s, *to).into_owned();
    }
    for (from, to) in [
        ("= = = =", "===="),
        ("= = =", "==="),
        ("= =", "=="),
        (" \u{b0} ", "\u{b0}"),
        (" \n", "\n"),
        ("\n ", "\n"),
        (" N ", " 1 "),
        (" 's", "'s"),
    ] {
        s = s.replace(from, to);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Field {
        serde_json::from_str(
            r#"{"q": "  Why? ", "choices": ["a", "b"], "m": {"x": 3}, "subject": "high_school_math"}"#,
        )
        .unwrap()
    }

    #[test]
    fn renders_paths_and_filters() {
        let d = doc();
        let look = |k: &str| d.get(k);
        let s = render(
            "{q|trim}\nA. {choices[0]}\nB. {choices[1]} {m.x} {subject|spaces} {{x}}",
            &look,
        )
        .unwrap();
        assert_eq!(s, "Why?\nA. a\nB. b 3 high school math {x}");
        let e = render("{nope}", &look).unwrap_err().to_string();
        assert!(e.contains("no field `nope`"), "{e}");
        assert!(render("{q|bogus}", &look).is_err());
        assert_eq!(
            apply_filter("before:,", "Jurisdiction, Arbitration").unwrap(),
            "Jurisdiction"
        );
        assert_eq!(apply_filter("before:,", "None").unwrap(), "None");
        assert!(
            apply_filter("before:", "x").is_err(),
            "an empty separator is refused"
        );
    }

    #[test]
    fn python_capitalize_and_hellaswag() {
        assert_eq!(capitalize("then, the MAN"), "Then, the man");
        assert_eq!(
            hellaswag_preprocess(" Home [title] How to x [step] Do  it "),
            "Home. How to x Do it"
        );
    }

    #[test]
    fn wikitext_detokenizer_matches_lm_eval() {
        // Expected output computed with lm_eval.tasks.wikitext.preprocess_wikitext
        // .wikitext_detokenizer (lm-eval 0.4.13) on the same input.
        let page = " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 , lit . Valkyria of the Battlefield 3 ) , commonly referred to as Valkyria Chronicles III outside Japan , is a tactical role @-@ playing video game . It sold 1 @,@ 000 copies at 25 @.@ 5 ° C , the \" best \" ' game ' N times . The players ' s [ note ] { x } \n = = Gameplay = = \n a /' 7/ b ; c ! d ? = = = = e 's\n";
        assert_eq!(wikitext_detokenize(page), WIKITEXT_EXPECTED);
    }

    const WIKITEXT_EXPECTED: &str = " = Valkyria Chronicles III =\n\nSenjō no Valkyria 3: Unrecorded Chronicles (Japanese: 戦場のヴァルキュリア3, lit. Valkyria of the Battlefield 3), commonly referred to as Valkyria Chronicles III outside Japan, is a tactical role-playing video game. It sold 1,000 copies at 25.5°C, the \"best\" 'game' 1 times. The players's [note] {x}\n== Gameplay ==\na /'[0-9]/ b; c! d? ==== e's\n";
}
