#!/usr/bin/env python3
"""Cross-check `tokenize` shards against the Python ecosystem.

Reads the Parquet shards with pyarrow, checks the documented schema and the `slayer.*`
metadata, re-encodes every document of the corpus with Python `tokenizers` (the same
tokenizer.json) and compares the ids row by row.

    pip install pyarrow tokenizers
    python3 dev/data_check_parquet.py --shards OUT/shards --tokenizer tok.json --corpus corpus.jsonl

Exit status 0 when every row matches.
"""

import argparse
import glob
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True, help="directory of part-*.parquet")
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--corpus", required=True, help="the JSONL corpus that was tokenized")
    ap.add_argument("--text-field", default="text")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.shards, "*.parquet")))
    if not files:
        print(f"no shards in {args.shards}", file=sys.stderr)
        return 1
    want_schema = pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("input_ids", pa.list_(pa.field("item", pa.uint32(), nullable=False)), nullable=False),
            pa.field("n_tokens", pa.uint32(), nullable=False),
        ]
    )
    tok = Tokenizer.from_file(args.tokenizer)
    docs = open(args.corpus, encoding="utf-8")
    rows = mismatches = 0
    for f in files:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow.remove_metadata()
        if not schema.equals(want_schema):
            print(f"{f}: schema\n{schema}\n!= documented\n{want_schema}", file=sys.stderr)
            return 1
        meta = {k.decode(): v.decode() for k, v in (pf.metadata.metadata or {}).items()}
        bos = int(meta["slayer.bos_id"]) if "slayer.bos_id" in meta else None
        eos = int(meta["slayer.eos_id"]) if "slayer.eos_id" in meta else None
        table = pf.read()
        for doc_id, ids, n in zip(
            table.column("doc_id").to_pylist(),
            table.column("input_ids").to_pylist(),
            table.column("n_tokens").to_pylist(),
        ):
            line = docs.readline()
            while line and not line.strip():
                line = docs.readline()
            doc = json.loads(line)
            body = tok.encode(doc[args.text_field], add_special_tokens=False).ids
            # The shards' BOS/EOS policy: strip what the metadata says was added.
            got = ids
            if bos is not None and got[:1] == [bos]:
                got = got[1:]
            if eos is not None and got[-1:] == [eos] and body[-1:] != [eos]:
                got = got[:-1]
            if got != body or n != len(ids):
                mismatches += 1
                if mismatches <= 3:
                    print(f"row {rows} ({doc_id}): ids differ", file=sys.stderr)
            rows += 1
    print(
        f"{len(files)} shards, {rows} rows, schema ok, tokenizer "
        f"{meta.get('slayer.tokenizer.blake3', '?')[:12]}, {mismatches} mismatches"
    )
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
