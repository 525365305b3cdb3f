//! HumanEval execution on hand-made completions (correct, wrong, syntax error, timeout,
//! infinite loop, writing outside the temp dir, network) and the unbiased pass@k.

use slayer_stages::eval::execute::{Limits, Outcome, isolation, pass_at_k, run_program};
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
        Outcome::Failed(why) => assert!(why.contains("sandbox"), "{why}"),
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
    // Writing inside its own directory is fine.
    let inside = "\n    open('scratch.txt', 'w').write('ok')\n    return a + b\n";
    assert_eq!(run(inside, 10.0), Outcome::Passed);
}

#[test]
fn eval_humaneval_no_network_no_subprocess() {
    let net = "\n    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return a + b\n";
    assert!(!run(net, 10.0).passed(), "isolation: {:?}", isolation());
    let sub = "\n    import subprocess\n    subprocess.run(['true'])\n    return a + b\n";
    match run(sub, 10.0) {
        Outcome::Failed(why) => assert!(why.contains("sandbox"), "{why}"),
        other => panic!("{other:?}"),
    }
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
