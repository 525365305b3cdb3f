//! Running generated Python against unit tests (HumanEval) inside a kernel-enforced
//! sandbox, plus the unbiased [`pass_at_k`] estimator.
//!
//! Each program runs under bubblewrap (`bwrap`, the sandbox Flatpak uses) as
//! `python3 -I -B program.py`, in fresh mount, PID, network, IPC and UTS namespaces:
//! - the file system is a read-only view of `/usr`, `/lib*`, `/bin`, `/sbin` and the
//!   interpreter's own prefix, a private `/proc` and `/dev`, and a 64 MiB tmpfs at
//!   `/sandbox` (working directory, `HOME` and `TMPDIR`), the only writable place; `/etc`,
//!   `/home`, `/root`, `/tmp` and the workspace do not exist in it;
//! - no network (an empty network namespace);
//! - every process the program starts lives in its PID namespace and dies with it, when
//!   it exits or is killed at the timeout (`--die-with-parent`, also when slayer dies);
//! - resource limits, set before the program's first line and not raisable by it: address
//!   space and data (`memory_mb`), CPU seconds (timeout + 1), file size (16 MiB),
//!   processes/threads (64), open files (256);
//! - `no_new_privs`, no capabilities, a cleared environment and a new session.
//!
//! Run by an ordinary user, bwrap adds a user namespace (`--disable-userns` forbids
//! nested ones) and the program keeps that user's uid. Run as root (containers), bwrap
//! creates the namespaces directly and `setpriv` drops the program to uid/gid 65534
//! with no capabilities before the interpreter starts: root is exempt from
//! `RLIMIT_NPROC`, and a root-owned file must not become readable through a bind.
//!
//! When the sandbox cannot be set up (no `bwrap`, user namespaces refused, no
//! interpreter), [`run_program`] fails with [`EvalError::Sandbox`] saying why; programs
//! never run without it. See docs/reliability.md.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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

/// Limits of one program.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock seconds.
    pub timeout_s: f64,
    /// Address-space limit in MiB.
    pub memory_mb: u64,
}

/// Who the sandboxed program runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// slayer's own (non-root) uid, inside a new user namespace.
    UserNamespace,
    /// slayer runs as root: uid/gid [`NOBODY`] with no capabilities, set by `setpriv`.
    Nobody,
}

/// The uid and gid a program runs as when slayer is root.
pub const NOBODY: u32 = 65534;
/// The sandbox's writable tmpfs, its working directory.
const WORK: &str = "/sandbox";
const TMPFS_BYTES: u64 = 64 * 1024 * 1024;
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
const MAX_PROCESSES: u64 = 64;
const MAX_OPEN_FILES: u64 = 256;
/// System directories bound read-only (those that exist).
const SYSTEM_DIRS: [&str; 6] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"];
/// How bwrap and setpriv start their error messages.
const SETUP_ERROR_PREFIXES: [&str; 2] = ["bwrap: ", "setpriv: "];

/// The sandbox this machine runs programs in, found and tried once ([`sandbox`]).
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The bubblewrap executable.
    pub bwrap: PathBuf,
    /// `setpriv`, under one of the bound system directories, when running as root.
    pub setpriv: Option<PathBuf>,
    /// The interpreter (`sys.executable` of the `python3` on `PATH`).
    pub python: PathBuf,
    /// Directories bound read-only at the same path.
    pub binds: Vec<PathBuf>,
    /// Who the program runs as.
    pub identity: Identity,
}

/// The sandbox, or why it cannot be set up on this machine (probed once: a trivial
/// program must run inside it).
pub fn sandbox() -> Result<&'static Sandbox> {
    static PROBE: OnceLock<std::result::Result<Sandbox, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let sb = Sandbox::find()?;
            sb.check()?;
            Ok(sb)
        })
        .as_ref()
        .map_err(|e| EvalError::Sandbox(e.clone()))
}

/// The first executable called `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Sandbox {
    fn find() -> std::result::Result<Sandbox, String> {
        let bwrap = on_path("bwrap").ok_or(
            "bubblewrap (`bwrap`) is not on PATH; HumanEval programs run only inside it \
             (Debian/Ubuntu: apt-get install bubblewrap)",
        )?;
        let out = Command::new("python3")
            .args([
                "-I",
                "-c",
                "import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot start python3 to locate the interpreter: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let [python, prefix, base_prefix] = lines[..] else {
            return Err(format!(
                "python3 did not report its executable and prefixes: {}{}",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        };
        let mut binds: Vec<PathBuf> = SYSTEM_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|d| d.exists())
            .collect();
        for p in [prefix, base_prefix] {
            let p = PathBuf::from(p);
            if !binds.iter().any(|b| p.starts_with(b)) {
                binds.push(p);
            }
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let setpriv = if root {
            let found = ["/usr/bin/setpriv", "/bin/setpriv"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file());
            Some(found.ok_or(
                "running as root, the sandbox drops programs to uid 65534 with `setpriv` \
                 (util-linux), which is not in /usr/bin or /bin",
            )?)
        } else {
            None
        };
        Ok(Sandbox {
            bwrap,
            setpriv,
            python: PathBuf::from(python),
            binds,
            identity: if root {
                Identity::Nobody
            } else {
                Identity::UserNamespace
            },
        })
    }

    /// Run a trivial program: the namespaces, binds and privilege drop all work.
    fn check(&self) -> std::result::Result<(), String> {
        let dir = tempfile::Builder::new()
            .prefix("slayer-exec-probe-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let limits = Limits {
            timeout_s: 30.0,
            memory_mb: 1024,
        };
        match self.run_in(dir.path(), "pass", &limits) {
            Ok(Outcome::Passed) => Ok(()),
            Ok(other) => Err(format!(
                "a trivial program failed inside the sandbox ({}) with {} ({:?} as {:?})",
                other.describe(),
                self.bwrap.display(),
                self.python,
                self.identity
            )),
            Err(EvalError::Sandbox(why)) => Err(why),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The bwrap command running `/sandbox/program.py` (bound read-only from `program`).
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(&self.bwrap);
        if self.identity == Identity::UserNamespace {
            c.args(["--unshare-user", "--disable-userns"]);
        }
        c.args([
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
        ]);
        for d in &self.binds {
            c.arg("--ro-bind").arg(d).arg(d);
        }
        c.args([
            "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size",
        ])
        .arg(TMPFS_BYTES.to_string())
        .args(["--tmpfs", WORK, "--ro-bind"])
        .arg(program)
        .arg(format!("{WORK}/program.py"))
        .args(["--chdir", WORK, "--"]);
        if let Some(setpriv) = &self.setpriv {
            let id = NOBODY.to_string();
            c.arg(setpriv)
                .arg(format!("--reuid={id}"))
                .arg(format!("--regid={id}"))
                .args([
                    "--clear-groups",
                    "--inh-caps=-all",
                    "--bounding-set=-all",
                    "--",
                ]);
        }
        c.arg(&self.python).args(["-I", "-B", "program.py"]);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", WORK)
            .env("TMPDIR", WORK)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        c
    }

    /// Run `program` with `dir` (on the host) holding its file and stderr.
    fn run_in(&self, dir: &Path, program: &str, limits: &Limits) -> Result<Outcome> {
        let file = dir.join("program.py");
        std::fs::write(&file, guarded(program, limits)).map_err(|e| EvalError::io(&file, e))?;
        // Readable by the sandbox's uid 65534 (the directory itself stays private).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| EvalError::io(&file, e))?;
        }
        let stderr_path = dir.join("stderr");
        let stderr =
            std::fs::File::create(&stderr_path).map_err(|e| EvalError::io(&stderr_path, e))?;
        let mut cmd = self.command(&file);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = cmd.spawn().map_err(|e| {
            EvalError::Sandbox(format!("cannot start {}: {e}", self.bwrap.display()))
        })?;
        let deadline = Instant::now() + Duration::from_secs_f64(limits.timeout_s.max(0.01));
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(EvalError::Sandbox(format!("waiting for bwrap: {e}"))),
            }
        };
        let Some(status) = status else {
            // bwrap's PID 1 dies with it (--die-with-parent), and every process of the
            // namespace with PID 1.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::Timeout);
        };
        if status.success() {
            return Ok(Outcome::Passed);
        }
        let mut text = String::new();
        if let Ok(f) = std::fs::File::open(&stderr_path) {
            // The program may have written up to RLIMIT_FSIZE; the head and tail suffice.
            let _ = f.take(MAX_FILE_BYTES).read_to_string(&mut text);
        }
        let first = text.lines().next().unwrap_or("");
        if status.code() == Some(1) && SETUP_ERROR_PREFIXES.iter().any(|p| first.starts_with(p)) {
            return Err(EvalError::Sandbox(format!(
                "could not set up the sandbox: {}{}",
                first.trim(),
                match self.identity {
                    Identity::UserNamespace => {
                        " (bwrap needs unprivileged user namespaces: sysctl \
                         user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1; \
                         or a container started with --security-opt seccomp=unconfined)"
                    }
                    Identity::Nobody => "",
                }
            )));
        }
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string();
        Ok(Outcome::Failed(if last.is_empty() {
            describe_exit(status)
        } else {
            last
        }))
    }
}

/// An exit without a message: bwrap reports a signal `N` as status `128 + N`.
fn describe_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(c) if c > 128 => format!("killed by signal {} (memory or CPU limit?)", c - 128),
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

const GUARD: &str = r#"import sys as _sys, resource as _resource
_sys.dont_write_bytecode = True
for _lim, _val in ((_resource.RLIMIT_AS, __MEM__), (_resource.RLIMIT_DATA, __MEM__), (_resource.RLIMIT_CPU, __CPU__), (_resource.RLIMIT_FSIZE, __FSIZE__), (_resource.RLIMIT_NPROC, __NPROC__), (_resource.RLIMIT_NOFILE, __NOFILE__)):
    _hard = _resource.getrlimit(_lim)[1]
    if _hard != _resource.RLIM_INFINITY:
        _val = min(_val, _hard)
    _resource.setrlimit(_lim, (_val, _val))
del _lim, _val, _hard
"#;

/// The program file: the resource limits, then `program`.
pub fn guarded(program: &str, limits: &Limits) -> String {
    let guard = GUARD
        .replace("__MEM__", &(limits.memory_mb * 1024 * 1024).to_string())
        .replace("__CPU__", &(limits.timeout_s.ceil() as u64 + 1).to_string())
        .replace("__FSIZE__", &MAX_FILE_BYTES.to_string())
        .replace("__NPROC__", &MAX_PROCESSES.to_string())
        .replace("__NOFILE__", &MAX_OPEN_FILES.to_string());
    format!("{guard}\n{program}\n")
}

/// Run `program` (HumanEval: completion + tests + `check(entry_point)`) in the sandbox.
pub fn run_program(program: &str, limits: &Limits) -> Result<Outcome> {
    let sb = sandbox()?;
    let dir = tempfile::Builder::new()
        .prefix("slayer-exec-")
        .tempdir()
        .map_err(|e| EvalError::Sandbox(format!("cannot create a temp dir: {e}")))?;
    let result = sb.run_in(dir.path(), program, limits);
    let _ = dir.close();
    result
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
