//! The paper's layout notation (Table 3): parsing into a [`Layout`], canonical printing
//! and block arithmetic.
//!
//! ```text
//! layout   := segment (sep segment)* mark?
//! segment  := "(" P "+1)" ("x" N)?        P original blocks then one new block, N times
//!           | K                           K original blocks left as they are
//! sep      := "|" | whitespace
//! mark     := "◇" | "<>" | "avg"           new blocks start as the average of their
//!                                         neighbours (no mark: copy of the block before)
//! ```
//! `x` may be written `×`, `X` or `*`. A trailing `|1` right after a count
//! (`(2+1)x8|13|1◇`) is the re-initialised final block: it keeps the position of one
//! original block, and every source block after it is deleted and merged into it (the S
//! strategy). Two plain counts in a row are otherwise an error (write their sum).
//!
//! Canonical form ([`Layout`]'s `Display`): groups as `(P+1)xN`, a space between two
//! groups, `|` elsewhere, the mark as `◇` at the end — so every Table 3 string prints
//! back as written: `(4+1)x8`, `(2+1)x8|16`, `16|(2+1)x8`, `(2+1)x3 (4+1)x3 (7+1)x2`,
//! `(2+1)x8|13|1◇`, `(2+1)x6|17|1◇`.

use std::fmt;
use std::str::FromStr;

use super::error::{Result, SurgeryError};

/// Largest count accepted anywhere in a layout (far above any real model's depth).
const MAX_COUNT: u64 = 100_000;

/// One segment of a layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `(keep+1)xrepeat`: `repeat` times, `keep` original blocks followed by one new block.
    Group {
        /// Original blocks per group (`P`).
        keep: usize,
        /// Number of groups (`N`).
        repeat: usize,
    },
    /// `K`: this many original blocks, unchanged.
    Keep(usize),
    /// The trailing `|1`: one original block position whose block is re-initialised
    /// from the deleted blocks after it.
    Final,
}

/// A parsed layout: segments in order plus the initialisation mark.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layout {
    segments: Vec<Segment>,
    average: bool,
}

impl Layout {
    /// Parse a layout string; errors name the column and say what was expected.
    pub fn parse(text: &str) -> Result<Layout> {
        Parser::new(text)?.parse()
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the layout carries the ◇ mark (new blocks initialised by averaging).
    pub fn average(&self) -> bool {
        self.average
    }

    /// Whether the layout ends with a re-initialised final block (`…|K|1`).
    pub fn has_final(&self) -> bool {
        self.segments.last() == Some(&Segment::Final)
    }

    /// Source block positions the layout keeps (the final block counts as one).
    pub fn original_blocks(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match *s {
                Segment::Group { keep, repeat } => keep * repeat,
                Segment::Keep(k) => k,
                Segment::Final => 1,
            })
            .sum()
    }

    /// Number of new (inserted) blocks.
    pub fn new_blocks(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match *s {
                Segment::Group { repeat, .. } => repeat,
                _ => 0,
            })
            .sum()
    }

    /// Blocks of the resulting model.
    pub fn output_blocks(&self) -> usize {
        self.original_blocks() + self.new_blocks()
    }

    /// Blocks that train: the new ones plus the re-initialised final block.
    pub fn trainable_blocks(&self) -> usize {
        self.new_blocks() + usize::from(self.has_final())
    }

    /// The sum behind [`Layout::original_blocks`], e.g. `2x8 + 13 + 1`.
    pub fn arithmetic(&self) -> String {
        let terms: Vec<String> = self
            .segments
            .iter()
            .map(|s| match *s {
                Segment::Group { keep, repeat } => format!("{keep}x{repeat}"),
                Segment::Keep(k) => k.to_string(),
                Segment::Final => "1".to_string(),
            })
            .collect();
        terms.join(" + ")
    }

    /// Source blocks deleted when applied to a model of `source_blocks` blocks, after
    /// checking that the layout fits it (the error shows the arithmetic).
    pub fn deleted_blocks(&self, source_blocks: usize) -> Result<usize> {
        let covered = self.original_blocks();
        let mismatch = |message: String| SurgeryError::Mismatch {
            layout: self.to_string(),
            message,
        };
        if !self.has_final() {
            if covered != source_blocks {
                return Err(mismatch(format!(
                    "covers {covered} original blocks ({}), model has {source_blocks}",
                    self.arithmetic()
                )));
            }
            return Ok(0);
        }
        if covered > source_blocks {
            return Err(mismatch(format!(
                "keeps {covered} original blocks ({}), model has only {source_blocks}",
                self.arithmetic()
            )));
        }
        if covered == source_blocks {
            return Err(mismatch(format!(
                "keeps all {covered} original blocks ({}) of the model, so no block is \
                 deleted and nothing can be merged into the final `|1` block; use a smaller \
                 count before `|1` to delete blocks, or drop the `|1`",
                self.arithmetic()
            )));
        }
        Ok(source_blocks - covered)
    }

    /// The canonical form with ASCII only (`<>` for ◇).
    pub fn to_ascii(&self) -> String {
        let s = self.to_string();
        s.replace('◇', "<>")
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev: Option<&Segment> = None;
        for s in &self.segments {
            if let Some(p) = prev {
                let both_groups =
                    matches!(p, Segment::Group { .. }) && matches!(s, Segment::Group { .. });
                f.write_str(if both_groups { " " } else { "|" })?;
            }
            match *s {
                Segment::Group { keep, repeat } => write!(f, "({keep}+1)x{repeat}")?,
                Segment::Keep(k) => write!(f, "{k}")?,
                Segment::Final => f.write_str("1")?,
            }
            prev = Some(s);
        }
        if self.average {
            f.write_str("◇")?;
        }
        Ok(())
    }
}

impl FromStr for Layout {
    type Err = SurgeryError;
    fn from_str(s: &str) -> Result<Layout> {
        Layout::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Num(u64),
    LParen,
    RParen,
    Plus,
    Times,
    Bar,
    Mark,
    Space,
}

impl Tok {
    fn describe(self) -> String {
        match self {
            Tok::Num(n) => format!("`{n}`"),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Times => "`x`".into(),
            Tok::Bar => "`|`".into(),
            Tok::Mark => "the mark `◇`".into(),
            Tok::Space => "a space".into(),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    /// Tokens with their 1-based column.
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Parser<'a>> {
        let chars: Vec<char> = text.chars().collect();
        let mut toks: Vec<(Tok, usize)> = Vec::new();
        let mut i = 0;
        let err = |column: usize, message: String| SurgeryError::Syntax {
            layout: text.to_string(),
            column,
            message,
        };
        while i < chars.len() {
            let c = chars[i];
            let col = i + 1;
            if c.is_whitespace() {
                if !matches!(toks.last(), Some((Tok::Space, _))) {
                    toks.push((Tok::Space, col));
                }
                i += 1;
                continue;
            }
            if c.is_ascii_digit() {
                let mut n: u64 = 0;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    n = n * 10 + u64::from(chars[i] as u8 - b'0');
                    if n > MAX_COUNT {
                        return Err(err(col, format!("number too large (at most {MAX_COUNT})")));
                    }
                    i += 1;
                }
                toks.push((Tok::Num(n), col));
                continue;
            }
            let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
            let (tok, len) = match c {
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                '+' => (Tok::Plus, 1),
                'x' | 'X' | '×' | '*' => (Tok::Times, 1),
                '|' => (Tok::Bar, 1),
                '◇' | '♢' | '⋄' | '◊' => (Tok::Mark, 1),
                '<' if rest.starts_with("<>") => (Tok::Mark, 2),
                _ if rest.eq_ignore_ascii_case("avg") => (Tok::Mark, 3),
                _ => {
                    return Err(err(
                        col,
                        format!(
                            "unexpected character `{c}`; a layout is made of `(P+1)xN` groups, \
                             block counts, `|` or spaces between them, and an optional final \
                             `◇` (or `<>`, `avg`)"
                        ),
                    ));
                }
            };
            toks.push((tok, col));
            i += len;
        }
        Ok(Parser { text, toks, pos: 0 })
    }

    fn err(&self, column: usize, message: impl Into<String>) -> SurgeryError {
        SurgeryError::Syntax {
            layout: self.text.to_string(),
            column,
            message: message.into(),
        }
    }

    /// Column of the current token, or one past the end.
    fn col(&self) -> usize {
        self.toks
            .get(self.pos)
            .map_or(self.text.chars().count() + 1, |t| t.1)
    }

    fn peek(&self) -> Option<Tok> {
        self.toks.get(self.pos).map(|t| t.0)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end".to_string(), |t| t.describe())
    }

    fn skip_spaces(&mut self) -> bool {
        let mut any = false;
        while self.peek() == Some(Tok::Space) {
            self.pos += 1;
            any = true;
        }
        any
    }

    fn number(&mut self, what: &str) -> Result<(usize, usize)> {
        self.skip_spaces();
        let col = self.col();
        match self.peek() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok((n as usize, col))
            }
            _ => Err(self.err(col, format!("expected {what}, found {}", self.found()))),
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<()> {
        self.skip_spaces();
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(
                self.col(),
                format!("expected {what}, found {}", self.found()),
            ))
        }
    }

    fn segment(&mut self) -> Result<Segment> {
        let col = self.col();
        match self.peek() {
            Some(Tok::Num(k)) => {
                self.pos += 1;
                if k == 0 {
                    return Err(self.err(col, "a count of 0 blocks; leave the segment out"));
                }
                let save = self.pos;
                self.skip_spaces();
                if self.peek() == Some(Tok::Times) {
                    return Err(self.err(
                        self.col(),
                        format!("a repeat `xN` needs a group in parentheses, e.g. `({k}+1)x8`"),
                    ));
                }
                self.pos = save;
                Ok(Segment::Keep(k as usize))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let (keep, keep_col) = self.number("the number of original blocks after `(`")?;
                if keep == 0 {
                    return Err(self.err(keep_col, "a group needs at least 1 original block"));
                }
                self.expect(Tok::Plus, &format!("`+1` after `({keep}`"))?;
                let (new, new_col) = self.number("`1` after `+`")?;
                if new != 1 {
                    return Err(self.err(
                        new_col,
                        format!(
                            "a group adds exactly one new block: write `({keep}+1)`, not \
                             `({keep}+{new})` (use more groups for more blocks)"
                        ),
                    ));
                }
                self.expect(Tok::RParen, &format!("`)` to close `({keep}+1`"))?;
                let save = self.pos;
                self.skip_spaces();
                let repeat = if self.peek() == Some(Tok::Times) {
                    self.pos += 1;
                    let (n, n_col) = self.number("a repeat count after `x`")?;
                    if n == 0 {
                        return Err(self.err(n_col, "the repeat count must be at least 1"));
                    }
                    n
                } else {
                    self.pos = save;
                    1
                };
                Ok(Segment::Group { keep, repeat })
            }
            Some(Tok::Mark) => Err(self.err(
                col,
                "the mark `◇` must come after the last segment, e.g. `(2+1)x8|16◇`",
            )),
            Some(Tok::Bar) => Err(self.err(
                col,
                "empty segment: expected a group `(P+1)xN` or a block count before `|`",
            )),
            Some(Tok::RParen) => Err(self.err(col, "`)` without a matching `(`")),
            Some(Tok::Times) => Err(self.err(col, "`x` must follow a group such as `(2+1)`")),
            Some(Tok::Plus) => Err(self.err(col, "`+` belongs inside a group such as `(2+1)`")),
            Some(Tok::Space) | None => Err(self.err(
                col,
                "expected a group `(P+1)xN` or a block count, e.g. `(2+1)x8|16`",
            )),
        }
    }

    fn parse(mut self) -> Result<Layout> {
        self.skip_spaces();
        if self.peek().is_none() {
            return Err(self.err(1, "empty layout; expected e.g. `(2+1)x8|16`"));
        }
        let mut segments: Vec<(Segment, usize)> = Vec::new();
        let mut average = false;
        loop {
            let col = self.col();
            segments.push((self.segment()?, col));
            let spaced = self.skip_spaces();
            match self.peek() {
                None => break,
                Some(Tok::Mark) => {
                    self.pos += 1;
                    average = true;
                    self.skip_spaces();
                    if let Some(t) = self.peek() {
                        let what = if t == Tok::Mark {
                            "the mark `◇` is given twice".to_string()
                        } else {
                            format!(
                                "the mark `◇` applies to the whole layout and must come last; \
                                 found {} after it",
                                t.describe()
                            )
                        };
                        return Err(self.err(self.col(), what));
                    }
                    break;
                }
                Some(Tok::Bar) => {
                    self.pos += 1;
                    self.skip_spaces();
                    match self.peek() {
                        None => {
                            return Err(
                                self.err(self.col(), "expected a segment after the last `|`")
                            );
                        }
                        Some(Tok::Bar) => {
                            return Err(self.err(self.col(), "empty segment between two `|`"));
                        }
                        _ => {}
                    }
                }
                Some(_) if spaced => {}
                Some(t) => {
                    return Err(self.err(
                        self.col(),
                        format!(
                            "expected `|`, a space or the end after a segment, found {}",
                            t.describe()
                        ),
                    ));
                }
            }
        }
        self.finish(segments, average)
    }

    /// Resolve the trailing `|1` and reject other runs of plain counts.
    fn finish(&self, mut segments: Vec<(Segment, usize)>, average: bool) -> Result<Layout> {
        let n = segments.len();
        if n >= 2
            && segments[n - 1].0 == Segment::Keep(1)
            && matches!(segments[n - 2].0, Segment::Keep(_))
        {
            segments[n - 1].0 = Segment::Final;
        }
        for w in segments.windows(2) {
            if let [(Segment::Keep(a), _), (Segment::Keep(b), col)] = w {
                return Err(self.err(
                    *col,
                    format!(
                        "two block counts in a row (`{a}|{b}`): write `{}`; only a final `|1` \
                         after a count marks the re-initialised final block",
                        a + b
                    ),
                ));
            }
            if let [(Segment::Final, col), _] = w {
                return Err(self.err(*col, "the re-initialised block `|1` must be last"));
            }
        }
        Ok(Layout {
            segments: segments.into_iter().map(|(s, _)| s).collect(),
            average,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_alternatives_print_canonically() {
        let l = Layout::parse("(2+1)×8 | 13 | 1 avg").unwrap();
        assert_eq!(l.to_string(), "(2+1)x8|13|1◇");
        assert_eq!(l.to_ascii(), "(2+1)x8|13|1<>");
        assert_eq!(Layout::parse(&l.to_ascii()).unwrap(), l);
    }

    #[test]
    fn group_without_repeat_is_one_group() {
        let l = Layout::parse("(3+1)|4").unwrap();
        assert_eq!(l.segments()[0], Segment::Group { keep: 3, repeat: 1 });
        assert_eq!(l.to_string(), "(3+1)x1|4");
    }
}
