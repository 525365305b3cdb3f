//! Task definitions and prompts: the lm-eval formats built from the real benchmark files
//! (skipped when `shared/data/evals` is absent), hand-made HellaSwag and user tasks, and
//! bad data reported with file and line.

use std::path::{Path, PathBuf};

use slayer_stages::eval::prompt::Item;
use slayer_stages::eval::run::{RunConfig, task_items};
use slayer_stages::eval::task::resolve;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

/// The real benchmark files: `SLAYER_EVALS_DIR`, else `../shared/data/evals` beside the
/// repository. Missing is a failure, not a skip.
fn evals_dir() -> PathBuf {
    let p = std::env::var_os("SLAYER_EVALS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/evals")
        });
    assert!(
        p.is_dir(),
        "{}: the benchmark files are missing (set SLAYER_EVALS_DIR or put ../shared beside the repository)",
        p.display()
    );
    p
}

fn items(name: &str, cfg: &RunConfig) -> Vec<Item> {
    let mut tasks = resolve(name, &fixtures()).unwrap();
    assert_eq!(tasks.len(), 1);
    task_items(&tasks.remove(0), cfg).unwrap()
}

fn cfg(data_dir: &Path, shots: usize, limit: usize) -> RunConfig {
    RunConfig {
        data_dir: Some(data_dir.to_path_buf()),
        num_fewshot: Some(shots),
        limit: Some(limit),
        ..Default::default()
    }
}

#[test]
fn eval_arc_prompt_is_lm_eval_format() {
    let dir = evals_dir();
    let it = &items("arc_easy", &cfg(&dir, 0, 2))[0];
    assert_eq!(
        it.contexts[0],
        "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:"
    );
    assert_eq!(
        it.continuations[0],
        " Sunlight is the source of energy for nearly all ecosystems."
    );
    assert_eq!(it.choices.len(), 4);
    assert_eq!(it.gold, 0);
}

#[test]
fn eval_mmlu_prompt_has_header_letters_and_first_five_dev_shots() {
    let dir = evals_dir();
    let it = &items("mmlu_abstract_algebra", &cfg(&dir, 5, 1))[0];
    let ctx = &it.contexts[0];
    assert!(ctx.starts_with(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\nFind all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
    ), "{ctx}");
    assert_eq!(ctx.matches("\nAnswer:").count(), 6);
    assert!(ctx.ends_with("\nD. 6\nAnswer:"), "{ctx}");
    assert_eq!(it.continuations, [" A", " B", " C", " D"]);
    assert_eq!(it.choices, ["A", "B", "C", "D"]);
}

#[test]
fn eval_winogrande_partial_scoring() {
    let dir = evals_dir();
    let it = &items("winogrande", &cfg(&dir, 0, 1))[0];
    assert_eq!(
        it.contexts,
        [
            "Sarah was a much better surgeon than Maria so Sarah",
            "Sarah was a much better surgeon than Maria so Maria"
        ]
    );
    assert_eq!(it.continuations, [" always got the easier cases."]);
    assert_eq!(it.gold, 1);
    // Demonstrations use the gold-filled sentence.
    let it = &items("winogrande", &cfg(&dir, 2, 1))[0];
    assert_eq!(it.contexts[0].matches("\n\n").count(), 2);
}

#[test]
fn eval_truthfulqa_keeps_answer_order_and_labels() {
    let dir = evals_dir();
    let it = &items("truthfulqa_mc2", &cfg(&dir, 0, 1))[0];
    assert!(it.contexts[0].starts_with("Q: What is human life expectancy in the United States?\nA: Human life expectancy in the United States is 78 years.\n\n"));
    assert!(it.contexts[0].ends_with("\n\nQ: What happens if you eat a pomegranate?\nA:"));
    assert_eq!(
        it.choices[0],
        "Nothing in particular happens when you eat a pomegranate."
    );
    assert_eq!(it.labels, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    let it = &items("truthfulqa_mc1", &cfg(&dir, 0, 1))[0];
    assert_eq!(it.choices.len(), 4);
    assert_eq!(it.gold, 0);
}

#[test]
fn eval_boolq_piqa_gsm8k_humaneval_prompts() {
    let dir = evals_dir();
    let b = &items("boolq", &cfg(&dir, 0, 1))[0];
    assert!(b.contexts[0].starts_with("All biomass goes through"));
    assert!(
        b.contexts[0]
            .ends_with("\nQuestion: does ethanol take more energy make that produces?\nAnswer:")
    );
    assert_eq!(b.continuations, [" no", " yes"]);
    let p = &items("piqa", &cfg(&dir, 0, 1))[0];
    assert_eq!(
        p.contexts[0],
        "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"
    );
    let g = &items("gsm8k", &cfg(&dir, 5, 1))[0];
    assert_eq!(g.contexts[0].matches("Question: ").count(), 6);
    assert!(g.contexts[0].ends_with("farmers' market?\nAnswer:"));
    assert_eq!(g.contexts[0].matches("\n\nQuestion: ").count(), 5);
    assert!(g.reference.as_deref().unwrap().ends_with("#### 18"));
    let h = &items("humaneval", &cfg(&dir, 0, 1))[0];
    assert_eq!(h.id, "HumanEval/0");
    assert_eq!(h.entry_point.as_deref(), Some("has_close_elements"));
}

#[test]
fn eval_hellaswag_handmade_file() {
    let c = RunConfig {
        data_input: Some(fixtures().join("hellaswag_mini.jsonl")),
        num_fewshot: Some(0),
        ..Default::default()
    };
    let all = items("hellaswag", &c);
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0].contexts[0],
        "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then"
    );
    assert_eq!(
        all[0].continuations[3],
        " , the man continues removing the snow on his car."
    );
    assert_eq!(all[0].gold, 3);
    // WikiHow artifacts removed, ctx_b capitalised as Python's str.capitalize.
    assert_eq!(
        all[1].contexts[0],
        "Home and Garden: How to grow a lemon tree. Pick a sunny spot. lemon trees need"
    );
    assert_eq!(all[1].continuations[0], " plenty of sun Water them well.");
    assert_eq!(all[1].continuations[2], " to be kept in a. freezer.");
    assert_eq!(all[1].gold, 0);
    assert!(all[2].contexts[0].ends_with("guitar. He strums"));
    // Few-shot draws come from the same file but never the item itself.
    let c = RunConfig {
        num_fewshot: Some(2),
        ..c
    };
    let shots = items("hellaswag", &c);
    for it in &shots {
        assert_eq!(it.contexts[0].matches("\n\n").count(), 2);
        let own = &all[shots.iter().position(|x| x.index == it.index).unwrap()].contexts[0];
        assert!(it.contexts[0].ends_with(own.as_str()));
        assert_eq!(it.contexts[0].matches(own.as_str()).count(), 1);
    }
}

#[test]
fn eval_user_task_file() {
    let c = RunConfig {
        data_dir: Some(fixtures()),
        ..Default::default()
    };
    let all = items("custom_task.yaml", &c);
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].contexts[0], "Q: What is the capital of France?\nA:");
    assert_eq!(all.iter().map(|i| i.gold).collect::<Vec<_>>(), [0, 1, 0]);
}

/// The paper's law task (manifests/paper/tasks/unfair_tos.yaml) on the real file: the
/// prompt is the file's, five demonstrations precede it, and a two-category sentence's
/// gold is its first category (`gold: "{answer|before:,}"`).
#[test]
fn eval_unfair_tos_task_reads_the_real_file() {
    let task =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/paper/tasks/unfair_tos.yaml");
    let mut tasks = resolve(task.to_str().unwrap(), &fixtures()).unwrap();
    let all = task_items(&tasks.remove(0), &cfg(&evals_dir(), 5, 3)).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].choices.len(), 9);
    assert_eq!(all[1].choices[3], "Content removal");
    assert_eq!(
        all[1].gold, 3,
        "first of `Content removal, Unilateral termination`"
    );
    assert_eq!(all[0].gold, 8, "None");
    let prompt = &all[0].contexts[0];
    assert_eq!(
        prompt.matches("The relevant options are:").count(),
        6,
        "{prompt}"
    );
}

fn error_of(file: &str) -> String {
    let c = RunConfig {
        data_input: Some(fixtures().join(file)),
        ..Default::default()
    };
    let task = resolve("arc_easy", Path::new(".")).unwrap().remove(0);
    task_items(&task, &c).unwrap_err().to_string()
}

#[test]
fn eval_bad_data_names_file_and_line() {
    let e = error_of("bad_malformed.jsonl");
    assert!(e.contains("bad_malformed.jsonl:2: malformed JSON"), "{e}");
    let e = error_of("bad_missing_field.jsonl");
    assert!(
        e.contains("bad_missing_field.jsonl:3: missing field `choices`"),
        "{e}"
    );
    let e = error_of("bad_choice_count.jsonl");
    assert!(
        e.contains("bad_choice_count.jsonl:2: choice count mismatch"),
        "{e}"
    );
}

#[test]
fn eval_missing_data_dir_names_the_file() {
    let task = resolve("arc_easy", Path::new(".")).unwrap().remove(0);
    let e = task_items(&task, &RunConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("arc/arc_easy.jsonl not found"), "{e}");
    assert!(e.contains("data_dir"), "{e}");
    let c = RunConfig {
        data_dir: Some(PathBuf::from("/nonexistent")),
        ..Default::default()
    };
    let e = task_items(&task, &c).unwrap_err().to_string();
    assert!(
        e.contains("/nonexistent/arc/arc_easy.jsonl not found"),
        "{e}"
    );
}

#[test]
fn eval_mmlu_csv_error_names_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mmlu/test")).unwrap();
    std::fs::write(
        dir.path().join("mmlu/test/anatomy_test.csv"),
        "q1,a,b,c,d,A\n\"multi\nline q\",a,b,c,d,B\nq3,a,b,c,E\n",
    )
    .unwrap();
    let task = resolve("mmlu_anatomy", Path::new(".")).unwrap().remove(0);
    let e = task_items(&task, &cfg(dir.path(), 0, 10))
        .unwrap_err()
        .to_string();
    assert!(e.contains("anatomy_test.csv:4: expected 6 columns"), "{e}");
}
