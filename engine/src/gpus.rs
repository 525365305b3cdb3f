//! The GPUs of this machine as the local scheduler hands them out: how many this process
//! may use ([`detected`]), what each is called ([`visible_devices`]), and which are free
//! while a run goes on ([`GpuPool`]).
//!
//! A stage declaring `resources: {gpus: N}` that the local executor starts gets N GPUs of
//! its own: its process sees only them (`CUDA_VISIBLE_DEVICES`), so its `cuda:0` is the
//! first of them, and two such stages never share a GPU. This is how Slurm's `--gres`
//! hands out GPUs too.

/// The GPU names in `CUDA_VISIBLE_DEVICES` when it is set: its entries up to the first
/// empty or negative one (CUDA ignores everything after that), so `""` and `-1` are none.
pub fn visible_devices() -> Option<Vec<String>> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok()?;
    Some(
        visible
            .split(',')
            .map(str::trim)
            .take_while(|id| !id.is_empty() && !id.starts_with('-'))
            .map(str::to_string)
            .collect(),
    )
}

/// GPUs this process may use: the entries of `CUDA_VISIBLE_DEVICES` when it is set, else
/// the `/dev/nvidiaN` device files (the NVIDIA driver makes one per GPU), else none.
pub fn detected() -> usize {
    if let Some(ids) = visible_devices() {
        return ids.len();
    }
    std::fs::read_dir("/dev").map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("nvidia"))
                    .is_some_and(|rest| {
                        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .count()
    })
}

/// The GPUs not held by a running stage.
#[derive(Debug)]
pub struct GpuPool {
    free: Vec<String>,
}

impl GpuPool {
    /// `count` GPUs, named as `CUDA_VISIBLE_DEVICES` names them when it lists that many
    /// (`3,5` -> `3` and `5`), else `0` to `count - 1`.
    pub fn new(count: usize) -> GpuPool {
        let free = match visible_devices() {
            Some(ids) if ids.len() >= count => ids.into_iter().take(count).collect(),
            _ => (0..count).map(|i| i.to_string()).collect(),
        };
        GpuPool { free }
    }

    /// Hand out `n` GPUs (the lowest-numbered first), or none if fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<String>> {
        (n <= self.free.len()).then(|| self.free.drain(..n).collect())
    }

    /// Return GPUs handed out by [`GpuPool::take`].
    pub fn give_back(&mut self, ids: Vec<String>) {
        self.free.extend(ids);
        self.free.sort_by_key(|id| (id.len(), id.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_get_disjoint_gpus_and_return_them() {
        let mut pool = GpuPool {
            free: ["0", "1", "2", "3"].map(String::from).to_vec(),
        };
        let a = pool.take(2).unwrap();
        let b = pool.take(1).unwrap();
        assert_eq!(
            (a.clone(), b),
            (vec!["0".into(), "1".into()], vec!["2".to_string()])
        );
        assert_eq!(pool.take(2), None);
        pool.give_back(a);
        assert_eq!(pool.take(3).unwrap(), ["0", "1", "3"]);
        assert_eq!(pool.take(0).unwrap(), Vec::<String>::new());
    }
}
