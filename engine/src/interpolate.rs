//! `${defaults.X}` and `${grid.X}` placeholders.
//!
//! A string that is exactly one placeholder is replaced by the referenced value itself
//! (keeping its type and its source position, so an error about a grid value points at
//! the grid); a placeholder inside a longer string is replaced by the value's text.

use crate::error::Diagnostic;
use crate::yaml::{Node, Value};

/// One `${scope.name}` occurrence.
#[derive(Debug, PartialEq)]
pub struct Placeholder<'a> {
    pub start: usize,
    pub end: usize,
    pub scope: &'a str,
    pub name: &'a str,
}

/// Every placeholder in `s`, or a message for an unterminated or malformed one.
pub fn placeholders(s: &str) -> Result<Vec<Placeholder<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(i) = s[rest..].find("${") {
        let start = rest + i;
        let Some(len) = s[start..].find('}') else {
            return Err(format!("unterminated placeholder in `{s}` (missing `}}`)"));
        };
        let end = start + len + 1;
        let inner = &s[start + 2..end - 1];
        let Some((scope, name)) = inner.split_once('.') else {
            return Err(format!(
                "placeholder `${{{inner}}}` must be `${{grid.NAME}}` or `${{defaults.NAME}}`"
            ));
        };
        out.push(Placeholder {
            start,
            end,
            scope,
            name,
        });
        rest = end;
    }
    Ok(out)
}

/// Resolves a placeholder to a value node (or None when unknown).
pub trait Lookup {
    fn lookup(&self, scope: &str, name: &str) -> Option<&Node>;
}

/// Substitutes every placeholder below `node`.
pub fn substitute(node: &Node, env: &dyn Lookup) -> Result<Node, Diagnostic> {
    Ok(match &node.value {
        Value::Str(s) => substitute_str(node, s, env)?,
        Value::Seq(items) => Node {
            value: Value::Seq(
                items
                    .iter()
                    .map(|n| substitute(n, env))
                    .collect::<Result<_, _>>()?,
            ),
            span: node.span.clone(),
        },
        Value::Map(entries) => Node {
            value: Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), substitute(v, env)?)))
                    .collect::<Result<_, Diagnostic>>()?,
            ),
            span: node.span.clone(),
        },
        _ => node.clone(),
    })
}

fn substitute_str(node: &Node, s: &str, env: &dyn Lookup) -> Result<Node, Diagnostic> {
    let found = placeholders(s).map_err(|m| Diagnostic::at(&node.span, m))?;
    if found.is_empty() {
        return Ok(node.clone());
    }
    let resolve = |p: &Placeholder| {
        env.lookup(p.scope, p.name).ok_or_else(|| {
            Diagnostic::at(
                &node.span,
                format!("unknown placeholder `${{{}.{}}}`", p.scope, p.name),
            )
        })
    };
    if let [p] = found.as_slice()
        && p.start == 0
        && p.end == s.len()
    {
        return resolve(p).cloned();
    }
    let mut text = String::new();
    let mut last = 0;
    for p in &found {
        text.push_str(&s[last..p.start]);
        let value = resolve(p)?;
        match value.to_json() {
            serde_json::Value::String(v) => text.push_str(&v),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                text.push_str(&v.to_string())
            }
            _ => {
                return Err(Diagnostic::at(
                    &node.span,
                    format!(
                        "`${{{}.{}}}` is {} and cannot be spliced into a string",
                        p.scope,
                        p.name,
                        value.type_name()
                    ),
                ));
            }
        }
        last = p.end;
    }
    text.push_str(&s[last..]);
    Ok(Node {
        value: Value::Str(text),
        span: node.span.clone(),
    })
}

/// Every string below `node` (for scanning placeholders).
pub fn strings(node: &Node, out: &mut Vec<(String, crate::yaml::Span)>) {
    match &node.value {
        Value::Str(s) => out.push((s.clone(), node.span.clone())),
        Value::Seq(items) => items.iter().for_each(|n| strings(n, out)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders() {
        let p = placeholders("a ${grid.layout} b ${defaults.seed}").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].scope, p[0].name), ("grid", "layout"));
        assert_eq!((p[1].scope, p[1].name), ("defaults", "seed"));
        assert!(placeholders("${grid.x").is_err());
        assert!(placeholders("${nodot}").is_err());
    }
}
