#!/usr/bin/env python3
"""Benchmark: no-op `slayer status` vs `dvc status` on an equivalent 200-stage pipeline
with 100 MB of inputs, and first-time hashing of a 1 GB file vs `b3sum` (single thread).

Usage (from the repo root, after `cargo build`):
    pip install dvc            # the peer
    cargo install b3sum        # the hashing peer
    python3 bench/engine_status.py [--stages 200] [--input-mb 100] [--big-gb 1]

Prints a Markdown table; copy it into docs/benchmarks.md with the date and machine.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLAYER = os.path.join(ROOT, "target", "debug", "slayer")


def timed(cmd, cwd, repeat=5, env=None):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"{cmd} failed: {out.stdout}\n{out.stderr}")
    return statistics.median(times), out.stdout


def make_pipeline(work, stages, input_mb):
    os.makedirs(os.path.join(work, "data"))
    per_file = input_mb * 1024 * 1024 // stages
    block = os.urandom(per_file)
    for i in range(stages):
        with open(os.path.join(work, "data", f"in{i:03}.bin"), "wb") as f:
            f.write(block[:-8] + i.to_bytes(8, "little"))
    with open(os.path.join(work, "slayer.yaml"), "w") as f:
        f.write("name: bench\nstages:\n")
        for i in range(stages):
            f.write(
                f"  s{i:03}:\n    kind: command\n    inputs: {{src: data/in{i:03}.bin}}\n"
                f"    with: {{run: \"head -c 64 $SLAYER_IN_SRC > $SLAYER_OUT/o\", outputs: {{o: o}}}}\n"
            )
    with open(os.path.join(work, "dvc.yaml"), "w") as f:
        f.write("stages:\n")
        for i in range(stages):
            f.write(
                f"  s{i:03}:\n    cmd: head -c 64 data/in{i:03}.bin > out/o{i:03}\n"
                f"    deps: [data/in{i:03}.bin]\n    outs: [out/o{i:03}]\n"
            )
    os.makedirs(os.path.join(work, "out"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", type=int, default=200)
    ap.add_argument("--input-mb", type=int, default=100)
    ap.add_argument("--big-gb", type=float, default=1.0)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        make_pipeline(work, args.stages, args.input_mb)
        subprocess.run(["git", "init", "-q"], cwd=work, check=True)
        subprocess.run([SLAYER, "run", "-q"], cwd=work, check=True)
        slayer_t, out = timed([SLAYER, "status"], work, repeat=10)
        assert all(l.startswith("cached") for l in out.splitlines()), out[:500]
        rows.append(("no-op status, slayer", slayer_t))
        if shutil.which("dvc"):
            subprocess.run(["dvc", "init", "-q"], cwd=work, check=True)
            subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=work, check=True)
            subprocess.run(["dvc", "repro", "-q"], cwd=work, check=True, capture_output=True)
            dvc_t, _ = timed(["dvc", "status"], work, repeat=5)
            rows.append(("no-op status, dvc", dvc_t))
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            chunk = os.urandom(64 * 1024 * 1024)
            for _ in range(int(args.big_gb * 16)):
                f.write(chunk)
        # Page cache warm for both: read once.
        subprocess.run(["cat", big], stdout=subprocess.DEVNULL, check=True)
        with open(os.path.join(work, "hash.yaml"), "w") as f:
            f.write("stages:\n  h:\n    kind: command\n    inputs: {src: big.bin}\n"
                    "    with: {run: \"true\"}\n")
        # First-time hashing: a fresh store each repetition (no stat cache).
        times = []
        for _ in range(3):
            shutil.rmtree(os.path.join(work, ".slayer"), ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run([SLAYER, "status", "hash.yaml"], cwd=work, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        rows.append((f"hash {args.big_gb:g} GB first time, slayer", statistics.median(times)))
        if shutil.which("b3sum"):
            b3, _ = timed(["b3sum", "--num-threads", "1", big], work, repeat=3)
            rows.append((f"hash {args.big_gb:g} GB, b3sum --num-threads 1", b3))
            b3m, _ = timed(["b3sum", big], work, repeat=3)
            rows.append((f"hash {args.big_gb:g} GB, b3sum (all threads)", b3m))
    print(f"| measurement ({args.stages} stages, {args.input_mb} MB inputs) | median seconds |")
    print("|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.4f} |")
    d = dict(rows)
    if "no-op status, dvc" in d:
        print(f"\nslayer status is {d['no-op status, dvc'] / d['no-op status, slayer']:.1f}x faster than dvc status")


if __name__ == "__main__":
    main()
