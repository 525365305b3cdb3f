#!/usr/bin/env python3
"""PyTorch side of the prefill/decode benchmark (issue 9, acceptance 5): f32, same
threads as slayer, prefill 512 random tokens then greedy-decode 128 with the KV cache.
The slayer side is `cargo test -p slayer-model --test model_smollm2 bench -- --ignored
--nocapture` with SLAYER_BENCH_MODEL=<dir>.

Usage: python3 dev/bench_torch.py HF_DIR [THREADS]
"""
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
    torch.set_num_threads(threads)
    m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
    vocab = m.config.vocab_size
    ids = torch.randint(0, vocab, (1, 512), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        m(ids[:, :16])  # warm-up
        t = time.time()
        out = m(ids, use_cache=True)
        tp = time.time() - t
        past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t = time.time()
        for _ in range(128):
            out = m(nxt, past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        td = time.time() - t
    print(f"threads {threads}: prefill 512: {tp:.3f}s = {512 / tp:.1f} tok/s; "
          f"decode 128: {td:.3f}s = {128 / td:.1f} tok/s")


if __name__ == "__main__":
    main()
