#!/usr/bin/env python3
"""PyTorch side of the training-throughput benchmark (issue 6, acceptance 3).

The same work as `stages/tests/train_bench.rs`: a SmolLM2-135M-shaped Llama (random
init, f32), batch of BATCH sequences of SEQ inputs (SEQ+1 tokens, next-token targets),
forward + cross-entropy + backward + global-norm clipping (1.0) + AdamW (lr 2e-4, betas
0.9/0.95, eps 1e-8, weight decay 0.1 except norms/biases), with either the 8 expanded
blocks ((2+1)x8|6 positions) trainable or everything, on THREADS threads.

Usage: python3 bench/train_torch.py expanded|all [SEQ] [BATCH] [STEPS] [THREADS]
"""
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

EXPANDED = [2, 5, 8, 11, 14, 17, 20, 23]


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "expanded"
    seq = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 6
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                      num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                      max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0,
                      tie_word_embeddings=True)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).float().train()
    for name, p in model.named_parameters():
        if which == "all":
            p.requires_grad_(True)
        else:
            p.requires_grad_(any(name.startswith(f"model.layers.{i}.") for i in EXPANDED))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not (n.endswith("bias") or "norm" in n)]
    no_decay = [p for n, p in named if n.endswith("bias") or "norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=2e-4, betas=(0.9, 0.95), eps=1e-8)
    params = [p for _, p in named]
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (steps, batch, seq + 1), generator=g)
    times = []
    for s in range(steps):
        t = time.time()
        ids = data[s]
        logits = model(input_ids=ids[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), ids[:, 1:].reshape(-1))
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.time() - t)
        print(f"step {s + 1}: {times[-1]:.2f}s loss {loss.item():.4f} grad_norm {gn:.3f}",
              file=sys.stderr)
    timed = times[2:] if len(times) > 2 else times
    tok_s = len(timed) * batch * seq / sum(timed)
    n_train = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT torch trainable={which} seq={seq} batch={batch} threads={threads} "
          f"tokens_per_s={tok_s:.1f} step_s={sum(timed) / len(timed):.3f} "
          f"trainable_params={n_train} total_params={n_total} peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    main()
