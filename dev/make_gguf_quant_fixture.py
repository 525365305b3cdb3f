#!/usr/bin/env python3
"""Regenerate stages/tests/fixtures/gguf_quant.safetensors: random quantised blocks of
every ggml type slayer dequantises, with the values llama.cpp's own Python reference
(`gguf.quants.dequantize`, package `gguf`) decodes them to. The Rust test
model/tests/model_gguf.rs checks slayer's dequantiser against it bit for bit.

Usage: python3 dev/make_gguf_quant_fixture.py   (needs: pip install gguf numpy safetensors)
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "stages", "tests", "fixtures", "gguf_quant.safetensors")
BLOCKS = 6


def random_blocks(rng, qtype):
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(BLOCKS, type_size), dtype=np.uint8)
    # f16 scales: keep them finite and moderate (exponent bits not all ones).
    def f16(col):
        raw[:, col:col + 2] = np.frombuffer(
            rng.uniform(-2, 2, BLOCKS).astype(np.float16).tobytes(), dtype=np.uint8).reshape(BLOCKS, 2)
    if qtype in (T.Q4_0, T.Q5_0, T.Q8_0):
        f16(0)
    elif qtype in (T.Q4_1, T.Q5_1):
        f16(0); f16(2)
    elif qtype in (T.Q4_K, T.Q5_K):
        f16(0); f16(2)
    elif qtype == T.Q6_K:
        f16(208)
    elif qtype == T.F16:
        raw = np.frombuffer(rng.standard_normal(BLOCKS * 4).astype(np.float16).tobytes(), np.uint8).reshape(BLOCKS, -1)
    elif qtype == T.BF16:
        f = rng.standard_normal(BLOCKS * 4).astype(np.float32).view(np.uint32) >> 16
        raw = f.astype(np.uint16).view(np.uint8).reshape(BLOCKS, -1)
    return raw, block_size


def main():
    rng = np.random.default_rng(0)
    tensors = {}
    # New types go last: the random stream of the earlier ones stays as committed.
    for qtype in (T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q6_K, T.F16, T.BF16,
                  T.Q5_0, T.Q5_1, T.Q5_K):
        raw, _ = random_blocks(rng, qtype)
        values = dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        tensors[f"{qtype.name}.raw"] = raw.reshape(-1).copy()
        tensors[f"{qtype.name}.values"] = values
    save_file(tensors, OUT)


if __name__ == "__main__":
    main()
