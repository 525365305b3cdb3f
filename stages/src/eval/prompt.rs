//! From records to prompts: [`Item`] (one benchmark question with its contexts,
//! continuations, gold answer and references) and the few-shot context exactly as
//! lm-evaluation-harness assembles it:
//!
//! `description + Σ(example_text + target_delimiter + example_answer + fewshot_delimiter)
//! + item_text`
//!
//! Demonstrations come from `fewshot_file` (or the task's own file, never the item
//! itself), chosen by [`Sampler::FirstN`] or a seeded random draw per item
//! ([`Sampler::Random`]; lm-eval's Python `random.sample` is not reproduced, so n-shot
//! with random demonstrations matches lm-eval in distribution, not item by item).

use std::path::Path;

use super::data::{Doc, Field, at};
use super::error::{EvalError, Result};
use super::task::{ChoicesSpec, Sampler, Task, TaskDef, TaskType};
use super::template::{apply_filter, render};
use crate::rng::SplitMix64;

/// One item ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Index in the task's file.
    pub index: usize,
    /// Stable id (the `id_field`, else `<file stem>:<index>`).
    pub id: String,
    /// Contexts (one, or one per choice for multiple-input tasks).
    pub contexts: Vec<String>,
    /// Continuations (one per choice, or one shared by multiple-input tasks), with the
    /// target delimiter already prepended.
    pub continuations: Vec<String>,
    /// Choice texts as lm-eval measures them for `acc_norm` (without the delimiter).
    pub choices: Vec<String>,
    /// Per-choice labels of `{choice: label}` maps (TruthfulQA MC2), else empty.
    pub labels: Vec<f64>,
    /// Index of the right choice.
    pub gold: usize,
    /// Generation: the reference answer; HumanEval: the test code; perplexity: the text
    /// whose words and bytes are counted.
    pub reference: Option<String>,
    /// HumanEval: the function passed to `check`.
    pub entry_point: Option<String>,
    /// Exact-recall prompt and target (synthetic task).
    pub recall: Option<(String, String)>,
}

impl Item {
    /// The prompt that identifies the item (for `prompt_hash`).
    pub fn prompt_text(&self) -> String {
        self.contexts.join("\u{1f}")
    }
}

/// Render a template over a record, naming the file and line on failure.
fn render_doc(template: &str, doc: &Doc, task: &Task, file: &Path) -> Result<String> {
    render(template, &|k: &str| doc.get(k))
        .map_err(|e| at(file, doc, format!("task `{}`: {e}", task.name)))
}

fn filtered(text: String, filters: &[String], doc: &Doc, file: &Path) -> Result<String> {
    let mut t = text;
    for f in filters {
        t = apply_filter(f, &t).map_err(|m| at(file, doc, m))?;
    }
    Ok(t)
}

/// The choices of a record and, for `{choice: label}` maps, their labels.
fn choices_of(def: &TaskDef, doc: &Doc, file: &Path) -> Result<(Vec<String>, Vec<f64>)> {
    let spec = def
        .choices
        .as_ref()
        .ok_or_else(|| EvalError::task_def(&def.name, "no `choices`"))?;
    let (choices, labels) = match spec {
        ChoicesSpec::Literal(list) => (list.clone(), Vec::new()),
        ChoicesSpec::Field(name) => match doc.get(name) {
            None => return Err(at(file, doc, format!("missing field `{name}`"))),
            Some(Field::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, c) in items.iter().enumerate() {
                    out.push(c.to_text().ok_or_else(|| {
                        at(
                            file,
                            doc,
                            format!("`{name}[{i}]` is {}, not text", c.kind()),
                        )
                    })?);
                }
                (out, Vec::new())
            }
            Some(Field::Map(entries)) => {
                let mut out = Vec::with_capacity(entries.len());
                let mut labels = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let Field::Num(label) = v else {
                        return Err(at(
                            file,
                            doc,
                            format!("`{name}.{k}` is {}, expected a 0/1 label", v.kind()),
                        ));
                    };
                    out.push(k.clone());
                    labels.push(*label);
                }
                (out, labels)
            }
            Some(other) => {
                return Err(at(
                    file,
                    doc,
                    format!(
                        "field `{name}` is {}, expected a list of choices",
                        other.kind()
                    ),
                ));
            }
        },
    };
    if choices.is_empty() {
        return Err(at(file, doc, format!("task `{}`: no choices", def.name)));
    }
    Ok((choices, labels))
}

/// The gold index of a record: a number, a digit string, a letter or the choice text.
fn gold_of(
    def: &TaskDef,
    doc: &Doc,
    file: &Path,
    choices: &[String],
    labels: &[f64],
) -> Result<usize> {
    let Some(name) = &def.gold else {
        return labels
            .iter()
            .position(|&l| l == 1.0)
            .ok_or_else(|| at(file, doc, "no choice is labelled 1 (true)"));
    };
    // A template (`{answer|before:,}`) renders to the gold text.
    let rendered;
    let value = if name.contains('{') {
        rendered = Field::Str(
            render(name, &|k| doc.get(k))
                .map_err(|e| at(file, doc, format!("gold `{name}`: {e}")))?,
        );
        &rendered
    } else {
        doc.get(name)
            .ok_or_else(|| at(file, doc, format!("missing field `{name}`")))?
    };
    let raw = match value {
        Field::Num(n) if n.fract() == 0.0 && *n >= 0.0 => *n as usize,
        Field::Str(s) => {
            let t = s.trim();
            if let Ok(n) = t.parse::<usize>() {
                n
            } else if t.len() == 1 && t.as_bytes()[0].is_ascii_uppercase() {
                (t.as_bytes()[0] - b'A') as usize + def.gold_base
            } else if let Some(i) = choices.iter().position(|c| c == t) {
                i + def.gold_base
            } else {
                return Err(at(
                    file,
                    doc,
                    format!(
                        "gold `{name}` = {s:?} is not an index, a letter or one of the choices"
                    ),
                ));
            }
        }
        other => {
            return Err(at(
                file,
                doc,
                format!("gold `{name}` is {}, expected an index", other.kind()),
            ));
        }
    };
    let gold = raw.checked_sub(def.gold_base).ok_or_else(|| {
        at(
            file,
            doc,
            format!(
                "gold `{name}` = {raw} but indices start at {}",
                def.gold_base
            ),
        )
    })?;
    if gold >= choices.len() {
        return Err(at(
            file,
            doc,
            format!(
                "choice count mismatch: gold `{name}` is {gold} but the item has {} choices",
                choices.len()
            ),
        ));
    }
    Ok(gold)
}

/// What a record contributes as a demonstration, or as the item: its text(s), choices,
/// gold and (generation) target.
struct Parts {
    contexts: Vec<String>,
    choices: Vec<String>,
    labels: Vec<f64>,
    gold: usize,
    answer: String,
}

fn parts(task: &Task, doc: &Doc, file: &Path) -> Result<Parts> {
    let def = &task.def;
    match def.kind {
        TaskType::MultipleChoice => {
            let ctx = render_doc(&def.context, doc, task, file)?;
            let ctx = filtered(ctx, &def.context_filters, doc, file)?;
            let (choices, labels) = choices_of(def, doc, file)?;
            let choices = choices
                .into_iter()
                .map(|c| filtered(c, &def.choice_filters, doc, file))
                .collect::<Result<Vec<_>>>()?;
            let gold = gold_of(def, doc, file, &choices, &labels)?;
            let answer = choices[gold].clone();
            Ok(Parts {
                contexts: vec![ctx],
                choices,
                labels,
                gold,
                answer,
            })
        }
        TaskType::MultipleInput => {
            let name = def.contexts.as_deref().unwrap_or_default();
            let contexts = match doc.get(name) {
                Some(Field::List(items)) => items
                    .iter()
                    .map(|c| {
                        c.to_text().ok_or_else(|| {
                            at(file, doc, format!("`{name}` holds a non-text value"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                Some(other) => {
                    return Err(at(
                        file,
                        doc,
                        format!("field `{name}` is {}, expected a list", other.kind()),
                    ));
                }
                None => return Err(at(file, doc, format!("missing field `{name}`"))),
            };
            if contexts.is_empty() {
                return Err(at(file, doc, format!("field `{name}` is empty")));
            }
            let cont = render_doc(
                def.continuation.as_deref().unwrap_or_default(),
                doc,
                task,
                file,
            )?;
            let gold = gold_of(def, doc, file, &contexts, &[])?;
            Ok(Parts {
                choices: contexts.clone(),
                contexts,
                labels: Vec::new(),
                gold,
                answer: cont,
            })
        }
        TaskType::Perplexity => {
            let text = render_doc(&def.context, doc, task, file)?;
            let text = filtered(text, &def.context_filters, doc, file)?;
            let counted = match &def.count_text {
                Some(t) => render_doc(t, doc, task, file)?,
                None => text.clone(),
            };
            Ok(Parts {
                contexts: vec![text],
                choices: Vec::new(),
                labels: Vec::new(),
                gold: 0,
                answer: counted,
            })
        }
        TaskType::Generate | TaskType::Humaneval => {
            let template = if def.kind == TaskType::Humaneval {
                format!("{{{}}}", def.prompt_field.as_deref().unwrap_or("prompt"))
            } else {
                def.context.clone()
            };
            let ctx = render_doc(&template, doc, task, file)?;
            let answer = match &def.target {
                Some(t) => render_doc(t, doc, task, file)?,
                None => String::new(),
            };
            Ok(Parts {
                contexts: vec![ctx],
                choices: Vec::new(),
                labels: Vec::new(),
                gold: 0,
                answer,
            })
        }
    }
}

/// One demonstration: `text + target_delimiter + answer + fewshot_delimiter`.
fn demonstration(task: &Task, doc: &Doc, file: &Path) -> Result<String> {
    let def = &task.def;
    let p = parts(task, doc, file)?;
    let text = match def.kind {
        TaskType::MultipleInput => p.contexts[p.gold].clone(),
        _ => p.contexts[0].clone(),
    };
    Ok(format!(
        "{text}{}{}{}",
        def.target_delimiter, p.answer, def.fewshot_delimiter
    ))
}

/// Indices of the demonstrations for item `index`.
fn pick(
    sampler: Sampler,
    pool: usize,
    n: usize,
    exclude: Option<usize>,
    seed: u64,
    index: usize,
) -> Vec<usize> {
    match sampler {
        Sampler::FirstN => (0..pool).filter(|&i| Some(i) != exclude).take(n).collect(),
        Sampler::Random => {
            let mut rng =
                SplitMix64::new(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut idx: Vec<usize> = (0..pool).collect();
            let want = (n + usize::from(exclude.is_some())).min(pool);
            for i in 0..want {
                let j = i + (rng.next_u64() % (pool - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx.truncate(want);
            idx.into_iter()
                .filter(|&i| Some(i) != exclude)
                .take(n)
                .collect()
        }
    }
}

/// Inputs to [`build_items`].
pub struct Sources<'a> {
    /// The task.
    pub task: &'a Task,
    /// Its records and their file.
    pub docs: &'a [Doc],
    /// The data file (for errors).
    pub file: &'a Path,
    /// Demonstration records and their file; `None` = the task's own file.
    pub fewshot: Option<(&'a [Doc], &'a Path)>,
}

/// Build the items of a task: the first `limit` records, each with `num_fewshot`
/// demonstrations.
pub fn build_items(
    src: &Sources,
    num_fewshot: usize,
    limit: Option<usize>,
    seed: u64,
) -> Result<Vec<Item>> {
    let task = src.task;
    let def = &task.def;
    let description = match &task.subject {
        Some(s) => {
            let subject = Field::Str(s.clone());
            render(&def.description, &|k: &str| {
                (k == "subject").then_some(&subject)
            })?
        }
        None => render(&def.description, &|_: &str| None)?,
    };
    let (pool, pool_file, same) = match src.fewshot {
        Some((docs, file)) => (docs, file, false),
        None => (src.docs, src.file, true),
    };
    if num_fewshot > 0 && pool.len() < num_fewshot + usize::from(same) {
        return Err(EvalError::Invalid(format!(
            "task `{}`: {num_fewshot}-shot needs {} demonstration records, {} has {}",
            task.name,
            num_fewshot + usize::from(same),
            pool_file.display(),
            pool.len()
        )));
    }
    // FirstN demonstrations are the same for every item: render them once.
    let fixed = if num_fewshot > 0 && def.fewshot_sampler == Sampler::FirstN && !same {
        let mut s = String::new();
        for &i in &pick(Sampler::FirstN, pool.len(), num_fewshot, None, seed, 0) {
            s.push_str(&demonstration(task, &pool[i], pool_file)?);
        }
        Some(s)
    } else {
        None
    };
    let n = limit.map_or(src.docs.len(), |l| l.min(src.docs.len()));
    let mut items = Vec::with_capacity(n);
    for doc in &src.docs[..n] {
        let p = parts(task, doc, src.file)?;
        let shots = match &fixed {
            Some(s) => s.clone(),
            None if num_fewshot == 0 => String::new(),
            None => {
                let exclude = same.then_some(doc.index);
                let mut s = String::new();
                for i in pick(
                    def.fewshot_sampler,
                    pool.len(),
                    num_fewshot,
                    exclude,
                    seed,
                    doc.index,
                ) {
                    s.push_str(&demonstration(task, &pool[i], pool_file)?);
                }
                s
            }
        };
        let prefix = format!("{description}{shots}");
        let delim = &def.target_delimiter;
        let (contexts, continuations) = match def.kind {
            TaskType::MultipleChoice => (
                vec![format!("{prefix}{}", p.contexts[0])],
                p.choices.iter().map(|c| format!("{delim}{c}")).collect(),
            ),
            TaskType::MultipleInput => (
                p.contexts.iter().map(|c| format!("{prefix}{c}")).collect(),
                vec![format!("{delim}{}", p.answer)],
            ),
            TaskType::Generate | TaskType::Humaneval => {
                (vec![format!("{prefix}{}", p.contexts[0])], Vec::new())
            }
            // A document is scored on its own, as lm-eval's `loglikelihood_rolling`.
            TaskType::Perplexity => (p.contexts.clone(), Vec::new()),
        };
        let id = match &def.id_field {
            Some(f) => doc
                .get(f)
                .and_then(Field::to_text)
                .ok_or_else(|| at(src.file, doc, format!("missing field `{f}`")))?,
            None => format!(
                "{}:{}",
                src.file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("item"),
                doc.index
            ),
        };
        let (reference, entry_point) = match def.kind {
            TaskType::Generate | TaskType::Perplexity => (Some(p.answer.clone()), None),
            TaskType::Humaneval => {
                let test = render_doc(
                    &format!("{{{}}}", def.test_field.as_deref().unwrap_or("test")),
                    doc,
                    task,
                    src.file,
                )?;
                let entry = render_doc(
                    &format!(
                        "{{{}}}",
                        def.entry_point_field.as_deref().unwrap_or("entry_point")
                    ),
                    doc,
                    task,
                    src.file,
                )?;
                (Some(test), Some(entry))
            }
            _ => (None, None),
        };
        let recall = match &def.recall {
            Some(r) => Some((
                render_doc(&r.prompt, doc, task, src.file)?,
                render_doc(&r.target, doc, task, src.file)?,
            )),
            None => None,
        };
        items.push(Item {
            index: doc.index,
            id,
            contexts,
            continuations,
            choices: p.choices,
            labels: p.labels,
            gold: p.gold,
            reference,
            entry_point,
            recall,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_pick_excludes_item_and_is_seeded() {
        let a = pick(Sampler::Random, 10, 3, Some(4), 1234, 4);
        assert_eq!(a.len(), 3);
        assert!(!a.contains(&4));
        assert_eq!(a, pick(Sampler::Random, 10, 3, Some(4), 1234, 4));
        assert_eq!(pick(Sampler::FirstN, 10, 3, Some(1), 0, 1), vec![0, 2, 3]);
    }
}
