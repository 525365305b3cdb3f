#!/usr/bin/env python3
"""Write a Llama-shaped HF checkpoint with random bf16 weights, sharded like
transformers' save_pretrained, for the large-model benchmarks (docs/benchmarks.md,
"Models larger than memory"). Never commit the output.

    python3 dev/make_big_checkpoint.py SHAPE OUT_DIR [--max-shard-size 5GB] [--seed 0]

SHAPE is `tinyllama` (TinyLlama-1.1B: 22 blocks, 2048 wide, GQA 32/4, 1.1B params,
2.2 GB) or `llama2-7b` (Llama-2-7B: 32 blocks, 4096 wide, 6.7B params, 13.5 GB).

A byte-level tokenizer.json (one token per byte) is written beside the weights so that
`slayer perplexity` and the importance stage can score text with the model.
Needs only numpy. Values are N(0, 0.02) rounded to bf16 (norm weights are 1.0), written
chunk by chunk, so memory stays at a few hundred MB whatever the shape. The files are
real safetensors: transformers, safetensors and slayer read them.
"""
import argparse
import json
import os
import struct

import numpy as np

SHAPES = {
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                      max_position_embeddings=2048, rope_theta=10000.0),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096, rope_theta=10000.0),
}


def parse_size(text):
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if t.endswith(unit):
            return int(float(t[: -len(unit)]) * factor)
    return int(t)


def tensors(cfg):
    """(name, shape) in save_pretrained's order."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kvd = cfg["num_key_value_heads"] * hd
    yield "model.embed_tokens.weight", (v, h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "self_attn.q_proj.weight", (h, h)
        yield p + "self_attn.k_proj.weight", (kvd, h)
        yield p + "self_attn.v_proj.weight", (kvd, h)
        yield p + "self_attn.o_proj.weight", (h, h)
        yield p + "mlp.gate_proj.weight", (inter, h)
        yield p + "mlp.up_proj.weight", (inter, h)
        yield p + "mlp.down_proj.weight", (h, inter)
        yield p + "input_layernorm.weight", (h,)
        yield p + "post_attention_layernorm.weight", (h,)
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (v, h)


def shards(items, max_bytes):
    """huggingface_hub's split: in order, oversize tensors alone."""
    out, cur, size = [], [], 0
    for name, shape in items:
        n = int(np.prod(shape)) * 2
        if n > max_bytes:
            out.append([(name, shape)])
            continue
        if size + n > max_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += n
    if cur:
        out.append(cur)
    return out


def write_values(f, name, shape, rng):
    n = int(np.prod(shape))
    if name.endswith("norm.weight"):
        f.write(np.full(n, 0x3F80, dtype="<u2").tobytes())  # bf16 1.0
        return
    chunk = 1 << 24
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = (rng.standard_normal(m, dtype=np.float32) * 0.02).view(np.uint32)
        # round to nearest even, as torch's bf16 cast does
        x = (x + 0x7FFF + ((x >> 16) & 1)) >> 16
        f.write(x.astype("<u2").tobytes())


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (as `tokenizers`' ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_tokenizer():
    """A byte-level BPE tokenizer.json without merges: one token per byte (ids 0..255),
    enough to score text with a random model of any vocabulary of 256 or more."""
    vocab = {ch: b for b, ch in sorted(bytes_to_unicode().items())}
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
            "normalizer": None, "pre_tokenizer": level, "post_processor": None,
            "decoder": level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": []}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out")
    ap.add_argument("--max-shard-size", default="5GB")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = dict(SHAPES[args.shape])
    cfg.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
               rms_norm_eps=1e-5, tie_word_embeddings=False, torch_dtype="bfloat16",
               bos_token_id=1, eos_token_id=2)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    groups = shards(list(tensors(cfg)), parse_size(args.max_shard_size))
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        fname = ("model.safetensors" if len(groups) == 1
                 else f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors")
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in group:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        total += off
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        with open(os.path.join(args.out, fname), "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for name, shape in group:
                write_values(f, name, shape, rng)
        print(f"{fname}: {off / 1e9:.2f} GB", flush=True)
    if len(groups) > 1:
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
            f.write("\n")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
        json.dump(byte_tokenizer(), f)
    print(f"{args.out}: {total / 1e9:.2f} GB in {len(groups)} shard(s), byte tokenizer")


if __name__ == "__main__":
    main()
