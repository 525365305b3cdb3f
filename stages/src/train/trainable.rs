//! Which parameters train: [`TrainableSet`] resolves the `trainable:` parameter (reading
//! the surgery's `trainable.json` for `expanded`), [`freeze`] switches gradients off for
//! everything else, and [`param_table`] lists every parameter with its path, size and
//! role (trainable, weight-decayed).
//!
//! Parameter paths are burn's module paths joined by dots, e.g.
//! `blocks.3.self_attn.q_proj.weight`, `embed_tokens.weight`, `norm.weight`.
//! A trainable block trains all its tensors, its two norms included (the paper trains
//! "the new blocks and their norms"); embeddings, the final norm and `lm_head` train only
//! with `trainable: all`.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::Value;

use super::error::TrainError;
use super::params::Trainable;
use crate::model::Llama;

/// File name of the surgery's list of trainable blocks, next to `config.json`.
pub const TRAINABLE_JSON: &str = "trainable.json";

/// The resolved set of trainable parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainableSet {
    /// Every parameter trains (full fine-tuning).
    pub everything: bool,
    /// Trainable block indices (ignored when `everything`).
    pub blocks: BTreeSet<usize>,
}

impl TrainableSet {
    /// Resolve `trainable` for a model of `num_blocks` blocks stored in `model_dir`.
    pub fn resolve(
        trainable: &Trainable,
        model_dir: &Path,
        num_blocks: usize,
    ) -> Result<Self, TrainError> {
        let blocks: BTreeSet<usize> = match trainable {
            Trainable::All => {
                return Ok(TrainableSet {
                    everything: true,
                    blocks: (0..num_blocks).collect(),
                });
            }
            Trainable::Final => {
                if num_blocks == 0 {
                    return Err(TrainError::Trainable("the model has no block".into()));
                }
                BTreeSet::from([num_blocks - 1])
            }
            Trainable::Blocks(list) => list.iter().copied().collect(),
            Trainable::Expanded => {
                let path = model_dir.join(TRAINABLE_JSON);
                if !path.is_file() {
                    return Err(TrainError::Trainable(format!(
                        "`trainable: expanded` needs {} (written by `expand`/`prune`); \
                         use `trainable: all`, `final` or `{{blocks: [..]}}` for other models",
                        path.display()
                    )));
                }
                let (blocks, declared) = read_trainable_json_full(&path)?;
                if let Some(n) = declared.filter(|&n| n != num_blocks) {
                    return Err(TrainError::Trainable(format!(
                        "{} describes a model of {n} blocks, but the model has {num_blocks}",
                        path.display()
                    )));
                }
                blocks.into_iter().collect()
            }
        };
        if let Some(bad) = blocks.iter().find(|&&b| b >= num_blocks) {
            return Err(TrainError::Trainable(format!(
                "block {bad} does not exist: the model has {num_blocks} blocks (0..{})",
                num_blocks.saturating_sub(1)
            )));
        }
        if blocks.is_empty() {
            return Err(TrainError::Trainable("no block is trainable".into()));
        }
        Ok(TrainableSet {
            everything: false,
            blocks,
        })
    }

    /// Whether the parameter at `path` (module path segments) trains.
    pub fn contains(&self, path: &[String]) -> bool {
        if self.everything {
            return true;
        }
        match path {
            [first, index, ..] if first == "blocks" => index
                .parse::<usize>()
                .is_ok_and(|i| self.blocks.contains(&i)),
            _ => false,
        }
    }
}

/// The trainable block indices listed in a `trainable.json`.
///
/// Accepted shapes: the surgery's `{"num_blocks": N, "trainable": [i, ...], "blocks":
/// [...], "history": [...]}`, plus tolerant spellings: an object with
/// `trainable_blocks`, `trainable` or `blocks` holding a list of indices or of objects
/// with an `index` (entries with `"trainable": false` are skipped), or a bare list.
pub fn read_trainable_json(path: &Path) -> Result<Vec<usize>, TrainError> {
    read_trainable_json_full(path).map(|(blocks, _)| blocks)
}

/// [`read_trainable_json`] plus the file's `num_blocks`, when it states one.
fn read_trainable_json_full(path: &Path) -> Result<(Vec<usize>, Option<usize>), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Trainable(format!("{}: {e}", path.display())))?;
    let blocks = parse_trainable_value(&value)
        .map_err(|m| TrainError::Trainable(format!("{}: {m}", path.display())))?;
    let declared = value
        .get("num_blocks")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    Ok((blocks, declared))
}

fn parse_trainable_value(value: &Value) -> Result<Vec<usize>, String> {
    let list = match value {
        Value::Array(items) => items,
        Value::Object(map) => ["trainable_blocks", "trainable", "blocks"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_array))
            .ok_or("expected a `trainable_blocks` list of block indices")?,
        _ => return Err("expected an object with `trainable_blocks`".into()),
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let index = match item {
            Value::Number(n) => n.as_u64(),
            Value::Object(o) => {
                if o.get("trainable").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                ["index", "block"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_u64))
            }
            _ => None,
        };
        let index = index.ok_or_else(|| format!("`{item}` is not a block index"))?;
        out.push(index as usize);
    }
    Ok(out)
}

/// One parameter of the model.
#[derive(Debug, Clone)]
pub struct ParamInfo {
    /// Dotted module path, e.g. `blocks.3.mlp.up_proj.weight`.
    pub path: String,
    /// burn's id of the parameter (changes when the model is reloaded).
    pub id: ParamId,
    /// Number of scalars.
    pub numel: usize,
    /// Whether it trains.
    pub trainable: bool,
    /// Whether AdamW decays it (not norms and biases).
    pub decay: bool,
}

/// Whether the parameter at `path` gets weight decay: everything but biases and norm
/// scales (as transformers' Trainer and the paper's recipe do).
pub fn decays(path: &[String]) -> bool {
    let last = path.last().map(String::as_str).unwrap_or("");
    let is_norm = path.iter().any(|s| s.ends_with("norm"));
    last != "bias" && !is_norm
}

/// Tracks the module path during a visit or map.
#[derive(Default)]
pub(crate) struct PathStack(pub(crate) Vec<String>);

impl PathStack {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }
    pub(crate) fn dotted(&self) -> String {
        self.0.join(".")
    }
}

struct TableVisitor<'a> {
    set: &'a TrainableSet,
    path: PathStack,
    out: Vec<ParamInfo>,
}

impl<B: Backend> ModuleVisitor<B> for TableVisitor<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(ParamInfo {
            path: self.path.dotted(),
            id: param.id,
            numel: param.shape().num_elements(),
            trainable: self.set.contains(&self.path.0),
            decay: decays(&self.path.0),
        });
    }
}

/// Every float parameter of `model` in module order, marked against `set`.
pub fn param_table<B: Backend>(model: &Llama<B>, set: &TrainableSet) -> Vec<ParamInfo> {
    let mut v = TableVisitor {
        set,
        path: PathStack::default(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

struct FreezeMapper<'a> {
    set: &'a TrainableSet,
    path: PathStack,
}

impl<B: AutodiffBackend> ModuleMapper<B> for FreezeMapper<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let train = self.set.contains(&self.path.0);
        Param::from_mapped_value(id, tensor.set_require_grad(train), mapper)
    }
}

/// `model` with gradients on for the parameters in `set` and off for every other one,
/// so frozen tensors are never differentiated and the autodiff graph stops below the
/// lowest trainable block.
pub fn freeze<B: AutodiffBackend>(model: Llama<B>, set: &TrainableSet) -> Llama<B> {
    model.map(&mut FreezeMapper {
        set,
        path: PathStack::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainable_json_shapes() {
        // The surgery's format: `trainable` wins over the `blocks` details.
        let v = serde_json::json!({"num_blocks": 6, "trainable": [2, 5],
            "blocks": [{"index": 2, "operation": "expand"}], "history": []});
        assert_eq!(parse_trainable_value(&v).unwrap(), vec![2, 5]);
        let v = serde_json::json!({"trainable_blocks": [2, 5]});
        assert_eq!(parse_trainable_value(&v).unwrap(), vec![2, 5]);
        let v = serde_json::json!({"blocks": [{"index": 1, "init": "average"},
            {"index": 3, "trainable": false}, {"index": 4, "trainable": true}]});
        assert_eq!(parse_trainable_value(&v).unwrap(), vec![1, 4]);
        assert_eq!(
            parse_trainable_value(&serde_json::json!([0])).unwrap(),
            vec![0]
        );
        assert!(parse_trainable_value(&serde_json::json!({"x": 1})).is_err());
    }

    #[test]
    fn paths() {
        let set = TrainableSet {
            everything: false,
            blocks: BTreeSet::from([1]),
        };
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert!(set.contains(&p("blocks.1.input_layernorm.weight")));
        assert!(!set.contains(&p("blocks.10.mlp.up_proj.weight")));
        assert!(!set.contains(&p("embed_tokens.weight")));
        assert!(!decays(&p("blocks.1.post_attention_layernorm.weight")));
        assert!(!decays(&p("norm.weight")));
        assert!(!decays(&p("blocks.0.self_attn.q_proj.bias")));
        assert!(decays(&p("blocks.0.self_attn.q_proj.weight")));
    }
}
