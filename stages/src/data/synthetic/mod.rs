//! `corpus.synthetic`: a deterministic world of fictional people written as biographies,
//! split into populations (A for pre-training, B for knowledge injection), with matching
//! question sets. Same parameters, same bytes: the generator uses this crate's own
//! [`SplitMix64`](crate::rng::SplitMix64) and writes fields in a fixed order.
//!
//! - [`world`]: value pools and people (unique names).
//! - [`text`]: biography templates, recall prompts, multiple-choice questions.
//!
//! Outputs: `corpus_a.jsonl` / `corpus_b.jsonl` (`{"id","text","population"}` per line,
//! documents shuffled), `questions_a.jsonl` / `questions_b.jsonl` (one item per person
//! and attribute: `{"id","person","attribute","question","choices","answer","prompt",
//! "target"}`), and `people.jsonl` (every person's facts).

pub mod text;
pub mod world;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use slayer_engine::{
    InputSpecs, Metrics, OutputSpec, ParamError, StageContext, StageError, TypedStage,
};

use super::common::{AtomicFile, metrics};
use super::error::Result;
use crate::rng::SplitMix64;
use text::{TemplatePlan, biography, question_text, recall};
use world::{Attribute, Person, Pools, draw_people, max_people};

/// The `corpus.synthetic` stage kind.
pub struct Synthetic;

fn people_a() -> usize {
    200
}
fn people_b() -> usize {
    50
}
fn bios() -> usize {
    5
}
fn choices() -> usize {
    4
}

/// Parameters of `corpus.synthetic`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticParams {
    /// People in population A (the pre-training population).
    #[serde(default = "people_a")]
    pub people_a: usize,
    /// People in population B (the population whose facts are injected later).
    #[serde(default = "people_b")]
    pub people_b: usize,
    /// Seed of every random choice (names, facts, templates, order).
    #[serde(default)]
    pub seed: u64,
    /// Biographies (paraphrases) per person in population A; the first five of a person
    /// use five different templates per attribute.
    #[serde(default = "bios")]
    pub bios_per_person: usize,
    /// Biographies per person in population B (default: `bios_per_person`).
    #[serde(default)]
    pub bios_per_person_b: Option<usize>,
    /// Choices per multiple-choice question (2 to 10).
    #[serde(default = "choices")]
    pub choices: usize,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        SyntheticParams {
            people_a: people_a(),
            people_b: people_b(),
            seed: 0,
            bios_per_person: bios(),
            bios_per_person_b: None,
            choices: choices(),
        }
    }
}

/// One line of `corpus_*.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyntheticDoc {
    /// `<person>-<k>`, e.g. `a0007-2`.
    pub id: String,
    /// The biography.
    pub text: String,
    /// `a` or `b`.
    pub population: String,
}

/// One line of `questions_*.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Question {
    /// `<person>-<attribute>`.
    pub id: String,
    /// Person id.
    pub person: String,
    /// Attribute name (`birth_city`, …).
    pub attribute: String,
    /// Multiple-choice question text.
    pub question: String,
    /// Choices (one correct, the others distinct values of the same attribute).
    pub choices: Vec<String>,
    /// Index of the correct choice.
    pub answer: usize,
    /// Short-answer prompt, e.g. "Alice Smith was born in the city of".
    pub prompt: String,
    /// Its completion, e.g. " Paris".
    pub target: String,
}

/// Everything the generator produces, in output order.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Every person (A then B).
    pub people: Vec<Person>,
    /// Documents of A, shuffled.
    pub corpus_a: Vec<SyntheticDoc>,
    /// Documents of B, shuffled.
    pub corpus_b: Vec<SyntheticDoc>,
    /// Questions about A.
    pub questions_a: Vec<Question>,
    /// Questions about B.
    pub questions_b: Vec<Question>,
}

/// Generate the world of `p` (pure: no I/O).
pub fn generate(p: &SyntheticParams) -> World {
    let mut rng = SplitMix64::with_stream(p.seed, 0x5157);
    let pools = Pools::new(&mut rng);
    let people = draw_people(&mut rng, &pools, &[("a", p.people_a), ("b", p.people_b)]);
    let mut world = World::default();
    for pop in ["a", "b"] {
        let bios = if pop == "a" {
            p.bios_per_person
        } else {
            p.bios_per_person_b.unwrap_or(p.bios_per_person)
        };
        let mut docs = Vec::new();
        let mut questions = Vec::new();
        for person in people.iter().filter(|x| x.population == pop) {
            let plan = TemplatePlan::new(&mut rng);
            for k in 0..bios {
                docs.push(SyntheticDoc {
                    id: format!("{}-{k}", person.id),
                    text: biography(person, &plan, k, &mut rng),
                    population: pop.to_string(),
                });
            }
            for attr in Attribute::ALL {
                questions.push(make_question(person, attr, &pools, p.choices, &mut rng));
            }
        }
        rng.shuffle(&mut docs);
        if pop == "a" {
            world.corpus_a = docs;
            world.questions_a = questions;
        } else {
            world.corpus_b = docs;
            world.questions_b = questions;
        }
    }
    world.people = people;
    world
}

fn make_question(
    person: &Person,
    attr: Attribute,
    pools: &Pools,
    n: usize,
    rng: &mut SplitMix64,
) -> Question {
    let correct = person.get(attr);
    let others: Vec<&str> = pools
        .values(attr)
        .into_iter()
        .filter(|v| *v != correct)
        .collect();
    let mut choices: Vec<String> = rng
        .sample_indices(others.len(), n.saturating_sub(1))
        .into_iter()
        .map(|i| others[i].to_string())
        .collect();
    let answer = rng.below(choices.len() + 1);
    choices.insert(answer, correct.to_string());
    let (prompt, target) = recall(person, attr);
    Question {
        id: format!("{}-{}", person.id, attr.name()),
        person: person.id.clone(),
        attribute: attr.name().to_string(),
        question: question_text(person, attr),
        choices,
        answer,
        prompt,
        target,
    }
}

impl TypedStage for Synthetic {
    type Params = SyntheticParams;
    const KIND: &'static str = "corpus.synthetic";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "A seeded world of fictional people: biography corpora and question sets for populations A and B";

    fn inputs() -> InputSpecs {
        InputSpecs::Fixed(Vec::new())
    }

    fn outputs(_: &SyntheticParams) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("corpus_a", "corpus_a.jsonl"),
            OutputSpec::new("corpus_b", "corpus_b.jsonl"),
            OutputSpec::new("questions_a", "questions_a.jsonl"),
            OutputSpec::new("questions_b", "questions_b.jsonl"),
            OutputSpec::new("people", "people.jsonl"),
        ]
    }

    fn validate(p: &SyntheticParams) -> Result<(), ParamError> {
        if p.people_a + p.people_b > max_people() {
            return Err(ParamError::new(
                "people_a",
                format!(
                    "people_a + people_b = {} exceeds the {} unique names available",
                    p.people_a + p.people_b,
                    max_people()
                ),
            ));
        }
        ParamError::at_least_one("people_a", Some(p.people_a))?;
        ParamError::at_least_one("bios_per_person", Some(p.bios_per_person))?;
        ParamError::at_least_one("bios_per_person", p.bios_per_person_b)?;
        if !(2..=10).contains(&p.choices) {
            return Err(ParamError::new("choices", "must be between 2 and 10"));
        }
        Ok(())
    }

    fn run(&self, p: SyntheticParams, ctx: &StageContext) -> Result<Metrics, StageError> {
        let world = generate(&p);
        write_jsonl(&ctx.out("corpus_a.jsonl"), &world.corpus_a)?;
        write_jsonl(&ctx.out("corpus_b.jsonl"), &world.corpus_b)?;
        write_jsonl(&ctx.out("questions_a.jsonl"), &world.questions_a)?;
        write_jsonl(&ctx.out("questions_b.jsonl"), &world.questions_b)?;
        write_jsonl(&ctx.out("people.jsonl"), &world.people)?;
        Ok(metrics([
            ("people", world.people.len() as u64),
            (
                "documents",
                (world.corpus_a.len() + world.corpus_b.len()) as u64,
            ),
            ("documents_a", world.corpus_a.len() as u64),
            ("documents_b", world.corpus_b.len() as u64),
            (
                "questions",
                (world.questions_a.len() + world.questions_b.len()) as u64,
            ),
        ]))
    }
}

fn write_jsonl<T: Serialize>(path: &std::path::Path, items: &[T]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    for item in items {
        f.write_json_line(item)?;
    }
    f.finish()
}
