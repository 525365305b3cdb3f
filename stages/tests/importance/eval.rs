//! `importance` with `score: eval` (paper Fig. 2(b)/(c)): every removal and insertion
//! variant's metrics equal what the `eval` stage reports for the model `prune` / `expand`
//! write for that variant; the angular distance is measured over the task's prompts when
//! no token set is given; bad settings are named.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use slayer_engine::StageContext;

use crate::eval_support::{fixtures, tiny_model_dir};

/// Runs stage `kind` with `params` on `inputs` (name -> path), writing to `out`.
fn run(kind: &str, params: Value, inputs: &[(&str, &Path)], out: &Path) -> Result<Value, String> {
    let registry = slayer_stages::registry();
    let stage = registry.get(kind).unwrap().clone();
    let params = stage.check_params(&params).map_err(|e| {
        let path: Vec<String> = e.path.iter().map(|p| format!("{p:?}")).collect();
        format!("{}: {}", path.join("."), e.message)
    })?;
    std::fs::create_dir_all(out).unwrap();
    let ctx = inputs.iter().fold(
        StageContext {
            work_dir: fixtures().join("eval"),
            scratch_dir: out.join("scratch"),
            ..StageContext::local(kind, out)
        },
        |ctx, (name, p)| ctx.with_input(name, &p.display().to_string(), p),
    );
    std::fs::create_dir_all(&ctx.scratch_dir).unwrap();
    stage
        .run(&params, &ctx)
        .map(Value::Object)
        .map_err(|e| e.to_string())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Eval settings of a multiple-choice task (a user's task file next to the fixtures).
fn eval_settings() -> Value {
    json!({"tasks": ["custom_task.yaml"], "data_dir": ".", "num_fewshot": 0, "batch_size": 4})
}

/// `slayer exec eval` on `model` with `settings`: its metrics.json.
fn evaluate(model: &Path, settings: &Value, out: &Path) -> Map<String, Value> {
    run("eval", settings.clone(), &[("model", model)], out).unwrap();
    read_json(&out.join("metrics.json"))
        .as_object()
        .unwrap()
        .clone()
}

/// The expand layout that inserts one new block after block `j` of `l`.
fn insert_after(j: usize, l: usize) -> String {
    let mut parts = Vec::new();
    if j > 0 {
        parts.push(j.to_string());
    }
    parts.push("(1+1)x1".into());
    if j + 1 < l {
        parts.push((l - j - 1).to_string());
    }
    parts.join("|")
}

/// Runs `importance` with `score: eval` and checks every variant's metrics against
/// `eval` on the model `prune`/`expand` export for it. Returns the output dir and
/// importance.json.
fn check_variants(
    tmp: &Path,
    settings: &Value,
    metric: &str,
    task: &str,
) -> (PathBuf, Value, Value) {
    let model = tiny_model_dir(tmp);
    let out = tmp.join("imp");
    let m = run(
        "importance",
        json!({"score": "eval", "eval": settings, "eval_metric": metric, "seq_len": 64}),
        &[("model", model.as_path())],
        &out,
    )
    .unwrap();
    let imp = read_json(&out.join("importance.json"));
    let eval = &imp["eval"];
    assert_eq!(eval["metric"], metric);
    assert_eq!(eval["tasks"], json!([task]));
    let metrics = &eval["metrics"];
    let l = 3;
    assert_eq!(metrics["remove"].as_array().unwrap().len(), l);
    assert_eq!(metrics["insert_copy"].as_array().unwrap().len(), l);
    assert_eq!(metrics["insert_average"].as_array().unwrap().len(), l - 1);

    let dir = |name: String| -> PathBuf { tmp.join(name) };
    let base = evaluate(&model, settings, &dir("eval-base".into()));
    assert_eq!(metrics["base"], Value::Object(base.clone()));
    for i in 0..l {
        let pruned = dir(format!("prune-{i}"));
        run(
            "prune",
            json!({"remove": [i], "merge": "none"}),
            &[("model", model.as_path())],
            &pruned,
        )
        .unwrap();
        let want = evaluate(
            &pruned.join("model"),
            settings,
            &dir(format!("eval-prune-{i}")),
        );
        assert_eq!(metrics["remove"][i], Value::Object(want), "remove {i}");
        for (init, key) in [("copy", "insert_copy"), ("average", "insert_average")] {
            if key == "insert_average" && i + 1 == l {
                continue;
            }
            let expanded = dir(format!("expand-{init}-{i}"));
            run(
                "expand",
                json!({"layout": insert_after(i, l), "init": init, "zero_out": false}),
                &[("model", model.as_path())],
                &expanded,
            )
            .unwrap();
            let want = evaluate(
                &expanded.join("model"),
                settings,
                &dir(format!("eval-{init}-{i}")),
            );
            assert_eq!(metrics[key][i], Value::Object(want), "{key} {i}");
        }
    }
    // The plotted series are the metric of those objects.
    let score = |v: &Value| v[task][metric].as_f64().unwrap();
    assert_eq!(eval["base"].as_f64().unwrap(), score(&metrics["base"]));
    for i in 0..l {
        assert_eq!(
            eval["remove"][i].as_f64().unwrap(),
            score(&metrics["remove"][i])
        );
    }
    assert_eq!(
        m[format!("base_{metric}")].as_f64().unwrap(),
        score(&metrics["base"])
    );
    (out, imp.clone(), Value::Object(base))
}

#[test]
fn every_variant_scores_what_eval_reports_for_the_exported_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, imp, base) = check_variants(tmp.path(), &eval_settings(), "acc_norm", "capitals");
    let l = 3;
    // No token set: the angular distance comes from the task's prompts, one window per
    // item.
    let items = base["capitals"]["n"].as_u64().unwrap();
    assert_eq!(imp["windows"].as_u64().unwrap(), items);
    assert_eq!(imp["data"], json!(["prompts of capitals"]));
    assert_eq!(imp["angular_mean"].as_array().unwrap().len(), l);
    assert!(imp["angular_mean"][0].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(out.join("importance.csv")).unwrap();
    assert!(
        csv.starts_with("block,angular_mean,angular_last,remove_ppl,insert_copy_ppl,insert_average_ppl,remove_acc_norm,insert_copy_acc_norm,insert_average_acc_norm\n"),
        "{csv}"
    );
    let svg = std::fs::read_to_string(out.join("importance.svg")).unwrap();
    assert!(svg.contains("acc_norm (capitals)"), "{svg}");
    assert!(!svg.contains(">perplexity<"), "{svg}");
}

/// A tiny random model's multiple-choice accuracy barely moves between variants; a
/// perplexity task's numbers move with every weight, so equality there pins each
/// variant to exactly the exported model.
#[test]
fn every_variant_of_a_perplexity_task_equals_the_exported_model() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. ".repeat(6),
    )
    .unwrap();
    let task = tmp.path().join("fox.yaml");
    std::fs::write(
        &task,
        "name: fox\ntype: perplexity\nfile: text.txt\ncontext: \"{text}\"\nmetrics: [bits_per_byte, token_perplexity]\n",
    )
    .unwrap();
    let settings = json!({
        "tasks": [task.display().to_string()],
        "data_dir": tmp.path().display().to_string(),
    });
    let (_, imp, _) = check_variants(tmp.path(), &settings, "bits_per_byte", "fox");
    let values: Vec<f64> = imp["eval"]["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] != w[1]), "{values:?}");
}

#[test]
fn eval_settings_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model_dir(tmp.path());
    let inputs = [("model", model.as_path())];
    let e = run(
        "importance",
        json!({"score": "eval"}),
        &inputs,
        &tmp.path().join("a"),
    )
    .unwrap_err();
    assert!(e.contains("score: eval needs the eval settings"), "{e}");
    let e = run(
        "importance",
        json!({"score": "eval", "eval": {"tasks": []}}),
        &inputs,
        &tmp.path().join("b"),
    )
    .unwrap_err();
    assert!(
        e.contains("\"eval\"") && e.contains("\"tasks\"") && e.contains("name at least one task"),
        "{e}"
    );
    let e = run(
        "importance",
        json!({"eval": eval_settings()}),
        &inputs,
        &tmp.path().join("c"),
    )
    .unwrap_err();
    assert!(e.contains("only with score: eval"), "{e}");
    let e = run(
        "importance",
        json!({"score": "eval", "eval": eval_settings(), "eval_metric": "f1", "metrics": ["remove"]}),
        &inputs,
        &tmp.path().join("d"),
    )
    .unwrap_err();
    assert!(
        e.contains("task `capitals` reports no metric `f1` (it has: acc, acc_norm, "),
        "{e}"
    );
}
