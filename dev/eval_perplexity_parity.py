#!/usr/bin/env python3
"""Parity of slayer's perplexity tasks (`eval`, `type: perplexity`) with lm-evaluation-harness's
`loglikelihood_rolling` (issue 7, task type (c)).

Documents: dev/data/ppl_text.txt as one long document plus the first N-1 GSM8K train records
("question\\nanswer") from the benchmark folder, written to a JSONL file with a `text` field.
The script
  1. runs `slayer exec eval --set tasks=["perplexity"]` on that file and reads items.parquet
     (one log-likelihood per document) and the printed metrics;
  2. scores the same strings with lm-eval's HF backend (`HFLM.loglikelihood_rolling`, CPU,
     float32, same max_length, so long documents are cut into the same rolling windows) and
     aggregates them with lm-eval's own functions (`PerplexityTask.count_words/count_bytes`,
     `weighted_perplexity`, `bits_per_byte`);
  3. compares every document's log-likelihood and the corpus metrics.

Usage (needs `pip install lm-eval pyarrow`, a slayer build and an HF model directory):
  python3 dev/eval_perplexity_parity.py --model /tmp/smolhf --data-dir ../shared/data/evals \\
      --slayer target/debug/slayer [--docs 100] [--max-length 256] [--batch-size 16]
Exit status 0 when every document's |dLL| / tokens < 1e-4 and every metric agrees within
1e-4 relative.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq


def documents(data_dir, n):
    here = os.path.dirname(os.path.abspath(__file__))
    docs = [open(os.path.join(here, "data", "ppl_text.txt")).read()]
    with open(os.path.join(data_dir, "gsm8k", "train.jsonl")) as f:
        for line in f:
            if len(docs) >= n:
                break
            d = json.loads(line)
            docs.append(d["question"] + "\n" + d["answer"])
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--slayer", default="target/debug/slayer")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    model = os.path.abspath(args.model)
    docs = documents(os.path.abspath(args.data_dir), args.docs)
    work = tempfile.mkdtemp(prefix="slayer-ppl-")
    data = os.path.join(work, "docs.jsonl")
    with open(data, "w") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")

    out = os.path.join(work, "out")
    cmd = [args.slayer, "exec", "eval", "--in", f"model={model}", "--in", f"data={data}",
           "--set", 'tasks=["perplexity"]', "--set", f"max_length={args.max_length}",
           "--set", f"batch_size={args.batch_size}", "--out", out]
    t = time.time()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    t_slayer = time.time() - t
    ours_metrics = json.loads(res.stdout)["perplexity"]
    rows = sorted(pq.read_table(os.path.join(out, "items.parquet")).to_pylist(), key=lambda r: r["item"])
    ours = [r["logliks"][0] for r in rows]
    tokens = [r["n_tokens"] for r in rows]

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
    from lm_eval.api.task import PerplexityTask
    from lm_eval.models.huggingface import HFLM

    torch.set_num_threads(os.cpu_count())
    lm = HFLM(pretrained=model, device="cpu", dtype="float32", batch_size=args.batch_size,
              max_length=args.max_length)
    reqs = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(d,), idx=i)
            for i, d in enumerate(docs)]
    t = time.time()
    ref = [float(x) for x in lm.loglikelihood_rolling(reqs)]
    t_ref = time.time() - t
    words = [PerplexityTask.count_words(d) for d in docs]
    nbytes = [PerplexityTask.count_bytes(d) for d in docs]
    ref_metrics = {
        "word_perplexity": weighted_perplexity(list(zip(ref, words))),
        "byte_perplexity": weighted_perplexity(list(zip(ref, nbytes))),
        "bits_per_byte": bits_per_byte(list(zip(ref, nbytes))),
        "token_perplexity": math.exp(-sum(ref) / sum(tokens)),
    }

    ok = len(ours) == len(ref)
    per_tok = max(abs(a - b) / max(n, 1) for a, b, n in zip(ours, ref, tokens))
    worst = max(abs(a - b) for a, b in zip(ours, ref))
    ok &= per_tok < 1e-4
    windows = sum(max(1, math.ceil(n / args.max_length)) for n in tokens)
    print(f"{len(docs)} documents, {sum(tokens)} tokens, {windows} windows of <= {args.max_length}")
    print(f"max |dLL| per document {worst:.3e}; max |dLL| / tokens {per_tok:.3e}")
    print(f"{'metric':18} {'lm-eval':>14} {'slayer':>14} {'rel diff':>10}")
    for k, v in ref_metrics.items():
        mine = ours_metrics[k]
        rel = abs(mine - v) / abs(v)
        ok &= rel < 1e-4
        print(f"{k:18} {v:14.6f} {mine:14.6f} {rel:10.2e}")
    print(f"wall: slayer {t_slayer:.1f} s (incl. model load), lm-eval {t_ref:.1f} s (scoring only)")
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
