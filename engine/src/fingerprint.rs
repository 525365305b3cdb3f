//! Stage fingerprints: what decides whether a stored result can be reused.
//!
//! | enters the hash            | why                                                  |
//! |----------------------------|------------------------------------------------------|
//! | `format`                   | changing this struct must invalidate old fingerprints |
//! | `kind`, `stage_version`    | a different or changed implementation computes anew   |
//! | `params` (canonical)       | defaults filled in, keys sorted: `lr: 2e-4` written or defaulted is the same |
//! | `inputs` (content hashes)  | the *bytes* of each input, not the upstream fingerprint: an upstream that reruns and produces identical bytes leaves its consumers cached (early cutoff) |
//! | `env`                      | result-relevant facts: device kind and backend for model stages |
//!
//! Never entered: absolute paths, mtimes, the stage's name (two identical stages share a
//! result), the number of threads.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use slayer_cache::ContentHash;

const FORMAT: u32 = 1;

/// Every input of a fingerprint, in one place (serialised canonically, then blake3).
#[derive(Serialize)]
pub struct FingerprintInputs<'a> {
    format: u32,
    pub kind: &'a str,
    pub stage_version: u32,
    pub params: &'a Value,
    pub inputs: &'a BTreeMap<String, ContentHash>,
    pub env: &'a BTreeMap<String, String>,
}

impl<'a> FingerprintInputs<'a> {
    pub fn new(
        kind: &'a str,
        stage_version: u32,
        params: &'a Value,
        inputs: &'a BTreeMap<String, ContentHash>,
        env: &'a BTreeMap<String, String>,
    ) -> Self {
        FingerprintInputs {
            format: FORMAT,
            kind,
            stage_version,
            params,
            inputs,
            env,
        }
    }

    /// The fingerprint: blake3 of the canonical JSON (serde_json sorts object keys).
    pub fn fingerprint(&self) -> String {
        // Strings, integers and JSON values with string keys: serialising cannot fail,
        // and hashing empty bytes instead would give every stage the same fingerprint.
        let bytes = serde_json::to_vec(self).expect("fingerprint inputs serialise to JSON");
        blake3::hash(&bytes).to_hex().to_string()
    }
}

/// The environment facts a device gives the results of a stage that computes on it,
/// when no crate owns the devices ([`crate::Registry::set_device_facts`]): `cpu` or
/// `cuda[:N]`, the device kind and its burn backend (the index does not change results).
pub fn default_device_facts(device: &str) -> Result<BTreeMap<String, String>, String> {
    let kind = match device.split_once(':') {
        None if device == "cpu" || device == "cuda" => device,
        Some(("cuda", index)) if index.parse::<usize>().is_ok() => "cuda",
        _ => {
            return Err(format!(
                "unknown device `{device}`: expected `cpu` or `cuda:N`"
            ));
        }
    };
    Ok(device_env(kind))
}

/// `{device: KIND, backend: burn-KIND's backend}`, the facts fingerprints hold.
pub fn device_env(kind: &str) -> BTreeMap<String, String> {
    let backend = if kind == "cuda" {
        "burn-cuda"
    } else {
        "burn-flex"
    };
    BTreeMap::from([
        ("device".to_string(), kind.to_string()),
        ("backend".to_string(), backend.to_string()),
    ])
}

/// One hash for a list of labelled hashes (a gathered or multi-file input).
pub fn combine(items: &[(String, ContentHash)]) -> ContentHash {
    let mut h = blake3::Hasher::new();
    for (label, hash) in items {
        h.update(label.as_bytes());
        h.update(b"\t");
        h.update(hash.0.as_bytes());
        h.update(b"\n");
    }
    ContentHash(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_content_not_key_order() {
        let inputs = BTreeMap::from([("a".to_string(), ContentHash("00".into()))]);
        let env = BTreeMap::new();
        let p1 = serde_json::json!({"lr": 1e-4, "b": 1});
        let p2: Value = serde_json::from_str(r#"{"b": 1, "lr": 0.0001}"#).unwrap();
        let f1 = FingerprintInputs::new("k", 1, &p1, &inputs, &env).fingerprint();
        let f2 = FingerprintInputs::new("k", 1, &p2, &inputs, &env).fingerprint();
        assert_eq!(f1, f2);
        let other = BTreeMap::from([("a".to_string(), ContentHash("01".into()))]);
        assert_ne!(
            f1,
            FingerprintInputs::new("k", 1, &p1, &other, &env).fingerprint()
        );
        assert_ne!(
            f1,
            FingerprintInputs::new("k", 2, &p1, &inputs, &env).fingerprint()
        );
    }
}
