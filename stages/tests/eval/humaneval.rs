//! HumanEval execution on hand-made completions (correct, wrong, syntax error, timeout,
//! infinite loop, memory, and escapes from the sandbox: writing or reading outside it,
//! shell commands, detached children, fork bombs, network) and the unbiased pass@k.
//! They need bubblewrap (`apt-get install bubblewrap`), as HumanEval itself does.

use slayer_stages::eval::execute::{Limits, Outcome, pass_at_k, run_program, sandbox};
use slayer_stages::eval::run::humaneval_program;

const PROMPT: &str = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"";
const TEST: &str =
    "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n";

fn limits(timeout_s: f64) -> Limits {
    Limits {
        timeout_s,
        memory_mb: 1024,
    }
}

fn run(completion: &str, timeout_s: f64) -> Outcome {
    run_program(
        &humaneval_program(PROMPT, completion, TEST, "add"),
        &limits(timeout_s),
    )
    .unwrap()
}

#[test]
fn eval_humaneval_correct_passes() {
    assert_eq!(run("\n    return a + b\n", 10.0), Outcome::Passed);
}

#[test]
fn eval_humaneval_wrong_fails_with_assertion() {
    match run("\n    return a - b\n", 10.0) {
        Outcome::Failed(why) => assert!(why.contains("AssertionError"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_humaneval_syntax_error_fails() {
    match run("\n    return a +* b\n", 10.0) {
        Outcome::Failed(why) => assert!(why.contains("SyntaxError"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_humaneval_timeout_and_infinite_loop_are_killed() {
    let t = std::time::Instant::now();
    assert_eq!(
        run("\n    import time\n    time.sleep(30)\n", 1.0),
        Outcome::Timeout
    );
    assert_eq!(
        run("\n    while True:\n        pass\n", 1.0),
        Outcome::Timeout
    );
    assert!(t.elapsed().as_secs_f64() < 10.0, "{:?}", t.elapsed());
}

#[test]
fn eval_humaneval_cannot_write_outside_its_dir() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pwned.txt");
    let completion = format!(
        "\n    open({:?}, 'w').write('x')\n    return a + b\n",
        target.to_str().unwrap()
    );
    match run(&completion, 10.0) {
        Outcome::Failed(why) => assert!(why.contains("FileNotFoundError"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());
    // os-level calls too.
    let completion = format!(
        "\n    import os\n    os.mkdir({:?})\n    return a + b\n",
        outside.path().join("d").to_str().unwrap()
    );
    assert!(!run(&completion, 10.0).passed());
    assert!(!outside.path().join("d").exists());
    // Writing inside its own directory (and TMPDIR, the same tmpfs) is fine; the system
    // directories are read-only.
    let inside = "\n    import tempfile\n    open('scratch.txt', 'w').write('ok')\n    tempfile.TemporaryFile().write(b'ok')\n    return a + b\n";
    assert_eq!(run(inside, 10.0), Outcome::Passed);
    match run("\n    open('/usr/pwned', 'w')\n", 10.0) {
        Outcome::Failed(why) => assert!(why.contains("Read-only file system"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_humaneval_no_network() {
    let net = "\n    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return a + b\n";
    assert!(
        !run(net, 10.0).passed(),
        "sandbox: {:?}",
        sandbox().unwrap()
    );
}

#[test]
fn eval_humaneval_memory_limit() {
    let hog = "\n    x = bytearray(4 * 1024 * 1024 * 1024)\n    return a + b\n";
    match run(hog, 10.0) {
        Outcome::Failed(why) => assert!(
            why.contains("MemoryError") || why.contains("signal"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
}

/// 1 - C(n-c, k) / C(n, k), exactly.
fn exact(n: u64, c: u64, k: u64) -> f64 {
    fn choose(n: u64, k: u64) -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    }
    1.0 - choose(n - c, k) / choose(n, k)
}

#[test]
fn eval_pass_at_k_matches_unbiased_estimator() {
    assert_eq!(pass_at_k(1, 1, 1), 1.0);
    assert_eq!(pass_at_k(1, 0, 1), 0.0);
    assert!((pass_at_k(5, 2, 1) - 0.4).abs() < 1e-12);
    assert!((pass_at_k(10, 3, 5) - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
    assert_eq!(pass_at_k(10, 8, 5), 1.0); // n - c < k
    for (n, c, k) in [
        (20, 0, 1),
        (20, 7, 10),
        (200, 13, 1),
        (200, 13, 100),
        (50, 49, 2),
    ] {
        let got = pass_at_k(n as usize, c as usize, k as usize);
        assert!((got - exact(n, c, k)).abs() < 1e-9, "{n} {c} {k}: {got}");
    }
}

// Escapes of the old in-interpreter guard (issue 18). Each must fail: the kernel sandbox,
// not the Python the completion controls, has to stop it.

/// Python that disarms an in-process guard: clears its deny list and makes every path
/// "inside". A no-op where no such guard exists.
const DISARM: &str = "\n    g = __import__('sys').modules['__main__'].__dict__\n    g.get('_DENIED', set()).clear()\n    g['_inside'] = lambda p: True\n    g['_ROOT'] = ''";

#[test]
fn eval_humaneval_disarmed_guard_cannot_write_outside() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pwned.txt");
    let t = target.to_str().unwrap();
    let completion = format!("{DISARM}\n    open({t:?}, 'w').write('x')\n    return a + b\n");
    assert!(!run(&completion, 10.0).passed());
    assert!(!target.exists(), "a disarmed guard wrote {t}");
}

#[test]
fn eval_humaneval_dir_fd_open_cannot_write_outside() {
    let outside = tempfile::tempdir().unwrap();
    let d = outside.path().to_str().unwrap();
    let completion = format!(
        "\n    import os\n    fd = os.open({d:?}, os.O_RDONLY)\n    os.close(os.open('pwned.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n    return a + b\n"
    );
    assert!(!run(&completion, 10.0).passed());
    assert!(!outside.path().join("pwned.txt").exists());
}

#[test]
fn eval_humaneval_shell_commands_stay_inside() {
    let outside = tempfile::tempdir().unwrap();
    let t = outside.path().join("pwned.txt");
    let t = t.to_str().unwrap();
    for call in [
        format!("os.system('echo x > {t}')"),
        format!("__import__('subprocess').run(['sh', '-c', 'echo x > {t}'])"),
    ] {
        let completion = format!("{DISARM}\n    import os\n    {call}\n    return a + b\n");
        let _ = run(&completion, 10.0);
        assert!(!outside.path().join("pwned.txt").exists(), "{call}");
    }
}

/// A file only the host can see must not reach the program (its text would land in the
/// failure message, hence in `items.parquet`).
#[test]
fn eval_humaneval_cannot_read_host_files() {
    let home = tempfile::tempdir().unwrap();
    let secret = home.path().join("id_ed25519");
    std::fs::write(&secret, "SECRET-KEY-7f3a9c").unwrap();
    let mut paths = vec![secret.to_str().unwrap().to_string()];
    let shadow = std::path::Path::new("/etc/shadow");
    if std::fs::read(shadow).is_ok() {
        paths.push("/etc/shadow".into());
    }
    for p in paths {
        let completion = format!("\n    raise SystemExit('LEAK<' + open({p:?}).read() + '>')\n");
        match run(&completion, 10.0) {
            Outcome::Failed(why) => assert!(!why.contains("LEAK<"), "{p} was read: {why}"),
            other => panic!("{p}: {other:?}"),
        }
    }
}

/// The pids whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            pids.push(pid);
        }
    }
    pids
}

/// A child that leaves the process group (`setsid`) and keeps writing: it must die with
/// the program, whether the program returns or is killed at the timeout.
#[test]
fn eval_humaneval_detached_child_dies_with_the_program() {
    for (parent, timeout_s) in [("time.sleep(0.5)", 10.0), ("time.sleep(60)", 1.0)] {
        let outside = tempfile::tempdir().unwrap();
        let log = outside.path().join("still-running.log");
        let l = log.to_str().unwrap();
        let completion = format!(
            "{DISARM}\n    import os, time\n    if os.fork() == 0:\n        os.setsid()\n        os.execv('/bin/sh', ['sh', '-c', 'while :; do echo x >> {l}; sleep 0.05; done'])\n    {parent}\n    return a + b\n"
        );
        let outcome = run(&completion, timeout_s);
        // Let the kernel finish tearing the sandbox down.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut left = processes_with(l);
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            left = processes_with(l);
        }
        for pid in &left {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        assert!(
            left.is_empty(),
            "{parent} ({outcome:?}): the detached child outlived the program: {left:?}"
        );
        let size = || std::fs::metadata(&log).map_or(0, |m| m.len());
        let before = size();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(size(), before, "{l} is still growing");
    }
}

#[test]
fn eval_humaneval_fork_bomb_is_bounded() {
    // Forks at most 300 children (each sleeps, then exits): enough to see the limit, not
    // enough to hurt a machine without one.
    let completion = format!(
        "{DISARM}\n    import os, time\n    n = 0\n    try:\n        while n < 300:\n            if os.fork() == 0:\n                time.sleep(3)\n                os._exit(0)\n            n += 1\n    except OSError:\n        pass\n    raise SystemExit('forked %d' % n)\n"
    );
    match run(&completion, 20.0) {
        Outcome::Failed(why) => {
            let n: usize = why
                .strip_prefix("forked ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{why}"));
            assert!(n < 300, "forked {n} processes: no process limit");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_humaneval_disarmed_guard_has_no_network() {
    let completion = format!(
        "{DISARM}\n    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return a + b\n"
    );
    assert!(!run(&completion, 10.0).passed());
}
