//! `corpus.synthetic`: same seed -> same bytes, and every question is answerable from
//! its own population's corpus.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{metric, run, tree_hashes};
use serde_json::{Value, json};
use slayer_stages::data::synthetic::{Question, SyntheticDoc};

fn generate(dir: &Path, params: Value) -> serde_json::Map<String, Value> {
    run("corpus.synthetic", params, &[], dir, 1).unwrap()
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn same_seed_gives_same_bytes_and_another_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let params = json!({"people_a": 30, "people_b": 10, "seed": 7, "bios_per_person": 3});
    generate(&tmp.path().join("one"), params.clone());
    generate(&tmp.path().join("two"), params);
    generate(
        &tmp.path().join("three"),
        json!({"people_a": 30, "people_b": 10, "seed": 8, "bios_per_person": 3}),
    );
    let one = tree_hashes(&tmp.path().join("one"));
    assert_eq!(one.len(), 5, "{one:?}");
    assert_eq!(one, tree_hashes(&tmp.path().join("two")));
    let three = tree_hashes(&tmp.path().join("three"));
    assert_ne!(one["corpus_a.jsonl"], three["corpus_a.jsonl"]);
}

#[test]
fn every_question_is_answerable_from_its_population_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let m = generate(
        tmp.path(),
        json!({"people_a": 60, "people_b": 20, "seed": 3, "bios_per_person": 5}),
    );
    assert_eq!(metric(&m, "documents_a"), 300);
    assert_eq!(metric(&m, "documents_b"), 100);
    for pop in ["a", "b"] {
        let docs: Vec<SyntheticDoc> = read_jsonl(&tmp.path().join(format!("corpus_{pop}.jsonl")));
        let questions: Vec<Question> =
            read_jsonl(&tmp.path().join(format!("questions_{pop}.jsonl")));
        assert_eq!(questions.len(), if pop == "a" { 60 } else { 20 } * 6);
        let mut bios: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in &docs {
            assert_eq!(d.population, pop);
            let person = d.id.rsplit_once('-').unwrap().0;
            bios.entry(person).or_default().push(&d.text);
        }
        for q in &questions {
            let texts = &bios[q.person.as_str()];
            assert_eq!(q.choices[q.answer], q.target.trim(), "{q:?}");
            let mut distinct = q.choices.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                q.choices.len(),
                "duplicate choices in {q:?}"
            );
            // The short-answer prompt and its target appear verbatim in a biography.
            let sentence = format!("{}{}", q.prompt, q.target);
            assert!(
                texts.iter().any(|t| t.contains(&sentence)),
                "`{sentence}` not in the biographies of {}",
                q.person
            );
        }
    }
}

#[test]
fn names_are_unique_across_populations() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), json!({"people_a": 500, "people_b": 200}));
    let people: Vec<Value> = read_jsonl(&tmp.path().join("people.jsonl"));
    let mut names: Vec<&str> = people.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 700);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 700);
}

#[test]
fn too_many_people_is_a_parameter_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run(
        "corpus.synthetic",
        json!({"people_a": 100000}),
        &[],
        tmp.path(),
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unique names"), "{err}");
}
