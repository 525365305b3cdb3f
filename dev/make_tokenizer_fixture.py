#!/usr/bin/env python3
"""Regenerate stages/tests/fixtures/tokenizer_qwen2/: a small byte-level BPE tokenizer
built like Qwen2's (NFC normaliser, Qwen2's split regex, byte-level without regex, BPE
without byte fallback, ChatML special tokens), trained with the `tokenizers` package on
a short multilingual text, then written

- as `tokenizer.json` (what transformers loads),
- as the `tokenizer.ggml.*` metadata of a GGUF the way llama.cpp's converter writes a
  Qwen2 vocabulary (`tokenizer.ggml.model = gpt2`, `pre = qwen2`, tokens, token types,
  merges, special token ids), in `qwen2_tokenizer.gguf` (no tensors),
- with `ids.json`: each test text and the ids HF `tokenizers` gives it.

stages/tests/model_families.rs checks that the tokenizer slayer rebuilds from the GGUF
metadata gives the same ids. Usage: python3 dev/make_tokenizer_fixture.py
(needs: pip install tokenizers gguf)
"""
import json
import os

import gguf
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "stages", "tests", "fixtures", "tokenizer_qwen2")

# Qwen2's tokenizer.json pre-tokenizer pattern.
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024, and they've got 12345 apples!",
    "def add(a, b):\n    return a + b  # numbers: 3.14159, 42\n",
    "Café au lait, naïve résumé; Ünïcödé façade. Straße, smörgåsbord.",
    "机器学习是人工智能的一个分支。我们今天学习分词。",
    "Emoji test 🙂🚀 and tabs\tand   multiple   spaces.\n\n\nNew paragraphs.",
    "I'm sure we'll see; you'd think they're done. WE'LL SHOUT, DON'T WE?",
] * 20

TEXTS = [
    "Hello world! It's a test of 1234567 numbers.",
    "   leading spaces and trailing   ",
    "def f(x):\n\treturn x**2  # square\n",
    "Naïve café — résumé (NFC: e\u0301 vs é).",
    "机器学习很有趣！🙂",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "YOU'RE RIGHT, it'S FINE. Line one\r\nline two\n\n\n",
]


def build():
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = build()
    tok.save(os.path.join(OUT, "tokenizer.json"))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["id"] for a in spec["added_tokens"] if a["special"]}
    w = gguf.GGUFWriter(os.path.join(OUT, "qwen2_tokenizer.gguf"), "qwen2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
                       for i in range(len(tokens))])
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ids = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS]
    with open(os.path.join(OUT, "ids.json"), "w") as f:
        json.dump(ids, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(len(tokens), "tokens,", len(merges), "merges written to", OUT)


if __name__ == "__main__":
    main()
