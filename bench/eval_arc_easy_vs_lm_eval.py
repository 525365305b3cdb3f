#!/usr/bin/env python3
"""ARC-Easy (full test set, 2376 items, 0-shot) wall time: slayer's `eval` stage vs
lm-evaluation-harness's HF backend, same model, same threads, same batch size, one run
(issue 7, acceptance 4; goal: slayer >= 2x faster).

slayer: `slayer exec eval --in model=DIR --set tasks=[arc_easy] --set num_fewshot=0
--set batch_size=B` with RAYON_NUM_THREADS=T (whole process: load, tokenise, score,
write Parquet).
lm-eval: `HFLM(pretrained=DIR, device=cpu, dtype=float32, batch_size=B)` with
torch.set_num_threads(T); the same 9504 loglikelihood requests (ARC's "Question: ...\\nAnswer:"
+ " choice") passed to `HFLM.loglikelihood`, timed from model load to scores. (lm-eval's CLI
would add dataset download and prompt rendering on top; these requests are built from the
local file because the HF hub may be unreachable.)

Usage: python3 bench/eval_arc_easy_vs_lm_eval.py --model DIR --data-dir ../shared/data/evals \
    [--slayer target/debug/slayer] [--threads 2] [--batch-size 16] [--limit N]
Prints one JSON line with both wall times and the ratio.
"""
import argparse
import json
import os
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--slayer", default="target/debug/slayer")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--limit", type=int, default=0, help="0 = all 2376 items")
    args = ap.parse_args()
    model = os.path.abspath(args.model)
    data = os.path.join(os.path.abspath(args.data_dir), "arc/arc_easy.jsonl")
    docs = [json.loads(l) for l in open(data) if l.strip()]
    if args.limit:
        docs = docs[: args.limit]

    # slayer
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dev"))
    from eval_lm_eval_parity import run_slayer

    out = tempfile.mkdtemp(prefix="slayer-bench-")
    params = {"tasks": ["arc_easy"], "data_dir": os.path.abspath(args.data_dir), "num_fewshot": 0,
              "batch_size": args.batch_size}
    if args.limit:
        params["limit"] = args.limit
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    t = time.time()
    m_slayer = run_slayer(args.slayer, model, params, out, env=env)["arc_easy"]
    t_slayer = time.time() - t

    # lm-eval HF backend
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    torch.set_num_threads(args.threads)
    t = time.time()
    lm = HFLM(pretrained=model, device="cpu", dtype="float32", batch_size=args.batch_size)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(d["query"] + "\nAnswer:", " " + c), idx=i)
            for i, d in enumerate(docs) for c in d["choices"]]
    scores = lm.loglikelihood(reqs)
    t_lm = time.time() - t
    k, acc = 0, 0
    for d in docs:
        ll = [s[0] for s in scores[k:k + len(d["choices"])]]
        k += len(d["choices"])
        acc += max(range(len(ll)), key=lambda i: (ll[i], -i)) == d["gold"]

    print(json.dumps({
        "items": len(docs), "threads": args.threads, "batch_size": args.batch_size,
        "slayer_s": round(t_slayer, 2), "lm_eval_s": round(t_lm, 2),
        "speedup": round(t_lm / t_slayer, 2),
        "acc_slayer": m_slayer["acc"], "acc_lm_eval": acc / len(docs),
    }))


if __name__ == "__main__":
    main()
