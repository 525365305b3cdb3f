//! The device owner for the engine ([`slayer_engine::Registry::set_device_facts`]): a
//! manifest's `device:` means what [`DeviceSpec`] parses, so the engine, `slayer exec` and
//! the stages accept the same spellings and name a device the same way in fingerprints.

use std::collections::BTreeMap;

use crate::model::DeviceSpec;

/// The environment facts `device` gives a stage's results, as fingerprints hold them
/// (`device`: `cpu` | `cuda`, `backend`), or why it is not a device.
pub fn device_facts(device: &str) -> Result<BTreeMap<String, String>, String> {
    device
        .parse::<DeviceSpec>()
        .map(|d| slayer_engine::fingerprint::device_env(d.kind()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_reads_devices_as_device_spec_does() {
        let facts = |d: &str| device_facts(d).map(|f| (f["device"].clone(), f["backend"].clone()));
        assert_eq!(facts("cpu"), Ok(("cpu".into(), "burn-flex".into())));
        // Spellings DeviceSpec accepts are accepted in manifests, with the same facts.
        for d in ["cuda", "cuda:1", "gpu", "CUDA"] {
            assert_eq!(facts(d), Ok(("cuda".into(), "burn-cuda".into())), "{d}");
        }
        // And what it rejects is rejected there, with its message.
        let err = device_facts("cuda0").unwrap_err();
        assert!(err.contains("expected `cpu`, `cuda` or `cuda:N`"), "{err}");
    }
}
