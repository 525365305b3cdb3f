//! Reference values to print beside measured ones (e.g. a paper's table): a CSV file
//! whose first column names the row and whose other columns name tasks, with an
//! optional `average` column.
//!
//! ```text
//! row,arc_challenge,hellaswag,average
//! LLaMA2-7B,54.18,78.59,45.34
//! (2+1)x8|16◇,53.16,77.25,46.10
//! ```
//!
//! A reference row matches the report row of the same label, or a grid row labelled
//! `axis=VALUE` whose value is the reference's label. Its rows give the report's row
//! order. Values are on the report's scale (`scale: 100` for percentages).

use std::path::Path;

use slayer_engine::StageError;

/// The parsed reference table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reference {
    /// Task columns, in the file's order (the `average` column excluded).
    pub tasks: Vec<String>,
    /// (label, value per task, average) per row, in the file's order.
    pub rows: Vec<ReferenceRow>,
}

/// One row of a [`Reference`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceRow {
    pub label: String,
    /// Aligned with [`Reference::tasks`]; `None` for an empty cell.
    pub values: Vec<Option<f64>>,
    /// The `average` column, if the file has one and the cell is not empty.
    pub average: Option<f64>,
}

impl Reference {
    /// Reads the CSV file at `path`; errors name the file, line and cell.
    pub fn read(path: &Path) -> Result<Reference, StageError> {
        let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
        Reference::parse(&text)
            .map_err(|e| StageError::msg(format!("{}: reference CSV: {e}", path.display())))
    }

    /// Parses reference CSV text.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or("empty file (expected a header row)")?;
        let header = split_csv(header).map_err(|e| format!("line 1: {e}"))?;
        if header.len() < 2 {
            return Err("line 1: expected a row-label column and at least one task column".into());
        }
        let average_at = header.iter().position(|h| h == "average");
        let task_at: Vec<usize> = (1..header.len())
            .filter(|&i| Some(i) != average_at)
            .collect();
        let tasks: Vec<String> = task_at.iter().map(|&i| header[i].clone()).collect();
        let mut rows: Vec<ReferenceRow> = Vec::new();
        for (i, line) in lines {
            let n = i + 1;
            let cells = split_csv(line).map_err(|e| format!("line {n}: {e}"))?;
            if cells.len() != header.len() {
                return Err(format!(
                    "line {n}: {} cells, the header has {}",
                    cells.len(),
                    header.len()
                ));
            }
            let number = |col: usize| -> Result<Option<f64>, String> {
                let cell = cells[col].trim();
                if cell.is_empty() {
                    return Ok(None);
                }
                cell.parse::<f64>().map(Some).map_err(|_| {
                    format!(
                        "line {n}, column `{}`: `{cell}` is not a number",
                        header[col]
                    )
                })
            };
            let label = cells[0].trim().to_string();
            if rows.iter().any(|r| r.label == label) {
                return Err(format!("line {n}: row `{label}` appears twice"));
            }
            rows.push(ReferenceRow {
                values: task_at
                    .iter()
                    .map(|&c| number(c))
                    .collect::<Result<_, _>>()?,
                average: average_at.map(number).transpose()?.flatten(),
                label,
            });
        }
        Ok(Reference { tasks, rows })
    }

    /// The reference row for a report row labelled `label`.
    pub fn row_for(&self, label: &str) -> Option<&ReferenceRow> {
        self.rows.iter().find(|r| matches(&r.label, label))
    }
}

/// Whether reference label `reference` names report row `label`.
pub fn matches(reference: &str, label: &str) -> bool {
    reference == label
        || label
            .split_once('=')
            .is_some_and(|(axis, value)| !axis.contains(',') && value == reference)
}

/// Splits one CSV line (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (_, c) => cell.push(c),
        }
    }
    if quoted {
        return Err("a quoted cell is not closed".into());
    }
    cells.push(cell);
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_tasks_and_average_and_names_bad_cells() {
        let r = Reference::parse(
            "row,arc,average,mmlu\nbase,54.18,45.34,45.87\n\"(2+1)x8|16◇, copy\",53.05,,\n",
        )
        .unwrap();
        assert_eq!(r.tasks, vec!["arc", "mmlu"]);
        assert_eq!(r.rows[0].values, vec![Some(54.18), Some(45.87)]);
        assert_eq!(r.rows[0].average, Some(45.34));
        assert_eq!(r.rows[1].label, "(2+1)x8|16◇, copy");
        assert_eq!(r.rows[1].values, vec![Some(53.05), None]);
        assert_eq!(r.rows[1].average, None);
        assert!(r.row_for("layout=(2+1)x8|16◇, copy").is_some());
        assert!(r.row_for("base").is_some());
        assert!(r.row_for("layout=base,seed=1").is_none());
        let e = Reference::parse("row,arc\nbase,fifty\n").unwrap_err();
        assert_eq!(e, "line 2, column `arc`: `fifty` is not a number");
        let e = Reference::parse("row,arc\nbase,1,2\n").unwrap_err();
        assert_eq!(e, "line 2: 3 cells, the header has 2");
        let e = Reference::parse("row,arc\nbase,1\nbase,2\n").unwrap_err();
        assert_eq!(e, "line 3: row `base` appears twice");
    }
}
