//! Running generated Python against unit tests (HumanEval), as safely as a plain
//! subprocess allows, plus the unbiased [`pass_at_k`] estimator.
//!
//! Each program runs in a fresh temporary directory (its working directory, `HOME` and
//! `TMPDIR`) as `python3 -I -B`, with a wall-clock timeout (the whole process group is
//! killed), and:
//! - no network: inside `unshare -n` (or `unshare -rn` without root) when the system
//!   allows it; otherwise a Python audit hook refuses every socket ([`Isolation`] says
//!   which one was used);
//! - a guard prepended to the program (after human-eval's `reliability_guard`) that sets
//!   resource limits (address space, CPU seconds, file size) and installs a
//!   `sys.addaudithook` refusing writes, renames and deletes outside the directory, and
//!   refusing subprocesses, `os.system`, `fork`, `kill` and `ctypes`.
//!
//! This stops accidents of a model's code, not a determined attacker: audit hooks can be
//! bypassed from native code. Evaluate untrusted models inside a container or VM.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::error::{EvalError, Result};

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0: every assertion held.
    Passed,
    /// A non-zero exit; the last line of stderr (e.g. `AssertionError`, `SyntaxError: …`).
    Failed(String),
    /// Killed after the timeout.
    Timeout,
}

impl Outcome {
    /// Whether the program passed.
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// Short text for the items table.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Passed => "passed".into(),
            Outcome::Failed(why) => format!("failed: {why}"),
            Outcome::Timeout => "timed out".into(),
        }
    }
}

/// How the network is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `unshare -n` (a new, empty network namespace; needs root).
    NetNamespace,
    /// `unshare -rn` (user + network namespace, without root).
    UserNetNamespace,
    /// Only the audit hook refuses sockets.
    AuditHookOnly,
}

/// The strongest isolation this machine allows (probed once).
pub fn isolation() -> Isolation {
    static PROBE: OnceLock<Isolation> = OnceLock::new();
    *PROBE.get_or_init(|| {
        let works = |args: &[&str]| {
            Command::new("unshare")
                .args(args)
                .arg("true")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if works(&["-n"]) {
            Isolation::NetNamespace
        } else if works(&["-rn"]) {
            Isolation::UserNetNamespace
        } else {
            Isolation::AuditHookOnly
        }
    })
}

/// Limits of one program.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock seconds.
    pub timeout_s: f64,
    /// Address-space limit in MiB.
    pub memory_mb: u64,
}

const GUARD: &str = r#"import os as _os, sys as _sys, resource as _resource
_sys.dont_write_bytecode = True
_MEM = __MEM__
_CPU = __CPU__
for _lim, _val in ((_resource.RLIMIT_AS, _MEM), (_resource.RLIMIT_DATA, _MEM), (_resource.RLIMIT_CPU, _CPU), (_resource.RLIMIT_FSIZE, 16 * 1024 * 1024)):
    try:
        _resource.setrlimit(_lim, (_val, _val))
    except (ValueError, OSError):
        pass
_ROOT = _os.path.realpath(_os.getcwd())
def _inside(p):
    if isinstance(p, int):
        return True
    try:
        p = _os.fsdecode(p)
    except TypeError:
        return False
    p = _os.path.realpath(p)
    return p == _ROOT or p.startswith(_ROOT + _os.sep)
_WRITE_FLAGS = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_APPEND | _os.O_TRUNC
_PATH_EVENTS = {"os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move", "shutil.chown", "os.listxattr", "os.setxattr", "os.removexattr"}
_DENIED = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "os.startfile", "webbrowser.open", "os.chdir", "os.chroot", "os.setuid"}
def _guard(event, args):
    if event == "open":
        path, mode, flags = (list(args) + [None, None, 0])[:3]
        writing = bool(mode and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
        if writing and not _inside(path):
            raise PermissionError("sandbox: writing outside the work directory is not allowed: %r" % (path,))
    elif event in _PATH_EVENTS:
        for a in args:
            if isinstance(a, (str, bytes, _os.PathLike)) and not _inside(a):
                raise PermissionError("sandbox: %s outside the work directory is not allowed: %r" % (event, a))
    elif event in _DENIED or event.startswith("socket."):
        raise PermissionError("sandbox: %s is not allowed" % event)
_sys.addaudithook(_guard)
del _guard, _lim, _val
"#;

/// The program file: the guard, then `program`.
pub fn guarded(program: &str, limits: &Limits) -> String {
    let guard = GUARD
        .replace("__MEM__", &(limits.memory_mb * 1024 * 1024).to_string())
        .replace("__CPU__", &(limits.timeout_s.ceil() as u64 + 1).to_string());
    format!("{guard}\n{program}\n")
}

/// Run `program` (HumanEval: completion + tests + `check(entry_point)`).
pub fn run_program(program: &str, limits: &Limits) -> Result<Outcome> {
    let dir = tempfile::Builder::new()
        .prefix("slayer-exec-")
        .tempdir()
        .map_err(|e| EvalError::Sandbox(format!("cannot create a temp dir: {e}")))?;
    let result = run_in(dir.path(), program, limits);
    // Best effort: the program may have made files read-only.
    let _ = dir.close();
    result
}

fn run_in(dir: &Path, program: &str, limits: &Limits) -> Result<Outcome> {
    let file = dir.join("program.py");
    std::fs::write(&file, guarded(program, limits)).map_err(|e| EvalError::io(&file, e))?;
    let stderr_path = dir.join(".stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| EvalError::io(&stderr_path, e))?;
    let mut cmd = match isolation() {
        Isolation::NetNamespace => {
            let mut c = Command::new("unshare");
            c.args(["-n", "python3"]);
            c
        }
        Isolation::UserNetNamespace => {
            let mut c = Command::new("unshare");
            c.args(["-rn", "python3"]);
            c
        }
        Isolation::AuditHookOnly => Command::new("python3"),
    };
    cmd.args(["-I", "-B", "program.py"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| EvalError::Sandbox(format!("cannot start python3: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs_f64(limits.timeout_s.max(0.01));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(EvalError::Sandbox(format!("waiting for python3: {e}"))),
        }
    };
    let Some(status) = status else {
        kill_group(child.id());
        let _ = child.kill();
        let _ = child.wait();
        return Ok(Outcome::Timeout);
    };
    // The program's own children, if any slipped through, go with it.
    kill_group(child.id());
    if status.success() {
        return Ok(Outcome::Passed);
    }
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(&stderr_path) {
        let _ = f.read_to_string(&mut text);
    }
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let why = if last.is_empty() {
        status
            .code()
            .map_or("killed by a signal (memory or CPU limit?)".into(), |c| {
                format!("exit status {c}")
            })
    } else {
        last
    };
    Ok(Outcome::Failed(why))
}

/// SIGKILL the process group `pgid` (the group the program leads).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Unbiased pass@k (Chen et al. 2021): `1 - C(n-c, k) / C(n, k)` for `n` samples of
/// which `c` passed, computed as a stable product.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if k == 0 || n == 0 {
        return 0.0;
    }
    if n.saturating_sub(c) < k {
        return 1.0;
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}
