#!/usr/bin/env python3
"""Reference for the `importance` stage (issue 5, acceptance 4 and 5): the same numbers
computed with transformers, the naive way (one full forward pass per sweep item), on the
same tokens.

Usage:
  python3 dev/importance_reference.py MODEL_DIR TEXT_OR_PARQUET [--max-tokens 1024]
      [--seq-len 1024] [--no-special-tokens] [--rust OUT/importance.json]
      [--device cpu|cuda] [--out reference.json] [--skip-sweeps]

MODEL_DIR is an HF directory (for a GGUF, import it first with
`slayer exec model.import --set path=X.gguf --out DIR`, so both sides read the very same
f32 weights). Tokens: a text file is encoded with `tokenizers` from MODEL_DIR's
tokenizer.json exactly as slayer does (same library, `add_special_tokens` as given),
truncated to --max-tokens and cut into windows of --seq-len (windows under 2 tokens
dropped); Parquet shards are read row by row from `input_ids` as slayer does.

Definitions (method.md section 1):
  * angular distance of block i per token: arccos(cos(x_i, x_{i+1})) / pi on the raw
    residual stream (the output of each decoder layer, captured with hooks; NOT
    transformers' last hidden state, which is after the final norm), in float64;
    `angular_mean` averages over all tokens, `angular_last` over each window's last token;
  * removal: the model without layer i; insertion: a copy of layer i (copy) or the
    element-wise mean of layers i and i+1 (average) inserted after layer i, not zeroed;
  * perplexity: exp(total NLL / predicted tokens) over all windows.

With --rust, compares with slayer's importance.json: AD within 1e-3 absolute and
perplexities within 1% relative (exit status 1 otherwise). Prints the wall time of each
part; that naive total is the baseline of docs/benchmarks.md.
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def windows_from(path, model_dir, max_tokens, seq_len, add_special):
    def cut(ids, out):
        kept = 0
        for s in range(0, len(ids), max(seq_len, 2)):
            w = ids[s:s + seq_len]
            if len(w) >= 2:
                out.append(w)
                kept += len(w)
        return kept

    out, taken = [], 0
    files = []
    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            files += [os.path.join(root, n) for n in names
                      if n.endswith(".parquet") and not n.startswith(".")]
        files.sort()
    elif path.endswith(".parquet"):
        files = [path]
    if not files:
        tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        ids = tok.encode(open(path, encoding="utf-8").read(), add_special_tokens=add_special).ids
        cut(ids[:max_tokens], out)
        return out
    import pyarrow.parquet as pq
    for f in files:
        for row in pq.read_table(f, columns=["input_ids"]).column("input_ids").to_pylist():
            if taken >= max_tokens:
                return out
            taken += cut(row[:max_tokens - taken], out)
    return out


class Runner:
    def __init__(self, model, device):
        self.model = model
        self.layers = list(model.model.layers)
        self.device = device

    def set_layers(self, layers):
        self.model.model.layers = torch.nn.ModuleList(layers)
        # transformers iterates `layers[: config.num_hidden_layers]`.
        self.model.config.num_hidden_layers = len(layers)

    @torch.no_grad()
    def nll(self, ids):
        x = torch.tensor([ids], device=self.device)
        logits = self.model(input_ids=x, use_cache=False).logits[0, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(1, x[0, 1:, None])[:, 0]
        return -picked.double().sum().item()

    @torch.no_grad()
    def residual_stream(self, ids):
        """x_0 .. x_L before the final norm, float64 on the CPU."""
        states = []

        def pre(_, args, kwargs):
            if not states:
                h = kwargs.get("hidden_states", args[0] if args else None)
                states.append(h[0].detach().double().cpu())

        def post(_, args, out):
            h = out[0] if isinstance(out, tuple) else out
            states.append(h[0].detach().double().cpu())

        handles = [self.layers[0].register_forward_pre_hook(pre, with_kwargs=True)]
        handles += [l.register_forward_hook(post) for l in self.layers]
        try:
            nll = self.nll(ids)
        finally:
            for h in handles:
                h.remove()
        return states, nll


def angular(a, b):
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.arccos(cos.clamp(-1.0, 1.0)) / math.pi


def averaged(a, b):
    layer = copy.deepcopy(a)
    with torch.no_grad():
        for (name, p), q in zip(layer.named_parameters(), b.parameters()):
            p.copy_((p + q) / 2)
    return layer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--no-special-tokens", action="store_true")
    ap.add_argument("--rust", help="slayer's importance.json to compare with")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="write the reference numbers here (JSON)")
    ap.add_argument("--skip-sweeps", action="store_true", help="angular distance and base only")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())

    windows = windows_from(args.text, args.model, args.max_tokens, args.seq_len,
                           not args.no_special_tokens)
    n_tokens = sum(len(w) for w in windows)
    predicted = sum(len(w) - 1 for w in windows)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(args.device).eval()
    run = Runner(model, args.device)
    L = len(run.layers)
    timing = {}

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    sync()
    t0 = time.perf_counter()
    ad_sum = torch.zeros(L, dtype=torch.float64)
    ad_last = torch.zeros(L, dtype=torch.float64)
    base = 0.0
    for w in windows:
        states, nll = run.residual_stream(w)
        base += nll
        for i in range(L):
            ad = angular(states[i], states[i + 1])
            ad_sum[i] += ad.sum()
            ad_last[i] += ad[-1]
    sync()
    timing["base_and_angular"] = time.perf_counter() - t0

    def sweep(name, variants):
        sync()
        t = time.perf_counter()
        out = []
        for layers in variants:
            run.set_layers(layers)
            out.append(math.exp(sum(run.nll(w) for w in windows) / predicted))
        run.set_layers(run.layers)
        sync()
        timing[name] = time.perf_counter() - t
        return out

    ls = run.layers
    res = {
        "blocks": L,
        "windows": len(windows),
        "tokens": n_tokens,
        "base_ppl": math.exp(base / predicted),
        "angular_mean": (ad_sum / n_tokens).tolist(),
        "angular_last": (ad_last / len(windows)).tolist(),
    }
    if not args.skip_sweeps:
        res["remove_ppl"] = sweep("remove", (ls[:i] + ls[i + 1:] for i in range(L)))
        res["insert_copy_ppl"] = sweep(
            "insert_copy", (ls[:i + 1] + [copy.deepcopy(ls[i])] + ls[i + 1:] for i in range(L)))
        res["insert_average_ppl"] = sweep(
            "insert_average",
            (ls[:i + 1] + [averaged(ls[i], ls[i + 1])] + ls[i + 1:] for i in range(L - 1)))
    timing["total"] = sum(timing.values())
    res["timing_seconds"] = timing
    res["device"] = args.device
    res["torch"] = torch.__version__
    print(f"{L} blocks, {len(windows)} window(s), {n_tokens} tokens, base ppl {res['base_ppl']:.4f}")
    print("timing (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timing.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)

    if not args.rust:
        return 0
    rust = json.load(open(args.rust))
    ok = True
    if rust["tokens"] != n_tokens:
        print(f"TOKEN COUNT DIFFERS: slayer {rust['tokens']}, reference {n_tokens}")
        ok = False
    for key in ["angular_mean", "angular_last"]:
        d = max(abs(a - b) for a, b in zip(rust[key], res[key]))
        good = d <= 1e-3 and len(rust[key]) == len(res[key])
        ok &= good
        print(f"{key:20s} max |diff| {d:.2e}  {'ok' if good else 'FAIL'} (tolerance 1e-3)")
    ppl_keys = ["base_ppl"] + ([] if args.skip_sweeps else
                               ["remove_ppl", "insert_copy_ppl", "insert_average_ppl"])
    for key in ppl_keys:
        a = rust[key] if isinstance(rust[key], list) else [rust[key]]
        b = res[key] if isinstance(res[key], list) else [res[key]]
        d = max(abs(x - y) / abs(y) for x, y in zip(a, b))
        good = d <= 0.01 and len(a) == len(b)
        ok &= good
        print(f"{key:20s} max rel diff {d:.2e}  {'ok' if good else 'FAIL'} (tolerance 1%)")
    cost = rust.get("cost", {})
    if "seconds" in cost:
        print(f"slayer importance: {cost['seconds']:.2f} s vs naive transformers {timing['total']:.2f} s "
              f"({timing['total'] / cost['seconds']:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
