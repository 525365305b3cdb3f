//! The JSON Schema of a manifest, for editor completion: the top-level structure, and
//! for each registered stage kind a `with:` schema tied to `kind:` by if/then.

use serde_json::{Value, json};

use crate::stage::Registry;

/// The manifest's JSON Schema (draft 2020-12).
pub fn manifest_schema(registry: &Registry) -> Value {
    let kinds: Vec<&str> = registry.names().collect();
    let per_kind: Vec<Value> = registry
        .kinds()
        .map(|k| {
            json!({
                "if": {"properties": {"kind": {"const": k.kind()}}},
                "then": {"properties": {"with": k.params_schema()}}
            })
        })
        .collect();
    let slurm = serde_json::to_value(schemars::schema_for!(crate::slurm::SlurmSettings))
        .unwrap_or(Value::Null);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "slayer manifest",
        "type": "object",
        "additionalProperties": false,
        "required": ["stages"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "include": {"type": "array", "items": {"type": "string"}, "description": "Manifests merged first; this file overrides them."},
            "defaults": {"type": "object", "description": "Values for ${defaults.NAME}; `device` is the default device of every stage."},
            "grid": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1},
                     "description": "Named axes; a stage using ${grid.NAME} fans out into one instance per value."},
            "exclude": {"type": "array", "items": {"type": "object"}, "description": "Grid combinations to drop."},
            "stages": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
                "additionalProperties": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["kind"],
                    "properties": {
                        "kind": {"enum": kinds},
                        "description": {"type": "string"},
                        "inputs": {"type": "object", "additionalProperties": {"type": "string"},
                                   "description": "name -> `stage.output`, `stage[*].output`, or a path/glob relative to the manifest"},
                        "with": {"type": "object"},
                        "device": {"type": "string", "pattern": "^(cpu|cuda(:[0-9]+)?)$|\\$\\{"},
                        "resources": {"type": "object", "additionalProperties": false,
                                      "properties": {"threads": {"type": "integer", "minimum": 0},
                                                     "gpus": {"type": "integer", "minimum": 0},
                                                     "memory": {"type": "string"},
                                                     "retries": {"type": "integer", "minimum": 0},
                                                     "slurm": slurm}}
                    },
                    "allOf": per_kind
                }
            }
        }
    })
}
