//! Task definitions as data: [`TaskDef`] (one YAML or JSON file per task: data file,
//! fields, prompt templates, metrics, few-shot split) and the built-in definitions
//! embedded from `eval/tasks/*.yaml`.
//!
//! [`resolve`] turns a name from the stage's `tasks` list into concrete tasks: a built-in
//! name, `mmlu` (all 57 subjects) or `mmlu_<subject>`, or a path to a user's task file.
//! Users add tasks by writing such a file; nothing is recompiled.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{EvalError, Result};

/// The built-in task files, `(name, yaml)`.
pub const BUILTINS: &[(&str, &str)] = &[
    ("arc_easy", include_str!("tasks/arc_easy.yaml")),
    ("arc_challenge", include_str!("tasks/arc_challenge.yaml")),
    ("mmlu", include_str!("tasks/mmlu.yaml")),
    ("hellaswag", include_str!("tasks/hellaswag.yaml")),
    ("winogrande", include_str!("tasks/winogrande.yaml")),
    ("piqa", include_str!("tasks/piqa.yaml")),
    ("boolq", include_str!("tasks/boolq.yaml")),
    ("openbookqa", include_str!("tasks/openbookqa.yaml")),
    ("copa", include_str!("tasks/copa.yaml")),
    ("truthfulqa_mc1", include_str!("tasks/truthfulqa_mc1.yaml")),
    ("truthfulqa_mc2", include_str!("tasks/truthfulqa_mc2.yaml")),
    ("gsm8k", include_str!("tasks/gsm8k.yaml")),
    ("humaneval", include_str!("tasks/humaneval.yaml")),
    ("synthetic", include_str!("tasks/synthetic.yaml")),
    ("perplexity", include_str!("tasks/perplexity.yaml")),
    ("wikitext", include_str!("tasks/wikitext.yaml")),
];

/// The metrics of perplexity tasks.
pub const PERPLEXITY_METRICS: &[&str] = &[
    "word_perplexity",
    "byte_perplexity",
    "bits_per_byte",
    "token_perplexity",
];

/// How a task is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// One context, several continuations ranked by log-likelihood (ARC, MMLU, ...).
    MultipleChoice,
    /// Several contexts, one shared continuation (Winogrande's partial scoring).
    MultipleInput,
    /// Greedy generation until a stop string, answer extracted by regexes (GSM8K).
    Generate,
    /// Code completion executed against unit tests (HumanEval).
    Humaneval,
    /// Log-likelihood of whole documents in rolling windows (lm-eval's
    /// `loglikelihood_rolling`): word/byte/token perplexity and bits per byte.
    Perplexity,
}

/// How few-shot demonstrations are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// A seeded random choice (excluding the item itself when drawn from the same file).
    #[default]
    Random,
    /// The first `n` records, in file order (lm-eval's MMLU `first_n`).
    FirstN,
}

/// Where a multiple-choice task's choices come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ChoicesSpec {
    /// A field holding a list of strings, or an ordered `{choice: label}` map (TruthfulQA).
    Field(String),
    /// The same literal choices for every item (MMLU's letters, BoolQ's no/yes).
    Literal(Vec<String>),
}

/// An answer-extraction regex of a generation task (lm-eval's `regex` filter +
/// `take_first`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extractor {
    /// Name of the metric variant, e.g. `strict-match`.
    pub name: String,
    /// The pattern; with groups, the first non-empty group of the chosen match is taken.
    pub regex: String,
    /// Which match: 0 the first, -1 the last.
    #[serde(default)]
    pub group_select: i64,
}

/// Extra exact-recall scoring for knowledge questions (the quickstart's synthetic task):
/// the target as a continuation of the prompt, by greedy generation and by top-1
/// log-likelihood.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recall {
    /// Template of the short-answer prompt.
    pub prompt: String,
    /// Template of the expected answer: the continuation of the prompt exactly as
    /// rendered (no `target_delimiter` is inserted; the synthetic targets carry their
    /// own leading space, " Paris").
    pub target: String,
    /// Generation budget (default: the target's tokens + 8).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
}

fn d_space() -> String {
    " ".into()
}
fn d_nn() -> String {
    "\n\n".into()
}
fn d_gen_toks() -> usize {
    256
}
fn d_timeout() -> f64 {
    10.0
}

/// What a HumanEval program's `timeout_s` must be ([`timeout_in_range`]).
pub const TIMEOUT_RANGE: &str = "more than 0 and at most 86400 seconds (a day per program)";

/// Whether `seconds` can bound one HumanEval program: positive and at most a day.
pub fn timeout_in_range(seconds: f64) -> bool {
    seconds > 0.0 && seconds <= 86_400.0
}

/// One task, as written in its YAML/JSON file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    /// Task name (keys `metrics.json`).
    pub name: String,
    /// How it is scored.
    #[serde(rename = "type")]
    pub kind: TaskType,
    /// Data file, relative to `data_dir` (or the `data` input directory). `{subject}` is
    /// replaced for tasks with `subjects`.
    pub file: String,
    /// Column names of a header-less CSV file.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Where demonstrations come from (default: `file`, never the item itself).
    #[serde(default)]
    pub fewshot_file: Option<String>,
    /// How demonstrations are chosen.
    #[serde(default)]
    pub fewshot_sampler: Sampler,
    /// Default number of demonstrations (the paper's setting).
    #[serde(default)]
    pub num_fewshot: usize,
    /// Text before the demonstrations (template over `subject` only).
    #[serde(default)]
    pub description: String,
    /// Template of the item's context (lm-eval `doc_to_text`).
    #[serde(default)]
    pub context: String,
    /// Filters applied to the rendered context (e.g. `hellaswag`).
    #[serde(default)]
    pub context_filters: Vec<String>,
    /// Multiple choice: the choices.
    #[serde(default)]
    pub choices: Option<ChoicesSpec>,
    /// Filters applied to every choice.
    #[serde(default)]
    pub choice_filters: Vec<String>,
    /// Field holding the gold answer: an index, a digit string, a letter `A`.. or the
    /// choice text; or a template rendering to one (`"{answer|before:,}"`: the first of
    /// a comma-separated list). Absent for `{choice: label}` maps (gold = first label 1).
    #[serde(default)]
    pub gold: Option<String>,
    /// 1 when the gold index counts from 1 (Winogrande's original `answer`).
    #[serde(default)]
    pub gold_base: usize,
    /// Multiple input: field with the list of contexts.
    #[serde(default)]
    pub contexts: Option<String>,
    /// Multiple input: template of the shared continuation.
    #[serde(default)]
    pub continuation: Option<String>,
    /// Between context and answer (lm-eval `target_delimiter`).
    #[serde(default = "d_space")]
    pub target_delimiter: String,
    /// After each demonstration (lm-eval `fewshot_delimiter`).
    #[serde(default = "d_nn")]
    pub fewshot_delimiter: String,
    /// Generation: template of the reference answer (also the demonstrations' answer).
    #[serde(default)]
    pub target: Option<String>,
    /// Generation: stop strings.
    #[serde(default)]
    pub until: Vec<String>,
    /// Generation: new-token budget.
    #[serde(default = "d_gen_toks")]
    pub max_gen_toks: usize,
    /// Generation: answer extractors, one metric variant each.
    #[serde(default)]
    pub extract: Vec<Extractor>,
    /// Generation: regexes removed from prediction and reference before comparing.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Generation: compare case-insensitively.
    #[serde(default)]
    pub ignore_case: bool,
    /// HumanEval: field names of the prompt, test code and entry point.
    #[serde(default)]
    pub prompt_field: Option<String>,
    /// HumanEval: field with the `check(candidate)` code.
    #[serde(default)]
    pub test_field: Option<String>,
    /// HumanEval: field with the function name.
    #[serde(default)]
    pub entry_point_field: Option<String>,
    /// HumanEval: seconds per program.
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// Perplexity: template of the text whose words and bytes are counted (default: the
    /// scored text; wikitext counts the original, not the detokenized page).
    #[serde(default)]
    pub count_text: Option<String>,
    /// Field naming the item (default: the record index).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Metrics to report (`acc`, `acc_norm`, `mc2`, `exact_match`, `pass@k`).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Expand into one task per subject (`{name}_{subject}`); `{subject}` is available
    /// in `file`, `fewshot_file`, `description` and as a record field.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Optional exact-recall scoring (synthetic knowledge questions).
    #[serde(default)]
    pub recall: Option<Recall>,
}

/// A task ready to run: its definition with `subject` filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Full name (`mmlu_anatomy`).
    pub name: String,
    /// The group it belongs to (`mmlu`), when expanded from `subjects`.
    pub group: Option<String>,
    /// The subject, when expanded.
    pub subject: Option<String>,
    /// Its definition.
    pub def: TaskDef,
}

/// Convert YAML to JSON (so serde can read task files without a YAML serde crate).
fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// Parse a task definition from YAML (JSON is YAML too). `source` names it in errors.
pub fn parse_def(text: &str, source: &str) -> Result<TaskDef> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text)
        .map_err(|e| EvalError::task_def(source, e.to_string()))?;
    let doc = docs
        .first()
        .ok_or_else(|| EvalError::task_def(source, "empty file"))?;
    let value = yaml_to_json(doc);
    let def: TaskDef =
        serde_json::from_value(value).map_err(|e| EvalError::task_def(source, e.to_string()))?;
    check_def(&def, source)?;
    Ok(def)
}

fn check_def(def: &TaskDef, source: &str) -> Result<()> {
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(EvalError::task_def(source, what.to_string()))
        }
    };
    need(
        timeout_in_range(def.timeout_s),
        &format!("`timeout_s` must be {TIMEOUT_RANGE}"),
    )?;
    match def.kind {
        TaskType::MultipleChoice => need(
            def.choices.is_some(),
            "type multiple_choice needs `choices`",
        ),
        TaskType::MultipleInput => need(
            def.contexts.is_some() && def.continuation.is_some() && def.gold.is_some(),
            "type multiple_input needs `contexts`, `continuation` and `gold`",
        ),
        TaskType::Generate => need(
            def.target.is_some(),
            "type generate needs `target` (the reference answer template)",
        ),
        TaskType::Humaneval => need(
            def.prompt_field.is_some()
                && def.test_field.is_some()
                && def.entry_point_field.is_some(),
            "type humaneval needs `prompt_field`, `test_field` and `entry_point_field`",
        ),
        TaskType::Perplexity => {
            need(
                !def.context.is_empty(),
                "type perplexity needs `context` (the template of the scored text, e.g. \"{text}\")",
            )?;
            need(
                def.num_fewshot == 0 && def.fewshot_file.is_none(),
                "type perplexity scores whole documents: no `num_fewshot` or `fewshot_file`",
            )?;
            match def
                .metrics
                .iter()
                .find(|m| !PERPLEXITY_METRICS.contains(&m.as_str()))
            {
                Some(m) => Err(EvalError::task_def(
                    source,
                    format!(
                        "metric `{m}` does not apply to perplexity tasks ({})",
                        PERPLEXITY_METRICS.join(", ")
                    ),
                )),
                None => Ok(()),
            }
        }
    }
}

fn builtin_def(name: &str) -> Option<Result<TaskDef>> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| parse_def(text, &format!("built-in `{n}`")))
}

/// Expand a definition with `subjects` into one task per subject (or the one named).
fn expand(def: TaskDef, only: Option<&str>) -> Result<Vec<Task>> {
    if def.subjects.is_empty() {
        return Ok(vec![Task {
            name: def.name.clone(),
            group: None,
            subject: None,
            def,
        }]);
    }
    let subjects: Vec<String> = match only {
        Some(s) if def.subjects.iter().any(|x| x == s) => vec![s.to_string()],
        Some(s) => {
            return Err(EvalError::UnknownTask {
                name: format!("{}_{s}", def.name),
                suggestion: String::new(),
                known: format!(
                    "{}_<subject> with subject one of {}",
                    def.name,
                    def.subjects.join(", ")
                ),
            });
        }
        None => def.subjects.clone(),
    };
    Ok(subjects
        .into_iter()
        .map(|s| {
            let mut d = def.clone();
            d.file = d.file.replace("{subject}", &s);
            d.fewshot_file = d.fewshot_file.map(|f| f.replace("{subject}", &s));
            Task {
                name: format!("{}_{s}", def.name),
                group: Some(def.name.clone()),
                subject: Some(s),
                def: d,
            }
        })
        .collect())
}

/// Whether a `tasks` entry names a file rather than a built-in.
fn is_path(name: &str) -> bool {
    name.ends_with(".yaml")
        || name.ends_with(".yml")
        || name.ends_with(".json")
        || name.contains('/')
}

/// The tasks one `tasks` entry stands for. Relative task-file paths are resolved
/// against `base`.
pub fn resolve(name: &str, base: &Path) -> Result<Vec<Task>> {
    if is_path(name) {
        let path: PathBuf = base.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| EvalError::io(&path, e))?;
        let def = parse_def(&text, &path.display().to_string())?;
        return expand(def, None);
    }
    if let Some(def) = builtin_def(name) {
        return expand(def?, None);
    }
    for (group, _) in BUILTINS {
        if let Some(subject) = name.strip_prefix(group).and_then(|r| r.strip_prefix('_'))
            && let Some(def) = builtin_def(group)
        {
            let def = def?;
            if !def.subjects.is_empty() {
                return expand(def, Some(subject));
            }
        }
    }
    let known: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
    let suggestion = known
        .iter()
        .map(|k| (strsim_distance(name, k), k))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, k)| format!(", did you mean `{k}`?"))
        .unwrap_or_default();
    Err(EvalError::UnknownTask {
        name: name.to_string(),
        suggestion,
        known: known.join(", ") + ", mmlu_<subject>, or a path to a task .yaml",
    })
}

/// Levenshtein distance (small strings only).
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses() {
        for (name, text) in BUILTINS {
            let def = parse_def(text, name).unwrap();
            assert_eq!(&def.name, name);
        }
    }

    #[test]
    fn mmlu_expands() {
        let all = resolve("mmlu", Path::new(".")).unwrap();
        assert_eq!(all.len(), 57);
        let one = resolve("mmlu_anatomy", Path::new(".")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].def.file, "mmlu/test/anatomy_test.csv");
        assert_eq!(one[0].group.as_deref(), Some("mmlu"));
    }

    #[test]
    fn unknown_names_suggest() {
        let e = resolve("arc_eazy", Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("did you mean `arc_easy`"), "{e}");
    }
}
