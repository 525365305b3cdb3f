//! Running tasks against a model: find each task's files, build its items, score them
//! (log-likelihood, generation, execution or rolling perplexity) and collect per-item rows
//! and metrics.
//!
//! [`evaluate`] is backend-generic and independent of the engine, so tests and other
//! stages can call it directly; [`super::stage`] wraps it as the `eval` stage kind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use rayon::prelude::*;

use super::data::{Doc, Field, Format, load_docs};
use super::error::{EvalError, Result};
use super::execute::{Limits, Outcome, pass_at_k, run_program};
use super::extract::{Extract, Normalizer};
use super::generate::{GenSettings, generate_text};
use super::lm::{Encoder, encode_all, score_groups};
use super::metrics::{MetricSet, argmax, mc2};
use super::output::{ItemRecord, prompt_hash};
use super::perplexity::{Document, is_token_shards, score_documents, shard_documents};
use super::prompt::{Item, Sources, build_items};
use super::task::{Task, TaskType};
use crate::model::{Llama, Tokenizer};

/// Settings of a run (the stage's parameters, resolved).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Folder holding the benchmark files (`None`: only absolute paths or `data`).
    pub data_dir: Option<PathBuf>,
    /// The `data` input: a file (every task reads it) or a folder (replaces `data_dir`).
    pub data_input: Option<PathBuf>,
    /// First `limit` items per task.
    pub limit: Option<usize>,
    /// Demonstrations per item (`None`: each task's default).
    pub num_fewshot: Option<usize>,
    /// Seed of random demonstrations and sampling.
    pub seed: u64,
    /// Continuations per forward pass.
    pub batch_size: usize,
    /// Longest sequence (`None`: the model's `max_position_embeddings`).
    pub max_length: Option<usize>,
    /// Add the tokenizer's special tokens (BOS) to prompts.
    pub add_bos: bool,
    /// Generation budget of generation tasks (`None`: each task's `max_gen_toks`).
    pub max_gen_toks: Option<usize>,
    /// HumanEval samples per problem.
    pub num_samples: usize,
    /// HumanEval sampling temperature (0 = greedy).
    pub temperature: f32,
    /// HumanEval address-space limit per program, MiB.
    pub memory_mb: u64,
    /// HumanEval timeout per program (`None`: the task's).
    pub timeout_s: Option<f64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            data_dir: None,
            data_input: None,
            limit: None,
            num_fewshot: None,
            seed: 1234,
            batch_size: 16,
            max_length: None,
            add_bos: false,
            max_gen_toks: None,
            num_samples: 1,
            temperature: 0.0,
            memory_mb: 2048,
            timeout_s: None,
        }
    }
}

/// The outcome of one task.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// Task name.
    pub name: String,
    /// Group (e.g. `mmlu`) when the task is one subject of it.
    pub group: Option<String>,
    /// Aggregate metrics.
    pub metrics: MetricSet,
    /// One row per item.
    pub rows: Vec<ItemRecord>,
    /// Seconds spent.
    pub seconds: f64,
}

/// Progress callback: `(task, units done in this step)`.
pub type OnProgress<'a> = &'a (dyn Fn(&str, u64) + Sync);

fn resolve_path(task: &Task, file: &str, cfg: &RunConfig) -> Result<PathBuf> {
    let p = Path::new(file);
    let path = if p.is_absolute() {
        p.to_path_buf()
    } else if let Some(dir) = cfg.data_input.as_ref().filter(|d| d.is_dir()) {
        dir.join(p)
    } else if let Some(dir) = &cfg.data_dir {
        dir.join(p)
    } else {
        return Err(EvalError::MissingFile {
            task: task.name.clone(),
            path: p.to_path_buf(),
            hint: "; set `data_dir` to the folder holding the benchmark files (e.g. --set data_dir=PATH) or give the file as input `data`".into(),
        });
    };
    // Perplexity tasks also read folders of token shards.
    let folder_ok = task.def.kind == TaskType::Perplexity && path.is_dir();
    if !path.is_file() && !folder_ok {
        return Err(EvalError::MissingFile {
            task: task.name.clone(),
            path,
            hint: String::new(),
        });
    }
    Ok(path)
}

fn load(task: &Task, path: &Path) -> Result<Vec<Doc>> {
    let mut docs = load_docs(path, &Format::from_path(path, &task.def.columns))?;
    if let Some(s) = &task.subject {
        for d in &mut docs {
            d.set("subject", Field::Str(s.clone()));
        }
    }
    Ok(docs)
}

/// The file (or, for perplexity tasks, shards folder) a task reads its items from.
fn data_path(task: &Task, cfg: &RunConfig) -> Result<PathBuf> {
    match cfg.data_input.as_ref().filter(|d| d.is_file()) {
        Some(f) => Ok(f.clone()),
        None => resolve_path(task, &task.def.file, cfg),
    }
}

/// Build a task's items from its files.
pub fn task_items(task: &Task, cfg: &RunConfig) -> Result<Vec<Item>> {
    let data_file = data_path(task, cfg)?;
    let docs = load(task, &data_file)?;
    let shots = cfg.num_fewshot.unwrap_or(task.def.num_fewshot);
    let fewshot = match (&task.def.fewshot_file, shots) {
        (Some(f), n) if n > 0 && !cfg.data_input.as_ref().is_some_and(|d| d.is_file()) => {
            let path = resolve_path(task, f, cfg)?;
            Some((load(task, &path)?, path))
        }
        _ => None,
    };
    build_items(
        &Sources {
            task,
            docs: &docs,
            file: &data_file,
            fewshot: fewshot.as_ref().map(|(d, p)| (d.as_slice(), p.as_path())),
        },
        shots,
        cfg.limit,
        cfg.seed,
    )
}

/// Everything scoring needs.
pub struct Evaluator<'a, B: Backend> {
    /// The model.
    pub model: &'a Llama<B>,
    /// Its tokenizer.
    pub tok: &'a Tokenizer,
    /// Settings.
    pub cfg: &'a RunConfig,
}

impl<B: Backend> Evaluator<'_, B> {
    fn max_len(&self) -> usize {
        self.cfg
            .max_length
            .unwrap_or(self.model.config().max_position_embeddings)
            .max(2)
    }

    fn encoder(&self) -> Encoder<'_> {
        let prefix_id = self
            .tok
            .bos_token()
            .and_then(|t| self.tok.token_to_id(t))
            .or_else(|| self.tok.stop_ids().first().copied())
            .unwrap_or(0);
        Encoder {
            tok: self.tok,
            add_special: self.cfg.add_bos,
            prefix_id,
            max_len: self.max_len(),
        }
    }

    /// Run one task.
    pub fn run_task(&self, task: &Task, on_progress: OnProgress) -> Result<TaskResult> {
        let t0 = Instant::now();
        let (metrics, rows) = match task.def.kind {
            TaskType::MultipleChoice | TaskType::MultipleInput => {
                self.loglik_task(task, &task_items(task, self.cfg)?, on_progress)?
            }
            TaskType::Generate => {
                self.generate_task(task, &task_items(task, self.cfg)?, on_progress)?
            }
            TaskType::Humaneval => {
                self.humaneval_task(task, &task_items(task, self.cfg)?, on_progress)?
            }
            TaskType::Perplexity => self.perplexity_task(task, on_progress)?,
        };
        Ok(TaskResult {
            name: task.name.clone(),
            group: task.group.clone(),
            metrics,
            rows,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    fn loglik_task(
        &self,
        task: &Task,
        items: &[Item],
        on_progress: OnProgress,
    ) -> Result<(MetricSet, Vec<ItemRecord>)> {
        let def = &task.def;
        // Requests: MC -> one group per item; MI -> one group per context; recall -> one
        // more group per item.
        let mut requests: Vec<(String, Vec<String>)> = Vec::new();
        let mut spans = Vec::with_capacity(items.len());
        for item in items {
            let start = requests.len();
            match def.kind {
                TaskType::MultipleInput => {
                    for c in &item.contexts {
                        requests.push((c.clone(), item.continuations.clone()));
                    }
                }
                _ => requests.push((item.contexts[0].clone(), item.continuations.clone())),
            }
            if let Some((prompt, target)) = &item.recall {
                requests.push((prompt.clone(), vec![target.clone()]));
            }
            spans.push(start..requests.len());
        }
        let enc = self.encoder();
        let groups = encode_all(&enc, &requests)?;
        let per_item = requests.len().max(1) as f64 / items.len().max(1) as f64;
        let name = task.name.clone();
        let scores = score_groups(self.model, &groups, self.cfg.batch_size, |n| {
            on_progress(&name, (n as f64 / per_item).round() as u64)
        })?;

        let mut ms = MetricSet::default();
        let mut rows = Vec::with_capacity(items.len());
        for (item, span) in items.iter().zip(spans) {
            let mut s: Vec<_> = scores[span].to_vec();
            let recall_score = if item.recall.is_some() { s.pop() } else { None };
            let flat: Vec<_> = s.into_iter().flatten().collect();
            let lls: Vec<f64> = flat.iter().map(|c| c.loglik).collect();
            let greedy: Vec<bool> = flat.iter().map(|c| c.is_greedy).collect();
            let pred = argmax(&lls);
            let normed: Vec<f64> = lls
                .iter()
                .zip(&item.choices)
                .map(|(ll, c)| ll / (c.chars().count().max(1)) as f64)
                .collect();
            let pred_norm = argmax(&normed);
            let correct = pred == item.gold;
            let correct_norm = pred_norm == item.gold;
            let mut score = f64::from(u8::from(correct));
            for m in &def.metrics {
                match m.as_str() {
                    "acc" => ms.push("acc", f64::from(u8::from(correct))),
                    "acc_norm" => ms.push("acc_norm", f64::from(u8::from(correct_norm))),
                    "mc2" => {
                        score = mc2(&lls, &item.labels);
                        ms.push("mc2", score);
                    }
                    other => {
                        return Err(EvalError::task_def(
                            &task.name,
                            format!(
                                "metric `{other}` does not apply to log-likelihood tasks (acc, acc_norm, mc2)"
                            ),
                        ));
                    }
                }
            }
            let mut generation = None;
            if let (Some((prompt, target)), Some(rs)) = (&item.recall, recall_score) {
                let top1 = rs.first().is_some_and(|c| c.is_greedy);
                ms.push("recall_top1", f64::from(u8::from(top1)));
                let budget = def
                    .recall
                    .as_ref()
                    .and_then(|r| r.max_new_tokens)
                    .unwrap_or(rs.first().map_or(8, |c| c.n_tokens) + 8);
                let text = generate_text(
                    self.model,
                    self.tok,
                    prompt,
                    &GenSettings {
                        until: vec!["\n".into()],
                        max_new_tokens: budget,
                        max_len: self.max_len(),
                        add_special: self.cfg.add_bos,
                        temperature: 0.0,
                        seed: self.cfg.seed,
                    },
                )?;
                let hit = text.trim().starts_with(target.trim()) && !target.trim().is_empty();
                ms.push("recall_greedy", f64::from(u8::from(hit)));
                generation = Some(text);
            }
            ms.n += 1;
            rows.push(ItemRecord {
                task: task.name.clone(),
                item: item.index as i64,
                item_id: item.id.clone(),
                prompt_hash: prompt_hash(&item.prompt_text()),
                logliks: lls,
                is_greedy: greedy,
                pred: pred as i64,
                pred_norm: pred_norm as i64,
                gold: item.gold as i64,
                correct,
                correct_norm,
                score,
                generation,
                extracted: None,
                counts: None,
                metrics: Vec::new(),
            });
        }
        Ok((ms, rows))
    }

    fn perplexity_task(
        &self,
        task: &Task,
        on_progress: OnProgress,
    ) -> Result<(MetricSet, Vec<ItemRecord>)> {
        if let Some(n) = self.cfg.num_fewshot.filter(|&n| n > 0) {
            return Err(EvalError::Invalid(format!(
                "task `{}`: perplexity tasks score whole documents and take no demonstrations (num_fewshot is {n}; lm-eval refuses this too)",
                task.name
            )));
        }
        let path = data_path(task, self.cfg)?;
        let docs = if is_token_shards(&path) {
            shard_documents(&path, self.tok, self.cfg.limit)?
        } else {
            task_items(task, self.cfg)?
                .into_iter()
                .map(|item| {
                    Ok(Document {
                        tokens: self.tok.encode(&item.contexts[0], self.cfg.add_bos)?,
                        index: item.index,
                        counted: item.reference.unwrap_or_default(),
                        id: item.id,
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        let enc = self.encoder();
        let scores = score_documents(
            self.model,
            &docs,
            enc.prefix_id,
            enc.max_len,
            self.cfg.batch_size,
            || on_progress(&task.name, 1),
        )?;
        let mut ms = MetricSet::default();
        let mut rows = Vec::with_capacity(docs.len());
        for (doc, s) in docs.iter().zip(&scores) {
            s.record(&task.def.metrics, &mut ms);
            rows.push(ItemRecord {
                task: task.name.clone(),
                item: doc.index as i64,
                item_id: doc.id.clone(),
                prompt_hash: prompt_hash(&doc.counted),
                logliks: vec![s.loglik],
                pred: -1,
                pred_norm: -1,
                gold: -1,
                score: s.bits_per_byte(),
                counts: Some([s.tokens as i64, s.bytes as i64, s.words as i64]),
                ..Default::default()
            });
        }
        Ok((ms, rows))
    }

    fn gen_settings(&self, task: &Task, temperature: f32, seed: u64) -> GenSettings {
        GenSettings {
            until: task.def.until.clone(),
            max_new_tokens: self.cfg.max_gen_toks.unwrap_or(task.def.max_gen_toks),
            max_len: self.max_len(),
            add_special: self.cfg.add_bos,
            temperature,
            seed,
        }
    }

    fn generate_task(
        &self,
        task: &Task,
        items: &[Item],
        on_progress: OnProgress,
    ) -> Result<(MetricSet, Vec<ItemRecord>)> {
        let def = &task.def;
        let extractors = def
            .extract
            .iter()
            .map(Extract::new)
            .collect::<Result<Vec<_>>>()?;
        let norm = Normalizer::new(&def.ignore, def.ignore_case)?;
        let settings = self.gen_settings(task, 0.0, self.cfg.seed);
        let mut ms = MetricSet::default();
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let response = generate_text(self.model, self.tok, &item.contexts[0], &settings)?;
            let reference = item.reference.clone().unwrap_or_default();
            let mut first = None;
            for (i, ex) in extractors.iter().enumerate() {
                let got = ex.apply(&response);
                let hit = norm.matches(&got, &reference);
                ms.push(
                    &format!("exact_match,{}", ex.name),
                    f64::from(u8::from(hit)),
                );
                if i == 0 {
                    first = Some((got, hit));
                }
            }
            if extractors.is_empty() {
                let hit = norm.matches(&response, &reference);
                ms.push("exact_match", f64::from(u8::from(hit)));
                first = Some((response.clone(), hit));
            }
            let (extracted, hit) = first.unwrap_or_default();
            ms.n += 1;
            let score = f64::from(u8::from(hit));
            rows.push(generation_record(
                task, item, hit, score, response, extracted,
            ));
            on_progress(&task.name, 1);
        }
        Ok((ms, rows))
    }

    fn humaneval_task(
        &self,
        task: &Task,
        items: &[Item],
        on_progress: OnProgress,
    ) -> Result<(MetricSet, Vec<ItemRecord>)> {
        let n = self.cfg.num_samples.max(1);
        let ks = pass_ks(&task.def.metrics, &task.name)?;
        if let Some(&k) = ks.iter().find(|&&k| k > n) {
            return Err(EvalError::Invalid(format!(
                "task `{}`: pass@{k} needs at least {k} samples per problem; set num_samples",
                task.name
            )));
        }
        if n > 1 && self.cfg.temperature <= 0.0 {
            return Err(EvalError::Invalid(
                "num_samples > 1 with temperature 0 gives identical samples; set temperature (e.g. 0.2)".into(),
            ));
        }
        let limits = Limits {
            timeout_s: self.cfg.timeout_s.unwrap_or(task.def.timeout_s),
            memory_mb: self.cfg.memory_mb,
        };
        let mut programs = Vec::with_capacity(items.len() * n);
        for item in items {
            // bigcode-evaluation-harness strips the prompt and keeps what follows it up
            // to the first stop sequence.
            let prompt = item.contexts[0].trim().to_string();
            let mut completions = Vec::with_capacity(n);
            for s in 0..n {
                let settings =
                    self.gen_settings(task, self.cfg.temperature, self.cfg.seed + s as u64);
                completions.push(generate_text(self.model, self.tok, &prompt, &settings)?);
            }
            for c in completions {
                programs.push((prompt.clone(), c));
            }
            on_progress(&task.name, 1);
        }
        let outcomes: Vec<Outcome> = programs
            .par_iter()
            .enumerate()
            .map(|(i, (prompt, completion))| {
                let item = &items[i / n];
                run_program(
                    &humaneval_program(
                        prompt,
                        completion,
                        item.reference.as_deref().unwrap_or_default(),
                        item.entry_point.as_deref().unwrap_or_default(),
                    ),
                    &limits,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut ms = MetricSet::default();
        let mut rows = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let outs = &outcomes[i * n..(i + 1) * n];
            let c = outs.iter().filter(|o| o.passed()).count();
            for &k in &ks {
                ms.push(&format!("pass@{k}"), pass_at_k(n, c, k));
            }
            ms.n += 1;
            rows.push(generation_record(
                task,
                item,
                outs[0].passed(),
                c as f64 / n as f64,
                programs[i * n].1.clone(),
                outs[0].describe(),
            ));
        }
        Ok((ms, rows))
    }
}

/// The per-item record of a generation task (no choices: `pred`/`gold` are -1).
fn generation_record(
    task: &Task,
    item: &Item,
    correct: bool,
    score: f64,
    generation: String,
    extracted: String,
) -> ItemRecord {
    ItemRecord {
        task: task.name.clone(),
        item: item.index as i64,
        item_id: item.id.clone(),
        prompt_hash: prompt_hash(&item.prompt_text()),
        pred: -1,
        pred_norm: -1,
        gold: -1,
        correct,
        correct_norm: correct,
        score,
        generation: Some(generation),
        extracted: Some(extracted),
        ..Default::default()
    }
}

/// The program bigcode-evaluation-harness runs for a HumanEval completion.
pub fn humaneval_program(prompt: &str, completion: &str, test: &str, entry_point: &str) -> String {
    format!("{prompt}{completion}\n{test}\ncheck({entry_point})")
}

/// The `k`s of `pass@k` metrics.
fn pass_ks(metrics: &[String], task: &str) -> Result<Vec<usize>> {
    let mut ks = Vec::new();
    for m in metrics {
        let k = m
            .strip_prefix("pass@")
            .and_then(|k| k.parse::<usize>().ok())
            .filter(|&k| k > 0)
            .ok_or_else(|| {
                EvalError::task_def(task, format!("metric `{m}`: HumanEval tasks report pass@K"))
            })?;
        ks.push(k);
    }
    if ks.is_empty() {
        ks.push(1);
    }
    Ok(ks)
}

/// Run every task; results in task order.
pub fn evaluate<B: Backend>(
    model: &Llama<B>,
    tok: &Tokenizer,
    tasks: &[Task],
    cfg: &RunConfig,
    on_progress: OnProgress,
) -> Result<Vec<TaskResult>> {
    let ev = Evaluator { model, tok, cfg };
    tasks.iter().map(|t| ev.run_task(t, on_progress)).collect()
}

/// `metrics.json`'s object: one entry per task, plus one per group (micro average over
/// its subjects' items, as lm-eval's size-weighted MMLU score).
pub fn metrics_json(results: &[TaskResult]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut groups: Vec<(String, MetricSet)> = Vec::new();
    for r in results {
        out.insert(r.name.clone(), r.metrics.to_json());
        if let Some(g) = &r.group {
            match groups.iter_mut().find(|(n, _)| n == g) {
                Some((_, m)) => m.extend(&r.metrics),
                None => groups.push((g.clone(), r.metrics.clone())),
            }
        }
    }
    for (g, m) in groups {
        out.insert(g, m.to_json());
    }
    out
}
