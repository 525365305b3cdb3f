#!/usr/bin/env python3
"""Regenerate stages/tests/fixtures/tokenizer_llama_spm/ and tokenizer_gemma_spm/: two small
SentencePiece BPE vocabularies (byte fallback), trained with the `sentencepiece` package on a
short multilingual text, one per flavour of llama.cpp's SPM vocabulary type
(`tokenizer.ggml.model = llama`):

- Llama-2 style: `<unk> <s> </s>` at 0..2, dummy prefix ("▁" before the text), converted
  the way transformers converts Llama-2's `tokenizer.model` (LlamaTokenizerFast, legacy,
  add_prefix_space=True: normalizer Prepend("▁") + Replace(" ", "▁"), decoder with Strip);
- Gemma style: `<pad> <eos> <bos> <unk> <mask>` at 0..4, then user-defined pieces
  (`<start_of_turn>`, `<end_of_turn>`, "\\n\\n", "▁▁", `<h1>`), no dummy prefix, converted
  like Gemma's (GemmaTokenizerFast: normalizer Replace(" ", "▁"); the turn markers become
  special tokens, the other user-defined pieces plain added tokens).

Each directory gets

- `tokenizer.json` and `tokenizer_config.json` (what transformers saves),
- `spm_tokenizer.gguf`: only the `tokenizer.ggml.*` metadata (no tensors), written the way
  llama.cpp's convert_hf_to_gguf.py writes a SentencePiece vocabulary
  (`_create_vocab_sentencepiece`: tokens, scores, token types from the SentencePiece model,
  then the tokenizer_config.json `added_tokens_decoder` entries turned into control (special)
  or user-defined tokens with score -1000 and "▁" written back as " "; special ids and
  add_bos/add_eos from `gguf.SpecialVocab`; `add_space_prefix` as LlamaModel (from
  `add_prefix_space`) and Gemma3Model (always false) write it),
- `ids.json`: each test text and the ids HF `tokenizers` gives it with that tokenizer.json,
  special tokens included (the BOS the post-processor adds).

dev/spm_gguf_to_tokenizer_json.py rebuilds the tokenizer from the GGUF metadata alone and
checks it against these ids. Usage: python3 dev/make_spm_tokenizer_fixture.py
(needs: pip install sentencepiece protobuf tokenizers gguf numpy 'transformers<5'; transformers 5
dropped the SentencePiece converters this imitates, see SentencePieceExtractor below)
"""
import json
import logging
import os
import shutil
import tempfile

import gguf
import sentencepiece as spm
from tokenizers import Tokenizer
from transformers import GemmaTokenizerFast, LlamaTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "stages", "tests", "fixtures")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024, and they've got 12345 apples!",
    "def add(a, b):\n    return a + b  # numbers: 3.14159, 42\n",
    "\tindented\twith\ttabs and    runs of    spaces.\n\n\nNew paragraph.",
    "Café au lait, naïve résumé; Ünïcödé façade. Straße, smörgåsbord, crème brûlée.",
    "机器学习是人工智能的一个分支。我们今天学习分词。",
    "Привет, мир! Это тест токенизатора.",
    "I'm sure we'll see; you'd think they're done. WE'LL SHOUT, DON'T WE?",
    "Hello world. Hello there, hello again: (brackets) [square] {curly} \"quotes\".",
] * 20

# Not in the corpus on purpose: 🦙, 🚀, ж, 字, ！, — are byte-fallback material.
COMMON_TEXTS = [
    "",
    "Hello world! It's a test of 1234567 numbers.",
    " Hello world",
    "   leading spaces and trailing   ",
    "multiple     spaces   inside\tand\t\ttabs",
    " ",
    "\n",
    "def f(x):\n\treturn x**2  # square\n",
    "Line one\r\nline two\n\n\nend",
    "Naïve café — résumé, Straße, smörgåsbord.",
    "机器学习很有趣！",
    "emoji 🦙🚀 and ünseen ж字",
    "3.14159, 42, 2024-12-04",
    "Punctuation!!! ??? ... \"quotes\" 'single' (x) [y] {z}",
]
LLAMA_TEXTS = COMMON_TEXTS + [
    "Hi</s> there<s>again",
    "<unk> is a token too",
]
GEMMA_TEXTS = COMMON_TEXTS + [
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<h1>Title</h1>\n\nBody  text",
    "<bos>text<eos> <mask> <pad>",
    "a ▁▁ literal",
]

TRAIN = dict(
    model_type="bpe", vocab_size=700, byte_fallback=True, character_coverage=1.0,
    split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
    normalization_rule_name="identity", hard_vocab_limit=False, minloglevel=2,
)


def train(prefix, **kw):
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS), model_prefix=prefix,
                                   **TRAIN, **kw)
    return prefix + ".model"


def sentencepiece_vocab(model_file, tokenizer_config):
    """convert_hf_to_gguf.py `_create_vocab_sentencepiece` (no config.json, so the vocab size is
    the SentencePiece model's and there is no [PADn] padding; no added_tokens.json)."""
    sp = spm.SentencePieceProcessor(model_file=model_file)
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        ty = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            ty = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            ty = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            ty = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            ty = gguf.TokenType.BYTE
        tokens.append(sp.IdToPiece(i))
        scores.append(sp.GetScore(i))
        types.append(ty)
    for key, data in tokenizer_config.get("added_tokens_decoder", {}).items():
        i, token = int(key), data["content"]
        if data.get("special") or looks_special(token):
            types[i] = gguf.TokenType.CONTROL
        else:
            token = token.replace("\u2581", " ")  # "pre-normalize user-defined spaces"
            types[i] = gguf.TokenType.USER_DEFINED
        scores[i] = -1000.0
        tokens[i] = token
    return tokens, scores, types


def looks_special(token):
    """convert_hf_to_gguf.py `does_token_look_special`."""
    return (token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (token.startswith("<|") and token.endswith("|>"))
            or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
            or (token.startswith("<unused") and token.endswith(">")))


def write_gguf(out, arch, add_space_prefix):
    with open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8") as f:
        config = json.load(f)
    tokens, scores, types = sentencepiece_vocab(os.path.join(out, "tokenizer.model"), config)
    w = gguf.GGUFWriter(os.path.join(out, "spm_tokenizer.gguf"), arch)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    # bos/eos/unk/pad ids, add_bos_token/add_eos_token (from the post-processor, then the config).
    gguf.SpecialVocab(out, n_vocab=len(tokens)).add_to_gguf(w, quiet=True)
    if add_space_prefix is not None:
        w.add_add_space_prefix(add_space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tokens


def make(name, texts, hf_tokenizer, arch, add_space_prefix, check_sentencepiece):
    out = os.path.join(FIXTURES, name)
    os.makedirs(out, exist_ok=True)
    hf_tokenizer.save_pretrained(out)
    # Only tokenizer.json, tokenizer_config.json and the GGUF stay; the GGUF writer reads
    # tokenizer.model once, and special_tokens_map.json duplicates the config.
    write_gguf(out, arch, add_space_prefix)
    for extra in ("tokenizer.model", "special_tokens_map.json"):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    ids = [{"text": t, "ids": tok.encode(t).ids} for t in texts]
    with open(os.path.join(out, "ids.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in ids) + "\n]\n")
    # HF's conversion is not SentencePiece: special tokens in the text are matched whole, and
    # (legacy Llama) the dummy prefix comes back after each of them.
    differ = [t for t, c in zip(texts, ids) if check_sentencepiece(t) != c["ids"]]
    print(f"{name}: {tok.get_vocab_size()} tokens, {len(texts)} texts written to {out}; "
          f"SentencePiece itself differs on {differ}")


def main():
    # SpecialVocab's note that the pair template's second BOS is no separator is expected.
    logging.getLogger("gguf.vocab").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp()
    try:
        llama_model = train(os.path.join(tmp, "llama"), add_dummy_prefix=True,
                            unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
        llama = LlamaTokenizerFast(vocab_file=llama_model, legacy=True, add_prefix_space=True)
        sp_llama = spm.SentencePieceProcessor(model_file=llama_model)
        make("tokenizer_llama_spm", LLAMA_TEXTS, llama, "llama", True,
             lambda t: [1] + sp_llama.encode(t))

        gemma_model = train(os.path.join(tmp, "gemma"), add_dummy_prefix=False,
                            pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                            pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
                            unk_piece="<unk>", control_symbols=["<mask>"],
                            user_defined_symbols=["<start_of_turn>", "<end_of_turn>",
                                                  "\n\n", "\u2581\u2581", "<h1>"])
        gemma = GemmaTokenizerFast(vocab_file=gemma_model)
        sp_gemma = spm.SentencePieceProcessor(model_file=gemma_model)
        make("tokenizer_gemma_spm", GEMMA_TEXTS, gemma, "gemma3", False,
             lambda t: [2] + sp_gemma.encode(t))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
