#!/usr/bin/env python3
"""Reference for slayer's Rust port: a SentencePiece-style GGUF vocabulary
(`tokenizer.ggml.model = "llama"`, llama.cpp's SPM type) rebuilt into the HF `tokenizer.json`
and `tokenizer_config.json` that transformers (4.x) makes from the original `tokenizer.model`,
so that HF `tokenizers` gives the original model's ids. Written plainly, as the specification
to port: `rebuild()` reads nothing but the GGUF metadata; `tokenizers` is only used by the
checks at the bottom.

GGUF keys read (llama.cpp's names):
  tokenizer.ggml.model              must be "llama"
  tokenizer.ggml.tokens             [str]   the pieces, id = index
  tokenizer.ggml.scores             [f32]   SentencePiece piece scores (merge priority)
  tokenizer.ggml.token_type         [i32]   1 normal, 2 unknown, 3 control, 4 user-defined,
                                            5 unused, 6 byte
  tokenizer.ggml.bos_token_id / eos_token_id / unknown_token_id / padding_token_id  (u32)
  tokenizer.ggml.add_bos_token      bool, missing = true   (llama.cpp's SPM default)
  tokenizer.ggml.add_eos_token      bool, missing = false
  tokenizer.ggml.add_space_prefix   bool, missing = true   (llama.cpp's SPM default): true is
                                    Llama-2 (SentencePiece's dummy prefix), false is Gemma
  tokenizer.chat_template           str, optional (copied to tokenizer_config.json)
  general.architecture              only for the tokenizer_class name and context length

What llama.cpp's converter (convert_hf_to_gguf.py `_create_vocab_sentencepiece`) did to the
SentencePiece model, and is undone here:
  * every entry of tokenizer_config.json `added_tokens_decoder` became type 3 (if "special")
    or 4 (otherwise) with score -1000.0, and a user-defined token's "▁" was written as " ".
    So: a type-4 token's " " is turned back into "▁", and the score of every non-normal
    token is taken as 0.0, what SentencePiece gives all its meta pieces (unknown, control,
    user-defined, byte). Only type-1 scores are real merge priorities.
  * ids past the SentencePiece model (config vocab_size) were padded with "[PADn]" tokens of
    type 5 (unused): they are kept in the vocab (ids stay dense) but take no part in merges.

Usage: python3 dev/spm_gguf_to_tokenizer_json.py [X.gguf ...]
           checks the fixtures (tokenizer_llama_spm, tokenizer_gemma_spm, vocab_llama_spm) and
           any llama.cpp test vocabulary X.gguf with its X.gguf.inp / X.gguf.out
       python3 dev/spm_gguf_to_tokenizer_json.py --write F.gguf DIR
           writes DIR/tokenizer.json and DIR/tokenizer_config.json
(needs: pip install gguf tokenizers)
"""
import json
import os
import sys

import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "stages", "tests", "fixtures")

SPACE = "\u2581"  # "▁", SentencePiece's whitespace
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_metadata(path):
    """The GGUF's key/value metadata as plain Python values (strings, numbers, lists)."""
    reader = gguf.GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kinds = field.types
        if kinds[0] == gguf.GGUFValueType.ARRAY:
            if kinds[-1] == gguf.GGUFValueType.STRING:
                meta[key] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                meta[key] = [field.parts[i].tolist()[0] for i in field.data]
        elif kinds[0] == gguf.GGUFValueType.STRING:
            meta[key] = bytes(field.parts[field.data[0]]).decode("utf-8")
        else:
            meta[key] = field.parts[field.data[0]].tolist()[0]
    return meta


def hf_pieces(tokens, types):
    """The HF (SentencePiece) spelling of each token: user-defined " " back to "▁"."""
    return [t.replace(" ", SPACE) if ty == USER_DEFINED else t for t, ty in zip(tokens, types)]


def derive_merges(pieces, scores, types):
    """transformers 4.x `SentencePieceExtractor.extract(vocab_scores)` / `generate_merges`:

        vocab  = {piece: id}                         (the SentencePiece pieces)
        for each piece p in id order, with its score s:
            local = [(p[:i], p[i:], s) for i in 1..len(p)-1      (len in code points)
                     if p[:i] in vocab and p[i:] in vocab]
            sort local by (vocab[left], vocab[right]) ascending
            append local to the list
        stable sort the whole list by (s, len(left), len(right)) DESCENDING
        (Python's sorted(..., reverse=True): equal keys keep their order from above)

    SentencePiece's own scores are used: the GGUF's for normal tokens, 0.0 for the others
    (unknown, control, user-defined, byte); unused tokens are not pieces at all."""
    vocab = {}
    for i, (p, ty) in enumerate(zip(pieces, types)):
        if ty != UNUSED:
            vocab[p] = i
    ranked = []
    for p, i in vocab.items():
        score = scores[i] if types[i] == NORMAL else 0.0
        local = []
        for k in range(1, len(p)):
            left, right = p[:k], p[k:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        ranked.extend(local)
    ranked.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [[left, right] for left, right, _ in ranked]


def rebuild(meta):
    """(tokenizer.json, tokenizer_config.json) as dicts, from the GGUF metadata."""
    if meta.get("tokenizer.ggml.model") != "llama":
        raise ValueError("not a SentencePiece (llama) vocabulary")
    tokens = meta["tokenizer.ggml.tokens"]
    n = len(tokens)
    types = meta.get("tokenizer.ggml.token_type", [NORMAL] * n)
    scores = meta.get("tokenizer.ggml.scores", [0.0] * n)
    add_bos = meta.get("tokenizer.ggml.add_bos_token", True)
    add_eos = meta.get("tokenizer.ggml.add_eos_token", False)
    space_prefix = meta.get("tokenizer.ggml.add_space_prefix", True)
    pieces = hf_pieces(tokens, types)
    if not space_prefix and "\t" not in pieces and "<0x09>" in pieces:
        # GemmaConverter: "Older gemma tokenizers had a missing tab token", the byte piece
        # <0x09> is renamed "\t" (same id, score 0).
        pieces[pieces.index("<0x09>")] = "\t"

    def piece_at(key):
        i = meta.get(key)
        return pieces[i] if i is not None and 0 <= i < n else None

    bos, eos = piece_at("tokenizer.ggml.bos_token_id"), piece_at("tokenizer.ggml.eos_token_id")
    unk = piece_at("tokenizer.ggml.unknown_token_id")
    if unk is None and UNKNOWN in types:
        unk = pieces[types.index(UNKNOWN)]
    pad = piece_at("tokenizer.ggml.padding_token_id")

    # Control and unknown tokens are special; user-defined ones are added tokens that are not
    # special. All are matched on the raw text (normalized: false), before the normalizer.
    added = [{"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": ty != USER_DEFINED}
             for i, ty in enumerate(types) if ty in (UNKNOWN, CONTROL, USER_DEFINED)]

    replace_space = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    if space_prefix:
        # Llama-2 (LlamaConverter, legacy): "▁" before every stretch of text between added
        # tokens, even one that already starts with a space; the decoder strips it again.
        normalizer = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE}, replace_space]}
        pre_tokenizer = None
    else:
        # Gemma (GemmaConverter): spaces become "▁", nothing is prepended. The Split on " " is
        # what transformers writes; after the normalizer there is no " " left, so it never splits.
        normalizer = replace_space
        pre_tokenizer = {"type": "Split", "pattern": {"String": " "},
                         "behavior": "MergedWithPrevious", "invert": False}
    decoders = [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]
    if space_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})

    # LlamaTokenizerFast / GemmaTokenizerFast `update_post_processor`.
    if add_bos and bos is None or add_eos and eos is None:
        raise ValueError("add_bos_token/add_eos_token without a bos/eos token id")

    def special(piece, type_id):
        return {"SpecialToken": {"id": piece, "type_id": type_id}}

    def sequence(name, type_id):
        return {"Sequence": {"id": name, "type_id": type_id}}

    single = ([special(bos, 0)] if add_bos else []) + [sequence("A", 0)] + \
        ([special(eos, 0)] if add_eos else [])
    pair = single + ([special(bos, 1)] if add_bos else []) + [sequence("B", 1)] + \
        ([special(eos, 1)] if add_eos else [])
    special_tokens = {}
    for flag, key, piece in ((add_bos, "tokenizer.ggml.bos_token_id", bos),
                             (add_eos, "tokenizer.ggml.eos_token_id", eos)):
        if flag:
            special_tokens[piece] = {"id": piece, "ids": [meta[key]], "tokens": [piece]}
    post_processor = {"type": "TemplateProcessing", "single": single, "pair": pair,
                      "special_tokens": special_tokens}

    vocab = {}
    for i, p in enumerate(pieces):
        vocab[p] = i  # SentencePiece pieces are unique; were one repeated, the last id wins
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": None, "unk_token": unk,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": derive_merges(pieces, scores, types)},
    }

    arch = meta.get("general.architecture", "llama")
    config = {
        "tokenizer_class": "GemmaTokenizer" if arch.startswith("gemma") else "LlamaTokenizer",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
    }
    if space_prefix:
        config["legacy"] = True
    for name, piece in (("bos_token", bos), ("eos_token", eos), ("unk_token", unk),
                        ("pad_token", pad)):
        if piece is not None:
            config[name] = piece
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    if f"{arch}.context_length" in meta:
        config["model_max_length"] = meta[f"{arch}.context_length"]
    return tokenizer, config


# ---------------------------------------------------------------------------------------
# Checks (these use `tokenizers`).

def load(tokenizer_json):
    from tokenizers import Tokenizer
    return Tokenizer.from_str(json.dumps(tokenizer_json))


def check_fixture(name):
    """The rebuilt tokenizer against the fixture's tokenizer.json and ids.json."""
    from tokenizers import Tokenizer
    d = os.path.join(FIXTURES, name)
    built, _ = rebuild(read_metadata(os.path.join(d, "spm_tokenizer.gguf")))
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        want = json.load(f)
    parts = [k for k in want if k != "model" and want[k] != built[k]]
    parts += [f"model.{k}" for k in want["model"] if want["model"][k] != built["model"][k]]
    rebuilt, original = load(built), Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "ids.json"), encoding="utf-8") as f:
        cases = json.load(f)
    ids_ok = decode_ok = 0
    for case in cases:
        got = rebuilt.encode(case["text"]).ids
        ids_ok += got == case["ids"]
        if got != case["ids"]:
            print(f"  {name}: {case['text']!r}: {got} != {case['ids']}")
        decode_ok += all(rebuilt.decode(case["ids"], skip_special_tokens=skip)
                         == original.decode(case["ids"], skip_special_tokens=skip)
                         for skip in (True, False))
    print(f"{name}: ids {ids_ok}/{len(cases)}, decode {decode_ok}/{len(cases)}, "
          f"{len(built['model']['merges'])} merges; "
          f"differs from tokenizer.json in: {parts or 'nothing'}")
    return ids_ok == decode_ok == len(cases) and not parts


def read_llama_cpp_tests(gguf_path):
    """llama.cpp's tests/test-tokenizer-0 files: GGUF.inp holds the texts separated by
    "\\n__ggml_vocab_test__\\n" (the last one ends with that separator and an empty text is
    not a test), GGUF.out one line of space-separated ids per text. The ids are HF's
    `tokenizer.encode(text, add_special_tokens=False)`: no BOS."""
    with open(gguf_path + ".inp", encoding="utf-8") as f:
        raw = f.read()
    with open(gguf_path + ".out", encoding="utf-8") as f:
        lines = f.read().split("\n")
    texts = raw.split("\n__ggml_vocab_test__\n")
    if texts and texts[-1] == "":
        texts.pop()
    lines = lines[:len(texts)]
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, lines)]


def check_llama_cpp_vocab(gguf_path):
    meta = read_metadata(gguf_path)
    built, _ = rebuild(meta)
    tok = load(built)
    tests = read_llama_cpp_tests(gguf_path)
    ok = 0
    for text, want in tests:
        got = tok.encode(text, add_special_tokens=False).ids
        ok += got == want
        if got != want:
            print(f"  {os.path.basename(gguf_path)}: {text!r}: {got} != {want}")
    print(f"{os.path.basename(gguf_path)}: {ok}/{len(tests)} texts give llama.cpp's ids "
          f"(no BOS); add_space_prefix in GGUF: "
          f"{meta.get('tokenizer.ggml.add_space_prefix', 'absent (true)')}")
    return ok == len(tests)


def main():
    if sys.argv[1:2] == ["--write"]:
        tokenizer, config = rebuild(read_metadata(sys.argv[2]))
        os.makedirs(sys.argv[3], exist_ok=True)
        for name, value in (("tokenizer.json", tokenizer), ("tokenizer_config.json", config)):
            with open(os.path.join(sys.argv[3], name), "w", encoding="utf-8") as f:
                json.dump(value, f, indent=2, ensure_ascii=False)
        return
    good = all([check_fixture("tokenizer_llama_spm"), check_fixture("tokenizer_gemma_spm")])
    vocab = os.path.join(FIXTURES, "vocab_llama_spm", "ggml-vocab-llama-spm.gguf")
    if os.path.exists(vocab):
        good = check_llama_cpp_vocab(vocab) and good
    for extra in sys.argv[1:]:
        good = check_llama_cpp_vocab(extra) and good
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
