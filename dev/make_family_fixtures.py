#!/usr/bin/env python3
"""Regenerate stages/tests/fixtures/tiny_{mistral,qwen2,qwen2_tied,qwen2_swa,qwen3,gemma3}: tiny
random models of the Mistral, Qwen2, Qwen3 and Gemma 3 families in HF format,
transformers' reference logits, and the same weights as GGUF, the independent
implementations stages/tests/model_families.rs checks slayer's one decoder against.

Usage: python3 dev/make_family_fixtures.py [FIXTURES_DIR [NAME ...]]
(all fixtures when no NAME is given)

- tiny_mistral: MistralForCausalLM with sliding_window = 8, shorter than the 20-token
  test sequence, so the window's off-by-one shows in both the full forward and the
  KV-cached decode. Its GGUF is written as llama.cpp's converter writes Mistral (arch
  `llama`, q/k rows permuted) plus `llama.attention.sliding_window`, the key that makes
  slayer import it as Mistral (llama.cpp's converter omits it; see model/src/gguf.rs).
- tiny_qwen2 / tiny_qwen2_tied: Qwen2ForCausalLM with random q/k/v biases, rope_theta 1e6,
  an untied and a tied head. config.json keeps `sliding_window: 4` with
  `use_sliding_window: false`, as released Qwen2.5 configs do (window present, unused),
  so a reader that ignores `use_sliding_window` fails the parity test. GGUF arch `qwen2`,
  no q/k permutation (llama.cpp's Qwen2Model has none), biases as blk.N.attn_q.bias etc.
- tiny_qwen2_swa: Qwen2ForCausalLM with `use_sliding_window: true`, `sliding_window: 4`
  and `max_window_layers: 1` of 3 layers: block 0 attends to everything, blocks 1 and 2
  slide (transformers' `layer_types`), the per-layer windows a Qwen config can ask for.
  No GGUF (llama.cpp's Qwen2Model stores no window).
- tiny_qwen3: Qwen3ForCausalLM with head_dim 24 (not hidden / heads = 16), random
  q_norm/k_norm, no biases, tied head. GGUF arch `qwen3` (as llama.cpp's Qwen3Model:
  no permutation, `qwen3.attention.key_length`, blk.N.attn_{q,k}_norm.weight).
- tiny_gemma3: Gemma3ForCausalLM (text) with hidden 48 (embedding scale sqrt(48) is not
  a power of two), head_dim 16, query_pre_attn_scalar 20 (not head_dim), 7 blocks of
  transformers' default interleaving (every 6th global: blocks 0-4 and 6 slide, block 5
  is global) with sliding_window 6 (shorter than the sequence), local rotary base 10000
  and a global base 1e6 with linear scaling x2, random norms around 0 (the weights are
  `w` of the `(1 + w)` scale), final_logit_softcapping 15 (Gemma 2's key, which Gemma
  3's config keeps and transformers applies; its attn_logit_softcapping transformers'
  Gemma 3 ignores, so the fixture leaves it unset). Its GGUF is
  written as llama.cpp's Gemma3Model writes it: arch `gemma3`, every norm weight stored
  as `1 + w`, no q/k permutation, norms named attn_norm / post_attention_norm /
  ffn_norm (before the MLP) / post_ffw_norm, no output.weight (tied).

Each fixture: config.json, model.safetensors, reference_logits.safetensors (`ids`,
`logits_full` [t, vocab], `logits_incremental`: prefill PREFILL tokens then one at a
time with transformers' KV cache, `logits_full_f16_matrices`: the full sequence with every
matrix rounded to F16, i.e. what the GGUF holds, and for Gemma 3 the attention scale
llama.cpp derives, head_dim^-1/2), tiny_<name>.f16.gguf, GENERATED_BY.json.

Needs: pip install torch transformers safetensors gguf
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "..", "stages", "tests", "fixtures")

VOCAB = 300
# 20 fixed prompt ids: longer than Mistral's window of 8.
IDS = [1, 17, 42, 99, 3, 250, 128, 7, 64, 200, 33, 5, 271, 88, 150, 9, 299, 61, 120, 14]
PREFILL = 5
MISTRAL_WINDOW = 8
THETA = {"tiny_mistral": 10000.0, "tiny_qwen2": 1000000.0, "tiny_qwen2_tied": 1000000.0,
         "tiny_qwen2_swa": 1000000.0,
         "tiny_qwen3": 1000000.0, "tiny_gemma3": 1000000.0}
ALL = ["tiny_mistral", "tiny_qwen2", "tiny_qwen2_tied", "tiny_qwen3", "tiny_gemma3",
       "tiny_qwen2_swa"]
GEMMA_WINDOW = 6
GEMMA_ROPE_FACTOR = 2.0
GEMMA_CAPS = {"final_logit_softcapping": 15.0}


def common():
    return dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def build(name):
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, MistralConfig,
                              MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                              Qwen3Config, Qwen3ForCausalLM)
    if name == "tiny_qwen3":
        cfg = Qwen3Config(num_hidden_layers=2, head_dim=24, rope_theta=THETA[name],
                          attention_bias=False, use_sliding_window=False,
                          tie_word_embeddings=True, **common())
        cls = Qwen3ForCausalLM
    elif name == "tiny_gemma3":
        c = common()
        c.update(hidden_size=48, intermediate_size=96, rms_norm_eps=1e-6, pad_token_id=0)
        cfg = Gemma3TextConfig(
            num_hidden_layers=7, head_dim=16, query_pre_attn_scalar=20,
            sliding_window=GEMMA_WINDOW, tie_word_embeddings=True,
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": GEMMA_ROPE_FACTOR,
                                   "rope_theta": THETA[name]},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
            **GEMMA_CAPS, **c)
        cls = Gemma3ForCausalLM
    elif name == "tiny_qwen2_swa":
        cfg = Qwen2Config(num_hidden_layers=3, rope_theta=THETA[name],
                          use_sliding_window=True, sliding_window=4, max_window_layers=1,
                          tie_word_embeddings=False, **common())
        cls = Qwen2ForCausalLM
    elif name == "tiny_mistral":
        cfg = MistralConfig(num_hidden_layers=3, rope_theta=THETA[name],
                            sliding_window=MISTRAL_WINDOW, tie_word_embeddings=False,
                            **common())
        cls = MistralForCausalLM
    else:
        cfg = Qwen2Config(num_hidden_layers=2, rope_theta=THETA[name],
                          use_sliding_window=False, sliding_window=4, max_window_layers=0,
                          tie_word_embeddings=(name == "tiny_qwen2_tied"), **common())
        cls = Qwen2ForCausalLM
    cfg._attn_implementation = "eager"
    model = cls(cfg).eval().to(torch.float32)
    # Wider than the default init (std 0.02) so logits have realistic magnitude; norms
    # non-trivial; biases (Qwen2's q/k/v) random too.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                # Gemma's norms scale by 1 + w: w around 0 is a scale around 1.
                offset = 0.0 if name == "tiny_gemma3" else 1.0
                p.copy_(offset + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.15)
    return cfg, model


def reference(model):
    ids = torch.tensor([IDS])
    with torch.no_grad():
        full = model(ids).logits[0]
        out = model(ids[:, :PREFILL], use_cache=True)
        steps = [out.logits[0]]
        past = out.past_key_values
        for i in range(PREFILL, len(IDS)):
            out = model(ids[:, i:i + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            steps.append(out.logits[0])
        incremental = torch.cat(steps, dim=0)
    return {"ids": ids[0].to(torch.int64), "logits_full": full.contiguous(),
            "logits_incremental": incremental.contiguous()}


def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> interleaved."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


GGUF_NAMES = {
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
# gguf's tensor_mapping.py for Gemma 2/3: the norm before the MLP is ffn_norm, the norms
# on the sub-layer outputs post_attention_norm and post_ffw_norm.
GEMMA_GGUF_NAMES = dict(GGUF_NAMES, **{
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
})
ARCH = {"tiny_mistral": "llama", "tiny_qwen2": "qwen2", "tiny_qwen2_tied": "qwen2",
        "tiny_qwen3": "qwen3", "tiny_gemma3": "gemma3"}


def write_gguf(model, cfg, name, path):
    import gguf
    arch = ARCH[name]
    names = GEMMA_GGUF_NAMES if arch == "gemma3" else GGUF_NAMES
    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(THETA[name])
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    if arch == "llama":
        w.add_sliding_window(MISTRAL_WINDOW)
    if arch in ("qwen3", "gemma3"):
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    if arch == "gemma3":
        # As llama.cpp's Gemma3Model: the window, the global rope scaling; the local base
        # (10000) and the pattern (every 6th block global) are llama.cpp's fixed values.
        w.add_sliding_window(GEMMA_WINDOW)
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(GEMMA_ROPE_FACTOR)
        w.add_final_logit_softcapping(GEMMA_CAPS["final_logit_softcapping"])
    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied: the converter writes no output.weight
        a = t.detach().numpy()
        if hf == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif hf == "model.norm.weight":
            g = "output_norm.weight"
        elif hf == "lm_head.weight":
            g = "output.weight"
        else:
            _, _, layer, rest = hf.split(".", 3)
            module, suffix = rest.rsplit(".", 1)
            g = f"blk.{layer}.{names[module]}.{suffix}"
            if arch == "llama" and module == "self_attn.q_proj":
                a = llama_cpp_permute(a, cfg.num_attention_heads)
            elif arch == "llama" and module == "self_attn.k_proj":
                a = llama_cpp_permute(a, cfg.num_key_value_heads)
        if arch == "gemma3" and hf.endswith("norm.weight"):
            a = a + 1.0  # llama.cpp's Gemma3Model.norm_shift: (1 + w) stored whole
        # 1-D tensors (norms, biases) stay F32 as llama.cpp keeps them; matrices F16.
        w.add_tensor(g, a.astype(np.float32 if a.ndim == 1 else np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    import transformers
    only = sys.argv[2:] or ALL
    for seed, name in enumerate(ALL):
        if name not in only:
            continue
        torch.manual_seed(seed + 1)
        cfg, model = build(name)
        out = os.path.join(OUT, name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        if name in ("tiny_qwen2", "tiny_qwen2_tied"):
            # transformers drops an unused window on save; released configs keep it.
            path = os.path.join(out, "config.json")
            with open(path) as f:
                c = json.load(f)
            c["sliding_window"] = 4
            c["use_sliding_window"] = False
            with open(path, "w") as f:
                json.dump(c, f, indent=2, sort_keys=True)
                f.write("\n")
        ref = reference(model)
        if name != "tiny_qwen2_swa":
            write_gguf(model, cfg, name, os.path.join(out, f"{name}.f16.gguf"))
        # The GGUF's logits: transformers on the same weights with every matrix rounded
        # to F16 as the GGUF stores it (1-D norms and biases stay F32). A GGUF has no
        # query_pre_attn_scalar: llama.cpp scales Gemma 3's scores by head_dim^-1/2
        # (but for the 27B), so its model is this one with that scale.
        if name == "tiny_gemma3":
            for layer in model.model.layers:
                layer.self_attn.scaling = cfg.head_dim ** -0.5
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim > 1:
                    p.copy_(p.to(torch.float16).to(torch.float32))
            ref["logits_full_f16_matrices"] = model(ref["ids"][None]).logits[0].contiguous()
        save_file(ref, os.path.join(out, "reference_logits.safetensors"),
                  metadata={"prefill": str(PREFILL)})
        with open(os.path.join(out, "GENERATED_BY.json"), "w") as f:
            json.dump({"script": "dev/make_family_fixtures.py", "torch": torch.__version__,
                       "transformers": transformers.__version__, "seed": seed + 1,
                       "ids": IDS, "prefill": PREFILL}, f, indent=2)
            f.write("\n")
        print(name, "written to", out)


if __name__ == "__main__":
    main()
