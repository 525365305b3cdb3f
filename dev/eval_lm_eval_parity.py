#!/usr/bin/env python3
"""Per-item parity of slayer's `eval` stage with lm-evaluation-harness (issue 7, acceptance 1).

For ARC-Easy, ARC-Challenge, a few MMLU subjects (5-shot) and, when a file is given,
HellaSwag, this script
  1. runs `slayer exec eval` on the model directory and reads its items.parquet;
  2. rebuilds the same requests in Python, independently, from lm-eval's task templates
     (ARC "Question: ...\\nAnswer:" + " choice"; MMLU subject header, first 5 dev items,
     lettered choices; HellaSwag's preprocess) and scores them with lm-eval's own HF
     backend (`lm_eval.models.huggingface.HFLM.loglikelihood`, CPU, float32);
  3. compares every choice's log-likelihood (max |diff| must be < 1e-3) and acc/acc_norm.

lm-eval's task loader needs the HF hub datasets, which this machine may not reach; the
requests are therefore built here from the local benchmark files with lm-eval's formats
(the Rust unit tests check the same strings), and lm-eval does the tokenisation
(`_encode_pair`) and the model computation. Any difference in prompt building,
tokenisation, batching or numerics shows up as a log-likelihood mismatch.

Usage (needs `pip install lm-eval pyarrow`, a slayer build, and an HF model directory such as
slayer's import of SmolLM2-135M: `slayer exec model.import --set path=<gguf> --out <dir>` or dev/check_smollm2.py):
  python3 dev/eval_lm_eval_parity.py --model DIR --data-dir ../shared/data/evals \
      --slayer target/debug/slayer [--hellaswag hellaswag_val.jsonl] [--limit 100] \
      [--mmlu abstract_algebra,anatomy,astronomy] [--tasks hellaswag] [--out report.json]
Exit status 0 when every task is within tolerance with identical acc/acc_norm.
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq


def arc_requests(path, limit):
    docs = [json.loads(l) for l in open(path) if l.strip()][:limit]
    return [(d["query"] + "\nAnswer:", d["choices"], d["gold"]) for d in docs]


def mmlu_requests(data_dir, subject, limit, shots=5):
    def rows(split):
        with open(os.path.join(data_dir, "mmlu", split, f"{subject}_{split}.csv"), newline="") as f:
            return list(csv.reader(f))

    def text(r):
        return f"{r[0].strip()}\nA. {r[1]}\nB. {r[2]}\nC. {r[3]}\nD. {r[4]}\nAnswer:"

    desc = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    fewshot = "".join(text(r) + " " + r[5] + "\n\n" for r in rows("dev")[:shots])
    out = []
    for r in rows("test")[:limit]:
        out.append((desc + fewshot + text(r), ["A", "B", "C", "D"], "ABCD".index(r[5].strip())))
    return out


def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


def hellaswag_requests(path, limit):
    out = []
    for l in open(path):
        if not l.strip():
            continue
        d = json.loads(l)
        ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
        q = hellaswag_preprocess(d["activity_label"] + ": " + ctx)
        out.append((q, [hellaswag_preprocess(e) for e in d["endings"]], int(d["label"])))
        if len(out) == limit:
            break
    return out


def lm_eval_scores(lm, reqs):
    from lm_eval.api.instance import Instance

    flat = []
    for i, (ctx, choices, _) in enumerate(reqs):
        for c in choices:
            flat.append(Instance(request_type="loglikelihood", doc={}, arguments=(ctx, " " + c), idx=i))
    t = time.time()
    res = lm.loglikelihood(flat)
    secs = time.time() - t
    out, k = [], 0
    for ctx, choices, _ in reqs:
        out.append([float(r[0]) for r in res[k:k + len(choices)]])
        k += len(choices)
    return out, secs


def acc(lls, reqs):
    a = n = 0
    for ll, (_, choices, gold) in zip(lls, reqs):
        pred = max(range(len(ll)), key=lambda i: (ll[i], -i))
        normed = [x / len(c) for x, c in zip(ll, choices)]
        pred_n = max(range(len(ll)), key=lambda i: (normed[i], -i))
        a += pred == gold
        n += pred_n == gold
    return a / len(reqs), n / len(reqs)


def run_slayer(slayer, model, params, out, data=None, env=None):
    """`slayer exec eval`, or the `eval_exec` test binary standing in for it (pass its path,
    target/debug/deps/eval_exec-*, as --slayer) while the binary does not register `eval`."""
    if os.path.basename(slayer).startswith("eval_exec"):
        spec = {"model": model, "data": data, "out": out, "params": params}
        env = dict(env or os.environ, SLAYER_EVAL_EXEC=json.dumps(spec))
        res = subprocess.run([slayer, "--ignored", "--exact", "eval_exec_from_env", "--nocapture"],
                             check=True, env=env, capture_output=True, text=True)
        line = next(l for l in res.stdout.splitlines() if l.startswith("SLAYER_METRICS "))
        return json.loads(line[len("SLAYER_METRICS "):])
    cmd = [slayer, "exec", "eval", "--in", f"model={model}", "--out", out]
    if data:
        cmd += ["--in", f"data={data}"]
    for k, v in params.items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    res = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads(res.stdout)


def slayer_scores(args, task, data_dir, shots, data=None):
    out = tempfile.mkdtemp(prefix=f"slayer-eval-{task}-")
    params = {"tasks": [task], "limit": args.limit, "num_fewshot": shots, "batch_size": args.batch_size}
    if not data:
        params["data_dir"] = data_dir
    t = time.time()
    run_slayer(args.slayer, args.model, params, out, data)
    secs = time.time() - t
    table = pq.read_table(os.path.join(out, "items.parquet")).to_pylist()
    table.sort(key=lambda r: r["item"])
    return [r["logliks"] for r in table], secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--slayer", default="target/debug/slayer")
    ap.add_argument("--hellaswag")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mmlu", default="abstract_algebra,anatomy,astronomy")
    ap.add_argument("--tasks", help="comma-separated subset of the task names below (default: all)")
    ap.add_argument("--out")
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)
    data_dir = os.path.abspath(args.data_dir)

    import torch
    from lm_eval.models.huggingface import HFLM

    torch.set_num_threads(os.cpu_count())
    lm = HFLM(pretrained=args.model, device="cpu", dtype="float32", batch_size=args.batch_size)

    tasks = [
        ("arc_easy", 0, arc_requests(os.path.join(data_dir, "arc/arc_easy.jsonl"), args.limit), None),
        ("arc_challenge", 0, arc_requests(os.path.join(data_dir, "arc/arc_challenge.jsonl"), args.limit), None),
    ]
    for s in filter(None, args.mmlu.split(",")):
        tasks.append((f"mmlu_{s}", 5, mmlu_requests(data_dir, s, args.limit), None))
    if args.hellaswag:
        tasks.append(("hellaswag", 0, hellaswag_requests(args.hellaswag, args.limit), os.path.abspath(args.hellaswag)))
    if args.tasks:
        keep = set(args.tasks.split(","))
        tasks = [t for t in tasks if t[0] in keep]

    report, ok = {}, True
    print(f"{'task':28} {'n':>4} {'max|dLL|':>10} {'acc lm-eval/slayer':>20} {'acc_norm lm-eval/slayer':>24}")
    for name, shots, reqs, data in tasks:
        ref, t_ref = lm_eval_scores(lm, reqs)
        ours, t_ours = slayer_scores(args, name, data_dir, shots, data)
        if len(ours) != len(ref):
            print(f"{name}: slayer scored {len(ours)} items, lm-eval {len(ref)}")
            ok = False
            continue
        diff = max(abs(a - b) for r, o in zip(ref, ours) for a, b in zip(r, o))
        a_ref, an_ref = acc(ref, reqs)
        a_ours, an_ours = acc(ours, reqs)
        good = diff < 1e-3 and a_ref == a_ours and an_ref == an_ours
        ok &= good
        report[name] = {"n": len(reqs), "max_abs_loglik_diff": diff, "acc": [a_ref, a_ours],
                        "acc_norm": [an_ref, an_ours], "lm_eval_seconds": t_ref,
                        "slayer_seconds_incl_load": t_ours, "ok": good}
        print(f"{name:28} {len(reqs):>4} {diff:>10.2e} {a_ref:>9.3f}/{a_ours:<9.3f} {an_ref:>11.3f}/{an_ours:<11.3f} {'OK' if good else 'MISMATCH'}")
    if args.out:
        json.dump(report, open(args.out, "w"), indent=2)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
