//! A YAML reader that keeps where every key and value came from.
//!
//! serde_yaml loses positions once a document is parsed, but every manifest error must
//! name `file:line:column`. This module turns yaml-rust2's marked event stream into a
//! [`Node`] tree: each node and each mapping key carries a [`Span`]. Scalars are typed
//! with the YAML 1.2 core schema (null, bool, int, float, string); quoted scalars stay
//! strings. Anchors and aliases are supported by copying the anchored node.
//!
//! Hostile input is bounded ([`Limits`]): copying makes a 600-byte "billion laughs"
//! document expand to gigabytes, so the number of alias expansions, the total size they
//! add and the nesting depth are capped, each with an error at the alias that crossed
//! the limit. Duplicate keys are found with a hash index (linear in the keys). A file
//! may start with a UTF-8 byte-order mark; a file that is not UTF-8 is rejected with
//! the offset of its first bad byte.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::Diagnostic;

/// The text of one manifest file, shared by all spans that point into it.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// A position in a source file (line and column are 1-based).
#[derive(Clone, Debug)]
pub struct Span {
    pub file: Arc<SourceFile>,
    pub line: usize,
    pub col: usize,
}

impl Span {
    /// A span that points at the start of a file (for errors about a whole file).
    pub fn file_start(file: Arc<SourceFile>) -> Span {
        Span {
            file,
            line: 1,
            col: 1,
        }
    }
}

/// A YAML value with the position of its first character.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// A mapping key with its position.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order; duplicates are rejected while parsing.
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// A short name of this node's type for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entry for `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Converts to JSON (the representation stage parameters are checked in).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Rebuilds a node from JSON, every part pointing at `span` (used after substitution).
    pub fn from_json(value: &serde_json::Value, span: &Span) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(items) => Value::Seq(items.iter().map(|v| Node::from_json(v, span)).collect()),
            J::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                name: k.clone(),
                                span: span.clone(),
                            },
                            Node::from_json(v, span),
                        )
                    })
                    .collect(),
            ),
        };
        Node {
            value,
            span: span.clone(),
        }
    }

    /// The span of the value at a JSON-style path below this node (object keys and
    /// array indices), or of the deepest node on the way that exists.
    pub fn span_at(&self, path: &[PathSegment]) -> &Span {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (PathSegment::Key(k), Value::Map(entries)) => entries
                    .iter()
                    .find(|(key, _)| &key.name == k)
                    .map(|(_, v)| v),
                (PathSegment::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        &node.span
    }

    /// The span of the key at `path` (its last segment must be a key), if present.
    pub fn key_span_at(&self, path: &[PathSegment]) -> Option<&Span> {
        let (last, parent) = path.split_last()?;
        let PathSegment::Key(name) = last else {
            return None;
        };
        let mut node = self;
        for seg in parent {
            node = match (seg, &node.value) {
                (PathSegment::Key(k), Value::Map(entries)) => {
                    &entries.iter().find(|(key, _)| &key.name == k)?.1
                }
                (PathSegment::Index(i), Value::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        node.as_map()?
            .iter()
            .find(|(k, _)| &k.name == name)
            .map(|(k, _)| &k.span)
    }
}

/// One step of a path into a document.
#[derive(Clone, Debug, PartialEq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// Caps on what one document may expand to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Alias uses (`*name`) in one document.
    pub aliases: usize,
    /// Total size of the nodes copied for aliases (scalar and key bytes, plus 16 per
    /// node).
    pub expanded_bytes: u64,
    /// Nesting of lists and mappings, aliases expanded.
    pub depth: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        aliases: 10_000,
        expanded_bytes: 10 * 1024 * 1024,
        depth: 200,
    };
}

/// Reads and parses a YAML file (a leading byte-order mark is skipped).
pub fn load_file(path: &Path) -> Result<Node, Diagnostic> {
    let bytes = std::fs::read(path)
        .map_err(|e| Diagnostic::in_file(path, format!("cannot read manifest: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bad = e.as_bytes()[at];
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
        Diagnostic::in_file(
            path,
            format!(
                "the manifest is not valid UTF-8: byte 0x{bad:02x} at byte offset {at} (line {line}, byte {col} of the line)"
            ),
        )
    })?;
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    parse(Arc::new(SourceFile {
        path: path.to_path_buf(),
        text,
    }))
}

/// Parses the first document of `file` (an empty file is an empty mapping) within
/// [`Limits::DEFAULT`].
pub fn parse(file: Arc<SourceFile>) -> Result<Node, Diagnostic> {
    let mut builder = Builder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        error: None,
        limits: Limits::DEFAULT,
        aliases: 0,
        expanded_bytes: 0,
    };
    let mut parser = Parser::new_from_str(&file.text);
    let parsed = parser.load(&mut builder, false);
    // The builder stops at its first error, which comes before any later syntax error.
    if let Some(err) = builder.error {
        return Err(err);
    }
    if let Err(e) = parsed {
        let m = e.marker();
        return Err(Diagnostic::at(
            &span_of(&file, m),
            format!("invalid YAML: {}", e.info()),
        ));
    }
    Ok(builder.root.unwrap_or_else(|| Node {
        value: Value::Map(Vec::new()),
        span: Span::file_start(file),
    }))
}

fn span_of(file: &Arc<SourceFile>, m: &Marker) -> Span {
    // yaml-rust2 reports 0-based columns.
    Span {
        file: file.clone(),
        line: m.line().max(1),
        col: m.col() + 1,
    }
}

/// The size of a built node, for the alias limits.
#[derive(Clone, Copy, Debug, Default)]
struct Weight {
    bytes: u64,
    /// Levels of lists and mappings in the node (0 for a scalar).
    depth: usize,
}

/// Per-node overhead counted in [`Weight::bytes`].
const NODE_BYTES: u64 = 16;

impl Weight {
    fn scalar(text: &str) -> Weight {
        Weight {
            bytes: NODE_BYTES + text.len() as u64,
            depth: 0,
        }
    }

    /// Adds a child of a collection.
    fn add(&mut self, child: Weight) {
        self.bytes = self.bytes.saturating_add(child.bytes);
        self.depth = self.depth.max(child.depth + 1);
    }
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
        weight: Weight,
    },
    Map {
        node: Node,
        anchor: usize,
        weight: Weight,
        pending_key: Option<Key>,
        /// Key name -> the position it was first defined at.
        seen: HashMap<String, Span>,
    },
}

struct Builder {
    file: Arc<SourceFile>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, Weight)>,
    root: Option<Node>,
    error: Option<Diagnostic>,
    limits: Limits,
    aliases: usize,
    expanded_bytes: u64,
}

/// A mapping key's text (plain values only).
fn key_name(node: &Node) -> Option<String> {
    Some(match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

impl Builder {
    fn fail(&mut self, span: &Span, message: impl Into<String>) {
        self.error.get_or_insert(Diagnostic::at(span, message));
    }

    fn push_value(&mut self, node: Node, anchor: usize, weight: Weight) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        let mut failure = None;
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq {
                node: seq,
                weight: total,
                ..
            }) => {
                total.add(weight);
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map {
                node: map,
                weight: total,
                pending_key,
                seen,
                ..
            }) => {
                total.add(weight);
                match pending_key.take() {
                    None => {
                        let name = key_name(&node).unwrap_or_else(|| {
                            failure = Some((
                                node.span.clone(),
                                "a mapping key must be a plain value, not a list or mapping"
                                    .to_string(),
                            ));
                            String::new()
                        });
                        if let Some(first) = seen.get(&name) {
                            failure.get_or_insert((
                                node.span.clone(),
                                format!(
                                    "duplicate key `{name}` (first defined at line {}:{})",
                                    first.line, first.col
                                ),
                            ));
                        } else {
                            seen.insert(name.clone(), node.span.clone());
                        }
                        *pending_key = Some(Key {
                            name,
                            span: node.span,
                        });
                    }
                    Some(key) => {
                        if let Value::Map(entries) = &mut map.value {
                            entries.push((key, node));
                        }
                    }
                }
            }
        }
        if let Some((span, message)) = failure {
            self.fail(&span, message);
        }
    }

    /// Opens a list or mapping, unless that nests deeper than the limit.
    fn open(&mut self, frame: Frame, span: &Span) {
        if self.stack.len() >= self.limits.depth {
            let msg = format!(
                "lists and mappings nest more than {} deep (limit on nesting depth)",
                self.limits.depth
            );
            self.fail(span, msg);
        } else {
            self.stack.push(frame);
        }
    }

    /// Copies the anchored node for an alias, within the limits.
    fn alias(&mut self, id: usize, span: Span) {
        let Some((node, weight)) = self.anchors.get(&id) else {
            self.fail(&span, "alias to an unknown anchor");
            return;
        };
        let weight = *weight;
        self.aliases += 1;
        self.expanded_bytes = self.expanded_bytes.saturating_add(weight.bytes);
        let limit = if self.aliases > self.limits.aliases {
            Some(format!(
                "more than {} alias expansions (limit on aliases per document)",
                self.limits.aliases
            ))
        } else if self.expanded_bytes > self.limits.expanded_bytes {
            Some(format!(
                "aliases expand the document past {} bytes (limit on the total size of alias expansions)",
                self.limits.expanded_bytes
            ))
        } else if self.stack.len() + weight.depth >= self.limits.depth {
            Some(format!(
                "this alias nests lists and mappings more than {} deep (limit on nesting depth)",
                self.limits.depth
            ))
        } else {
            None
        };
        match limit {
            Some(msg) => self.fail(&span, msg),
            None => {
                let node = Node {
                    span,
                    ..node.clone()
                };
                self.push_value(node, 0, weight);
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return; // the first error is reported; stop building
        }
        let span = span_of(&self.file, &mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let weight = Weight::scalar(&text);
                let value = if style == TScalarStyle::Plain {
                    resolve_plain(&text)
                } else {
                    Value::Str(text)
                };
                self.push_value(Node { value, span }, anchor, weight);
            }
            Event::SequenceStart(anchor, _) => {
                let frame = Frame::Seq {
                    node: Node {
                        value: Value::Seq(Vec::new()),
                        span: span.clone(),
                    },
                    anchor,
                    weight: Weight::scalar(""),
                };
                self.open(frame, &span);
            }
            Event::MappingStart(anchor, _) => {
                let frame = Frame::Map {
                    node: Node {
                        value: Value::Map(Vec::new()),
                        span: span.clone(),
                    },
                    anchor,
                    weight: Weight::scalar(""),
                    pending_key: None,
                    seen: HashMap::new(),
                };
                self.open(frame, &span);
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    node,
                    anchor,
                    weight,
                })
                | Some(Frame::Map {
                    node,
                    anchor,
                    weight,
                    ..
                }) => self.push_value(node, anchor, weight),
                None => {}
            },
            Event::Alias(id) => self.alias(id, span),
            _ => {}
        }
    }
}

/// Types a plain scalar by the YAML 1.2 core schema.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | "+.inf" | ".Inf" | "+.Inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Int(i);
    }
    if looks_like_float(digits)
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::Str(text.to_string())
}

/// `[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?` or `\.[0-9]+(...)`.
fn looks_like_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int_part, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int_part) && all_digits(f) && !(int_part.is_empty() && f.is_empty()),
        None => !int_part.is_empty() && all_digits(int_part),
    };
    let exponent_ok = match exponent {
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && all_digits(e)
        }
        None => frac.is_some(),
    };
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Node, Diagnostic> {
        parse(Arc::new(SourceFile {
            path: "t.yaml".into(),
            text: text.into(),
        }))
    }

    #[test]
    fn scalars_are_typed_by_the_core_schema() {
        let n = p("a: 1\nb: 2e-4\nc: '1'\nd: true\ne: ~\nf: (2+1)x8|16\ng: 1.5\n").unwrap();
        let j = n.to_json();
        assert_eq!(j["a"], serde_json::json!(1));
        assert_eq!(j["b"], serde_json::json!(2e-4));
        assert_eq!(j["c"], serde_json::json!("1"));
        assert_eq!(j["d"], serde_json::json!(true));
        assert_eq!(j["e"], serde_json::Value::Null);
        assert_eq!(j["f"], serde_json::json!("(2+1)x8|16"));
        assert_eq!(j["g"], serde_json::json!(1.5));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let n = p("stages:\n  tok:\n    kind: tokenize\n").unwrap();
        let path = [
            PathSegment::Key("stages".into()),
            PathSegment::Key("tok".into()),
            PathSegment::Key("kind".into()),
        ];
        let key = n.key_span_at(&path).unwrap();
        assert_eq!((key.line, key.col), (3, 5));
        let val = n.span_at(&path);
        assert_eq!((val.line, val.col), (3, 11));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_positions() {
        let err = p("a: 1\nb: 2\na: 3\n").unwrap_err().to_string();
        assert!(err.contains("duplicate key `a`"), "{err}");
        assert!(err.contains("line 1:1"), "{err}");
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = p("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.to_string().contains("invalid YAML"), "{err}");
    }
}
