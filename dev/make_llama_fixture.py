#!/usr/bin/env python3
"""Regenerate stages/tests/fixtures/tiny_llama: a tiny random Llama in HF format plus
transformers' reference logits, the independent implementation the Rust parity test
(model/tests/model_parity.rs) checks against.

Usage: python3 dev/make_llama_fixture.py [OUT_DIR]
Also writes tiny_llama.f16.gguf: the same weights in llama.cpp's GGUF layout (F16,
q/k rows permuted as convert_hf_to_gguf.py does), so model/tests/model_gguf.rs can
check the GGUF importer end to end against the safetensors weights.

Needs: pip install torch transformers safetensors gguf
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    HERE, "..", "stages", "tests", "fixtures", "tiny_llama")

# Fixed prompt ids and the number of tokens fed one at a time after the prefill.
IDS = [1, 17, 42, 99, 3, 250, 128, 7, 64, 200, 33, 5]
PREFILL = 5
# A second, shorter row for the padded batch check (right padding with PAD_ID).
IDS_SHORT = [9, 81, 144, 2, 77, 31, 12]
PAD_ID = 0


def main():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval().to(torch.float32)
    # The default init (std 0.02) gives near-uniform logits; widen it so that the
    # parity test compares logits of realistic magnitude, and make norms non-trivial.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * 0.15)
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)

    ids = torch.tensor([IDS])
    with torch.no_grad():
        full = model(ids).logits[0]  # [t, vocab]
        # Incremental decoding: prefill PREFILL tokens, then one token at a time.
        out = model(ids[:, :PREFILL], use_cache=True)
        steps = [out.logits[0]]
        past = out.past_key_values
        for i in range(PREFILL, len(IDS)):
            out = model(ids[:, i:i + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            steps.append(out.logits[0])
        incremental = torch.cat(steps, dim=0)
        # Right-padded batch: row 1 is IDS_SHORT padded with PAD_ID.
        pad = len(IDS) - len(IDS_SHORT)
        batch = torch.tensor([IDS, IDS_SHORT + [PAD_ID] * pad])
        mask = torch.tensor([[1] * len(IDS), [1] * len(IDS_SHORT) + [0] * pad])
        padded = model(batch, attention_mask=mask).logits  # [2, t, vocab]
        hidden = model(ids, output_hidden_states=True).hidden_states

    tensors = {
        "ids": ids[0].to(torch.int64),
        "ids_short": torch.tensor(IDS_SHORT, dtype=torch.int64),
        "logits_full": full.contiguous(),
        "logits_incremental": incremental.contiguous(),
        "logits_padded": padded.contiguous(),
        # hidden_states[0] is the embedding output, [1..L-1] the residual stream after
        # each block, and the last one is already final-normed by transformers.
        "hidden_last_prenorm_block0": hidden[1][0].contiguous(),
    }
    save_file(tensors, os.path.join(OUT, "reference_logits.safetensors"),
              metadata={"prefill": str(PREFILL), "pad_id": str(PAD_ID)})
    write_gguf(model, cfg, os.path.join(OUT, "tiny_llama.f16.gguf"))
    # Record the generator, so the fixture says where it came from.
    import transformers
    with open(os.path.join(OUT, "GENERATED_BY.json"), "w") as f:
        json.dump({"script": "dev/make_llama_fixture.py",
                   "torch": torch.__version__,
                   "transformers": transformers.__version__,
                   "ids": IDS, "prefill": PREFILL, "ids_short": IDS_SHORT,
                   "pad_id": PAD_ID}, f, indent=2)
        f.write("\n")


def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> interleaved."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_gguf(model, cfg, path):
    import gguf
    import numpy as np
    names = {
        "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    }
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny_llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(cfg.vocab_size)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    for name, t in model.state_dict().items():
        a = t.detach().numpy()
        if name == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif name == "model.norm.weight":
            g = "output_norm.weight"
        elif name == "lm_head.weight":
            g = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            module, suffix = rest.rsplit(".", 1)
            g = f"blk.{layer}.{names[module]}.{suffix}"
            if module == "self_attn.q_proj":
                a = llama_cpp_permute(a, cfg.num_attention_heads)
            elif module == "self_attn.k_proj":
                a = llama_cpp_permute(a, cfg.num_key_value_heads)
        # Norms stay F32 as llama.cpp keeps 1-D tensors; matrices go F16.
        w.add_tensor(g, a.astype(np.float32 if a.ndim == 1 else np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
