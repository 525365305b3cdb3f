//! Run records: [`RunRecord`] (one JSON file per fingerprint under `.slayer/runs/`) with
//! its [`InputRecord`]s and [`OutputRecord`]s, and the RFC 3339 timestamps they carry.
//! A record is the provenance of its outputs and its presence is the commit point of a
//! publish: no record, no cached result.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::fsutil::atomic_write;
use crate::hash::ContentHash;

/// Everything known about one successful run of a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub fingerprint: String,
    /// Instance name, e.g. `expand[layout=(2+1)x8|16]`.
    pub stage: String,
    /// Name of the manifest whose run produced it (absent in older records): "what
    /// changed since the last run" compares an instance only with its own manifest's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    pub kind: String,
    pub stage_version: u32,
    /// Canonical parameters (defaults filled in).
    pub params: serde_json::Value,
    pub inputs: BTreeMap<String, InputRecord>,
    pub env: BTreeMap<String, String>,
    /// Filled in by [`Store::publish`](crate::Store::publish).
    pub outputs: BTreeMap<String, OutputRecord>,
    pub metrics: serde_json::Value,
    /// RFC 3339 UTC, e.g. `2026-11-23T10:00:00Z`.
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    pub host: String,
    pub slayer_version: String,
    pub git_revision: Option<String>,
    /// Log path relative to the store root.
    pub log: Option<String>,
    /// The batch job that produced it, when a scheduler ran it: `scheduler` (`slurm`),
    /// `job_id`, `node`, `partition`; and `gpus`, the GPUs it was given
    /// (`CUDA_VISIBLE_DEVICES`), by Slurm or by the local executor.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub job: BTreeMap<String, String>,
    /// What the run cost, when it ran in a process of its own (the local and Slurm
    /// executors): `cpu_user_s`, `cpu_system_s`, `peak_rss_bytes` (of the stage process
    /// and of the largest process it waited for), like Snakemake's `benchmark:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, f64>,
}

/// One input of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub hash: ContentHash,
    /// `stage.output` reference, or the raw path / glob as written.
    pub source: String,
    /// Fingerprint of the producing stage, for lineage.
    pub producer: Option<String>,
}

/// One published output of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Relative to the run's out dir.
    pub path: String,
    pub hash: ContentHash,
    pub bytes: u64,
    pub files: u64,
}

/// Reads the record file of `fingerprint`; `None` if it does not exist,
/// [`CacheError::CorruptRecord`] if it is not that fingerprint's record.
pub(crate) fn read_record(path: &Path, fingerprint: &str) -> Result<Option<RunRecord>, CacheError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CacheError::io("read", path, e)),
    };
    let corrupt = |problem: String| CacheError::CorruptRecord {
        path: path.to_path_buf(),
        problem,
    };
    let record: RunRecord = serde_json::from_slice(&bytes).map_err(|e| {
        corrupt(if e.is_eof() {
            format!("truncated ({} bytes): {e}", bytes.len())
        } else {
            format!("not a valid run record: {e}")
        })
    })?;
    if record.fingerprint != fingerprint {
        return Err(corrupt(format!(
            "it is the record of fingerprint `{}`, not of `{fingerprint}` (its file name)",
            record.fingerprint
        )));
    }
    Ok(Some(record))
}

/// Writes a record durably and atomically (temp + fsync + rename + directory fsync).
pub(crate) fn write_record(path: &Path, record: &RunRecord) -> Result<(), CacheError> {
    let mut bytes = serde_json::to_vec_pretty(record).map_err(|e| CacheError::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

/// This machine's name as a file-name part: `[A-Za-z0-9._-]` kept, the rest `_`.
pub(crate) fn host_tag() -> String {
    host_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// This machine's name: `/etc/hostname`, else `$HOSTNAME`, else `unknown`.
pub fn host_name() -> String {
    fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The current time as RFC 3339 UTC with second precision, e.g. `2026-11-23T10:00:00Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

/// Formats a time as RFC 3339 UTC with second precision (times before 1970 clamp to it).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Seconds since the epoch of an RFC 3339 UTC time as [`format_rfc3339`] writes it
/// (`2026-11-23T10:00:00Z`; fractional seconds are ignored); `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || !s.ends_with('Z')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, m as u32, d as u32) * 86_400 + h * 3600 + min * 60 + sec)
}

/// (year, month, day) -> days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        let at = |s: u64| format_rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(1_795_428_000), "2026-11-23T10:00:00Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn rfc3339_parses_what_it_formats() {
        for s in [
            0u64,
            951_782_400,
            1_700_000_000,
            1_795_428_000,
            4_107_542_399,
        ] {
            let text = format_rfc3339(UNIX_EPOCH + Duration::from_secs(s));
            assert_eq!(parse_rfc3339(&text), Some(s as i64), "{text}");
        }
        for bad in [
            "",
            "2026-11-23 10:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-23T10:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn now_is_well_formed() {
        let s = now_rfc3339();
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
