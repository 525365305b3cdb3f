//! Rendering a [`Person`] as text: biography sentences (several templates per
//! attribute, shuffled order, full name or pronoun as subject), the short-answer recall
//! prompt of each attribute and its multiple-choice question.
//!
//! Template slots: `{n}` the subject (full name or he/she), `{ps}` the possessive
//! subject ("Alice Smith's" or his/her), `{p}` the possessive pronoun, `{v}` the value.
//! The first template of each attribute is the recall prompt's sentence (always with the
//! full name), so with `bios_per_person >= 5` every prompt and its target appear
//! verbatim in the person's biographies.

use super::world::{Attribute, Person};
use crate::rng::SplitMix64;

fn templates(attr: Attribute) -> &'static [&'static str] {
    match attr {
        Attribute::BirthDate => &[
            "{n} was born on {v}.",
            "{n} came into the world on {v}.",
            "{ps} date of birth is {v}.",
            "On {v}, {n} was born.",
            "{ps} life began on {v}.",
        ],
        Attribute::BirthCity => &[
            "{n} was born in the city of {v}.",
            "{n} was born in {v}.",
            "{n} spent {p} early years in {v}.",
            "{ps} birthplace is {v}.",
            "{n} hails from {v}.",
        ],
        Attribute::University => &[
            "{n} studied at {v}.",
            "{n} received a degree from {v}.",
            "{n} graduated from {v}.",
            "{n} attended {v}.",
            "{ps} alma mater is {v}.",
        ],
        Attribute::Major => &[
            "{n} majored in {v}.",
            "{n} completed a degree in {v}.",
            "{n} focused on {v} during {p} studies.",
            "{ps} field of study was {v}.",
            "{n} specialized in {v} at university.",
        ],
        Attribute::Employer => &[
            "{n} works for {v}.",
            "{n} is employed by {v}.",
            "{n} has a job at {v}.",
            "{ps} employer is {v}.",
            "{n} earns a living at {v}.",
        ],
        Attribute::WorkCity => &[
            "{n} works in the city of {v}.",
            "{n} lives and works in {v}.",
            "{ps} office is located in {v}.",
            "{n} commutes to work in {v}.",
            "{n} is based in {v}.",
        ],
    }
}

/// Number of templates per attribute.
pub const TEMPLATES: usize = 5;

fn question(attr: Attribute) -> &'static str {
    match attr {
        Attribute::BirthDate => "When was {name} born?",
        Attribute::BirthCity => "In which city was {name} born?",
        Attribute::University => "Which university did {name} attend?",
        Attribute::Major => "What did {name} study?",
        Attribute::Employer => "Which company does {name} work for?",
        Attribute::WorkCity => "In which city does {name} work?",
    }
}

/// Fill one template; `full` uses the full name as subject, else a pronoun.
fn fill(template: &str, person: &Person, value: &str, full: bool) -> String {
    let (he, his) = if person.female() {
        ("she", "her")
    } else {
        ("he", "his")
    };
    let possessive_name = format!("{}'s", person.name);
    let s = template
        .replace("{n}", if full { &person.name } else { he })
        .replace("{ps}", if full { &possessive_name } else { his })
        .replace("{p}", his)
        .replace("{v}", value);
    capitalize(&s)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Per-person template choices: paraphrase `k` of attribute `a` uses template
/// `order[a][k % TEMPLATES]`, so the first five paraphrases use five different templates.
pub struct TemplatePlan {
    order: Vec<[usize; TEMPLATES]>,
}

impl TemplatePlan {
    /// A random plan for one person.
    pub fn new(rng: &mut SplitMix64) -> TemplatePlan {
        let order = Attribute::ALL
            .iter()
            .map(|_| {
                let mut o = [0, 1, 2, 3, 4];
                rng.shuffle(&mut o);
                o
            })
            .collect();
        TemplatePlan { order }
    }
}

/// Paraphrase `k` of `person`'s biography: one sentence per attribute in random order;
/// the first sentence and every recall-prompt sentence name the person, the others do so
/// half of the time.
pub fn biography(person: &Person, plan: &TemplatePlan, k: usize, rng: &mut SplitMix64) -> String {
    let mut attrs: Vec<(usize, Attribute)> = Attribute::ALL.iter().copied().enumerate().collect();
    rng.shuffle(&mut attrs);
    let mut sentences = Vec::with_capacity(attrs.len());
    for (pos, (ai, attr)) in attrs.into_iter().enumerate() {
        let t = plan.order[ai][k % TEMPLATES];
        let template = templates(attr)[t];
        // The recall prompt's sentence always names the person, so that the prompt
        // appears verbatim; other sentences do so half of the time.
        let coin = rng.below(2) == 0;
        let full = pos == 0 || t == 0 || coin;
        sentences.push(fill(template, person, person.get(attr), full));
    }
    sentences.join(" ")
}

/// The recall prompt of `attr` ("Alice Smith was born in the city of") and its
/// target (" Paris").
pub fn recall(person: &Person, attr: Attribute) -> (String, String) {
    let sentence = templates(attr)[0];
    let prompt = sentence
        .trim_end_matches('.')
        .trim_end_matches("{v}")
        .trim_end();
    (
        fill(prompt, person, "", true),
        format!(" {}", person.get(attr)),
    )
}

/// The multiple-choice question of `attr`.
pub fn question_text(person: &Person, attr: Attribute) -> String {
    question(attr).replace("{name}", &person.name)
}
