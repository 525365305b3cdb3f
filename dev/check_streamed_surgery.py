#!/usr/bin/env python3
"""transformers reads slayer's streamed surgery output, sharded, and computes what the
source computes (issue 16, acceptance 1: "transformers loads a sharded result").

    python3 dev/check_streamed_surgery.py [SLAYER_BINARY]

Makes a tiny random Llama with transformers (f32, and bf16), runs
`slayer exec expand` with a zero-out layout at `max_shard_size=100KB` (many shards plus
`model.safetensors.index.json`) and `slayer exec prune`, loads each result with
`AutoModelForCausalLM.from_pretrained`, and checks:
  - the expanded model's logits equal the source's (zeroed o_proj/down_proj: identity
    blocks) within 1e-5 (f32) / 1e-2 (bf16),
  - the pruned model has the right number of layers and its untouched tensors are
    bit-identical to the source's.
Needs torch and transformers (dev only).
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLAYER = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/slayer")


def slayer(*args):
    subprocess.run([SLAYER, *args], check=True, stdout=subprocess.DEVNULL)


def main():
    torch.manual_seed(0)
    ids = torch.tensor([[(i * 37 + 11) % 256 for i in range(24)]])
    for dtype, tol in [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)]:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                              num_hidden_layers=8, num_attention_heads=4,
                              num_key_value_heads=2, max_position_embeddings=128)
            src = os.path.join(tmp, "src")
            LlamaForCausalLM(cfg).to(dtype).save_pretrained(src)
            out = os.path.join(tmp, "expanded")
            slayer("exec", "expand", "--in", f"model={src}", "--set", "layout=(2+1)x2|4◇",
                   "--set", "max_shard_size=100KB", "--out", out)
            files = sorted(os.listdir(out))
            shards = [f for f in files if f.startswith("model-")]
            assert "model.safetensors.index.json" in files and len(shards) > 3, files
            base = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
            model = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
            assert model.config.num_hidden_layers == 10, model.config.num_hidden_layers
            with torch.no_grad():
                diff = (base(ids).logits.float() - model(ids).logits.float()).abs().max().item()
            assert diff <= tol, f"{dtype}: max |logit diff| {diff}"
            print(f"{dtype}: expand (2+1)x2|4◇ -> {len(shards)} shards, transformers loads it, "
                  f"max |logit diff| vs source {diff:.2e}")

            pruned = os.path.join(tmp, "pruned")
            slayer("exec", "prune", "--in", f"model={src}", "--set", "delete=2", "--out", pruned)
            model = AutoModelForCausalLM.from_pretrained(pruned, dtype=dtype)
            assert model.config.num_hidden_layers == 6
            sd, bsd = model.state_dict(), base.state_dict()
            same = [k for k in sd if "layers.5." not in k]
            assert all(torch.equal(sd[k], bsd[k]) for k in same), "untouched tensors differ"
            trainable = json.load(open(os.path.join(pruned, "trainable.json")))["trainable"]
            assert trainable == [5], trainable
            print(f"{dtype}: prune delete 2 -> 6 layers, {len(same)} untouched tensors bit-identical")
    print("ok")


if __name__ == "__main__":
    main()
