#!/usr/bin/env python3
"""The report's paired statistics agree with scipy and statsmodels (issue 22, acceptance:
"Paired bootstrap and McNemar results match a reference implementation on fixed items
within 1e-3 (p-values) and exactly for counts").

    python3 dev/check_report_stats.py [SLAYER_BINARY] [--resamples B]

For each fixed case below it writes eval-style `metrics.json` + `items.parquet` files
(pyarrow; the columns the eval stage writes), runs the real report stage on them,

    slayer exec report --in metrics=… --in items=… --set compare_to=b \\
        [--set aggregate=[seed]] --set bootstrap=B --set rows={…} --out DIR

and reads the `comparison` metric it prints (the numbers behind the report's
"Differences from `b`" section, unrounded). Then it checks, against references computed
here from the same items:

  - McNemar: the discordant counts (A right/B wrong, B right/A wrong, over every item
    under every shared seed) exactly; the exact p-value against
    `statsmodels.stats.contingency_tables.mcnemar(table, exact=True)` within 1e-3 (it is
    in fact ~1e-12); the continuity-corrected chi-square and its p against
    `mcnemar(table, exact=False, correction=True)` within 1e-3, except on ties
    (A-only = B-only), where statsmodels computes (0 - 1)^2 / n but slayer, like R's
    `mcnemar.test`, applies no correction (statistic 0, p = 1).
  - Bootstrap: the mean difference (per item, each row's value averaged over its
    seeds, A - B) against the exact rational mean within 1e-12 (f64 summation order);
    the 95% percentile interval against `scipy.stats.bootstrap((a, b), paired=True,
    method='percentile')`. The two sides draw different resamples, so the endpoints can
    only agree within Monte-Carlo error. The check is made where that error is known
    exactly, on the probability scale: slayer's endpoint L for quantile q is the q-th
    quantile of B_s resampled means, so the true bootstrap CDF at L is q +- sqrt(q (1 -
    q) / B_s); reading that CDF off scipy's own B_r resampled means adds sqrt(q (1 - q)
    / B_r). L passes when scipy's empirical CDF just below / at L brackets q within
    4.5 of those standard deviations combined (a false alarm about once in 10^5
    endpoints). This also copes with small n, where the bootstrap distribution is a
    lattice and both sides land on the same lattice points. The absolute difference of
    the endpoints is printed beside it.

Needs numpy, scipy, statsmodels and pyarrow (dev only).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Z = 4.5
LEVEL = 0.95


def binary(rng, n, p_a, p_b, rho=0.5):
    """Correlated right/wrong outcomes of two systems on n items."""
    shared = rng.random(n)
    a = np.where(rng.random(n) < rho, shared, rng.random(n)) < p_a
    b = np.where(rng.random(n) < rho, shared, rng.random(n)) < p_b
    return a.astype(float), b.astype(float)


def cases():
    """name -> (metric, A values per seed, B values per seed); arrays of item values."""
    rng = np.random.default_rng(22)
    out = {}
    a = np.array([1, 1, 0, 1, 0, 1, 1], float)
    b = np.array([0, 1, 0, 0, 1, 0, 0], float)
    out["small n=7"] = ("acc", [a], [b])
    # Ties: 5 items only A gets right, 5 only B, 30 concordant.
    a = np.array([1] * 5 + [0] * 5 + [1] * 20 + [0] * 10, float)
    b = np.array([0] * 5 + [1] * 5 + [1] * 20 + [0] * 10, float)
    out["ties n=40"] = ("acc", [a], [b])
    a = (np.arange(30) % 3 == 0).astype(float)
    out["all equal n=30"] = ("acc", [a], [a.copy()])
    a, b = binary(rng, 120, 0.62, 0.48)
    out["binary n=120"] = ("acc", [a], [b])
    seeds = [binary(rng, 120, 0.55, 0.5) for _ in range(3)]
    out["binary n=120 x 3 seeds"] = ("acc", [s[0] for s in seeds], [s[1] for s in seeds])
    # Fractional per-item values (recall over 7 targets), three seeds each.
    base = rng.integers(0, 8, 360)
    fa = [np.clip(base + rng.integers(-1, 3, 360), 0, 7) / 7 for _ in range(3)]
    fb = [np.clip(base + rng.integers(-2, 2, 360), 0, 7) / 7 for _ in range(3)]
    out["fractional n=360 x 3 seeds"] = ("recall", fa, fb)
    return out


def write_eval(dir_, metric, values):
    """An eval stage's metrics.json and items.parquet for one run."""
    os.makedirs(dir_, exist_ok=True)
    n = len(values)
    with open(os.path.join(dir_, "metrics.json"), "w") as f:
        json.dump({"synthetic": {metric: float(np.mean(values)), "n": n}}, f)
    right = [bool(v >= 1.0) for v in values]
    table = pa.table({
        "task": pa.array(["synthetic"] * n, pa.string()),
        "item_id": pa.array([f"item-{i:04d}" for i in range(n)], pa.string()),
        "correct": pa.array(right, pa.bool_()),
        "correct_norm": pa.array(right, pa.bool_()),
        "score": pa.array([float(v) for v in values], pa.float64()),
        "metrics": pa.array([json.dumps({metric: float(v)}) for v in values], pa.string()),
    })
    pq.write_table(table, os.path.join(dir_, "items.parquet"))


def run_report(slayer, tmp, metric, a_runs, b_runs, resamples):
    args, rows = [], {}
    seeded = len(a_runs) > 1
    for name, runs in [("a", a_runs), ("b", b_runs)]:
        for s, values in enumerate(runs):
            d = os.path.join(tmp, f"{name}-{s}")
            write_eval(d, metric, values)
            label = f"{name},seed={s}" if seeded else name
            for kind, file in [("metrics", "metrics.json"), ("items", "items.parquet")]:
                path = os.path.join(d, file)
                rows[path] = label
                args += ["--in", f"{kind}={path}"]
    args += ["--set", "compare_to=b", "--set", f"bootstrap={resamples}",
             "--set", "rows=" + json.dumps(rows)]
    if seeded:
        args += ["--set", "aggregate=[seed]"]
    out = subprocess.run([slayer, "exec", "report", *args, "--out", os.path.join(tmp, "report")],
                         check=True, capture_output=True, text=True)
    cells = json.loads(out.stdout)["comparison"]["cells"]
    assert len(cells) == 1, cells
    return cells[0]


def endpoint_check(dist, value, q, b_s, b_r):
    """(ok, F(value-), F(value), allowed deviation) on scipy's bootstrap distribution."""
    below = float(np.mean(dist < value - 1e-12))
    at = float(np.mean(dist <= value + 1e-12))
    tol = Z * math.sqrt(q * (1 - q)) * math.sqrt(1 / b_s + 1 / b_r)
    return below <= q + tol and at >= q - tol, below, at, tol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("slayer", nargs="?", default=os.path.join(ROOT, "target/debug/slayer"))
    ap.add_argument("--resamples", type=int, default=200_000)
    opts = ap.parse_args()
    B = opts.resamples
    failures = []
    print(f"{'case':28} {'a_only':>6} {'b_only':>6} {'p_exact slayer':>15} {'statsmodels':>12} "
          f"{'mean':>9} {'lo slayer':>10} {'lo scipy':>10} {'hi slayer':>10} {'hi scipy':>10}")
    for name, (metric, a_runs, b_runs) in cases().items():
        with tempfile.TemporaryDirectory() as tmp:
            cell = run_report(opts.slayer, tmp, metric, a_runs, b_runs, B)

        def check(ok, what):
            if not ok:
                failures.append(f"{name}: {what}")

        n = len(a_runs[0])
        check(cell["items"] == n, f"items {cell['items']} != {n}")
        # McNemar over (item, seed) pairs of the same seed.
        is_binary = all(set(np.unique(r)) <= {0.0, 1.0} for r in a_runs + b_runs)
        m = cell.get("mcnemar")
        check((m is not None) == is_binary, f"mcnemar present: {m is not None}, binary: {is_binary}")
        ref_p = None
        if m is not None:
            a = np.concatenate(a_runs) >= 1
            b = np.concatenate(b_runs) >= 1
            table = [[int(np.sum(a & b)), int(np.sum(a & ~b))],
                     [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
            a_only, b_only = table[0][1], table[1][0]
            check((m["a_only"], m["b_only"]) == (a_only, b_only),
                  f"counts {(m['a_only'], m['b_only'])} != {(a_only, b_only)}")
            ref_p = mcnemar(table, exact=True).pvalue
            check(abs(m["p_exact"] - ref_p) <= 1e-3, f"p_exact {m['p_exact']} vs {ref_p}")
            if a_only == b_only:
                check((m["chi2"], m["p_chi2"]) == (0.0, 1.0), f"tie chi2 {m['chi2']}, {m['p_chi2']}")
            else:
                ref = mcnemar(table, exact=False, correction=True)
                check(abs(m["chi2"] - ref.statistic) <= 1e-9, f"chi2 {m['chi2']} vs {ref.statistic}")
                check(abs(m["p_chi2"] - ref.pvalue) <= 1e-3, f"p_chi2 {m['p_chi2']} vs {ref.pvalue}")
        # Bootstrap of the per-item differences of seed means.
        a_mean = np.mean(a_runs, axis=0)
        b_mean = np.mean(b_runs, axis=0)
        exact = sum((sum(Fraction(float(r[i])) for r in a_runs) / len(a_runs)
                     - sum(Fraction(float(r[i])) for r in b_runs) / len(b_runs)) for i in range(n)) / n
        check(abs(cell["mean"] - float(exact)) <= 1e-12, f"mean {cell['mean']} vs {float(exact)}")
        if np.all(a_mean == b_mean):
            check((cell["lo"], cell["hi"]) == (0.0, 0.0), f"interval {cell['lo']}, {cell['hi']}")
            lo_ref = hi_ref = 0.0
        else:
            res = stats.bootstrap((a_mean, b_mean), lambda x, y, axis: np.mean(x - y, axis=axis),
                                  paired=True, vectorized=True, n_resamples=B, batch=20_000,
                                  confidence_level=LEVEL, method="percentile",
                                  random_state=np.random.default_rng(7))
            dist = res.bootstrap_distribution
            lo_ref, hi_ref = res.confidence_interval.low, res.confidence_interval.high
            for end, q, ref in [("lo", (1 - LEVEL) / 2, lo_ref), ("hi", (1 + LEVEL) / 2, hi_ref)]:
                ok, below, at, tol = endpoint_check(dist, cell[end], q, B, B)
                check(ok, f"{end} {cell[end]} (scipy {ref}): scipy's CDF there is "
                          f"[{below:.5f}, {at:.5f}], wanted {q} +- {tol:.5f}")
        p_s = f"{m['p_exact']:.12f}" if m else "-"
        p_r = f"{ref_p:.10f}" if ref_p is not None else "-"
        print(f"{name:28} {m['a_only'] if m else '-':>6} {m['b_only'] if m else '-':>6} {p_s:>15} "
              f"{p_r:>12} {cell['mean']:>9.5f} {cell['lo']:>10.5f} {lo_ref:>10.5f} "
              f"{cell['hi']:>10.5f} {hi_ref:>10.5f}")
    print(f"\nresamples: {B} each side; endpoint tolerance: scipy's CDF at slayer's endpoint "
          f"within {Z} sd of q")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all cases agree")


if __name__ == "__main__":
    main()
