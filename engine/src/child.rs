//! The local executor's isolation: each attempt runs as `slayer __instance SPEC` in a
//! child process that leads its own process group, so a stage that aborts, segfaults or
//! is OOM-killed fails alone. The child gets SIGTERM when the engine thread that started
//! it dies (`PR_SET_PDEATHSIG`, so a SIGKILLed `slayer` leaves no orphans) and then kills
//! its whole group ([`crate::interrupt::die_with_group_on_term`]); on an interrupt the
//! engine kills the group itself; once the child has exited, whatever it left behind in
//! its group is killed too.
//!
//! Progress crosses the pipe as lines on the child's stdout (`len N`, `pos N`,
//! `msg TEXT`), at most a few per second; its stderr goes to the stage log.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use slayer_cache::RunRecord;

use crate::failure::Failure;
use crate::job::{self, JobResult, JobSpec};
use crate::stage::Progress;

/// Runs `spec` as `program __instance SPEC` and waits for it; the published record, or
/// why there is none.
pub fn run(
    program: &Path,
    job_dir: &Path,
    spec: &JobSpec,
    progress: &Progress,
) -> Result<RunRecord, Failure> {
    let spec_path = job::write_spec(job_dir, spec).map_err(Failure::Store)?;
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| Failure::Store(format!("{}: {e}", spec.log.display())))?;
    let engine_pid = std::process::id();
    let mut command = Command::new(program);
    command
        .arg("__instance")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0);
    if !spec.gpus.is_empty() {
        command.env("CUDA_VISIBLE_DEVICES", spec.gpus.join(","));
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The engine may have died before the prctl: then nobody would signal us.
            if libc::getppid() as u32 != engine_pid {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        Failure::Process(format!(
            "cannot start the stage process `{}`: {e}",
            program.display()
        ))
    })?;
    let pgid = child.id() as libc::pid_t;
    let reader = child.stdout.take().map(|out| {
        let progress = progress.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                apply_progress_line(&line, &progress);
            }
        })
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => {
                break Err(Failure::Process(format!(
                    "cannot wait for the stage process: {e}"
                )));
            }
        }
        if crate::interrupt::requested() {
            kill_group(pgid);
            let _ = child.wait();
            kill_group(pgid);
            let _ = std::fs::remove_dir_all(&spec.staging);
            return Err(Failure::Interrupted("interrupted".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Whatever the stage left running in its group goes with it.
    kill_group(pgid);
    if let Some(r) = reader {
        let _ = r.join();
    }
    let status = status?;
    match job::read_result(job_dir) {
        Some(JobResult::Published(record)) => Ok(*record),
        Some(JobResult::Failed(failure)) => Err(failure),
        None => {
            let _ = std::fs::remove_dir_all(&spec.staging);
            Err(Failure::Process(describe_death(status, &spec.log)))
        }
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: plain syscall; ESRCH (group already empty) is expected and ignored.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

/// Why a stage process ended without a result, with the last lines of its log.
fn describe_death(status: ExitStatus, log: &Path) -> String {
    let how = match (status.signal(), status.code()) {
        (Some(sig), _) => format!(
            "the stage process was killed by signal {sig} ({}){}",
            signal_name(sig),
            if sig == libc::SIGKILL {
                ", e.g. by the kernel's out-of-memory killer"
            } else {
                ""
            }
        ),
        (None, Some(code)) => {
            format!("the stage process exited with status {code} without a result")
        }
        (None, None) => "the stage process ended without a result".into(),
    };
    let tail = std::fs::read_to_string(log)
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        })
        .unwrap_or_default();
    if tail.is_empty() {
        how
    } else {
        format!("{how}; last log lines:\n{tail}")
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Applies one progress line from a child to the stage's bar; other lines are ignored.
fn apply_progress_line(line: &str, progress: &Progress) {
    let (key, value) = line.split_once(' ').unwrap_or((line, ""));
    match key {
        "len" => {
            if let Ok(n) = value.parse() {
                progress.set_total(n);
            }
        }
        "pos" => {
            if let Ok(n) = value.parse() {
                progress.set_position(n);
            }
        }
        "msg" => progress.set_message(value),
        _ => {}
    }
}

/// The child's side: a [`Progress`] whose changes are written to stdout as progress
/// lines, a few times a second, by a background thread.
pub fn progress_to_stdout() -> Progress {
    let bar = indicatif::ProgressBar::hidden();
    let watched = bar.clone();
    std::thread::spawn(move || {
        let mut last = (None, 0, String::new());
        let mut out = std::io::stdout();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = (watched.length(), watched.position(), watched.message());
            if now == last {
                continue;
            }
            let mut lines = String::new();
            if now.0 != last.0
                && let Some(len) = now.0
            {
                lines.push_str(&format!("len {len}\n"));
            }
            if now.1 != last.1 {
                lines.push_str(&format!("pos {}\n", now.1));
            }
            if now.2 != last.2 {
                lines.push_str(&format!("msg {}\n", now.2.replace('\n', " ")));
            }
            if out
                .write_all(lines.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return;
            }
            last = now;
        }
    });
    Progress::from_bar(bar)
}
