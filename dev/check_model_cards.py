#!/usr/bin/env python3
"""slayer's model cards load in huggingface_hub and name the base model and layout
(issue 22, acceptance: "Model cards load in huggingface_hub.ModelCard and name the base
model and layout").

    python3 dev/check_model_cards.py [SLAYER_BINARY] [--store WORKSPACE/.slayer]

Without `--store`: runs a small pipeline with the binary on the committed tiny Llama
fixture, one `slayer exec` per stage,

    expand (layout (1+1)x3) -> prune (delete 1) -> train (cpt, 3 steps) -> model.export (bf16)

(training data: a packed Parquet file written here with pyarrow), and loads each output's
`README.md` with `huggingface_hub.ModelCard.load`. Checks: the front matter parses,
`card.data.base_model` is the fixture's name, `library_name` is transformers, the tags
name the steps, `card.data.slayer["steps"]` lists the stages in order with the layout of
the expansion, and the body describes the layout. With `--store`: loads every
`out/*/model/README.md` of a store (e.g. after `slayer run manifests/quickstart.yaml`)
and checks that each names a base model and that each surgery step has what it needs
(expand: a layout; both: block counts).

Needs huggingface_hub and pyarrow (dev only).
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import ModelCard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "stages/tests/fixtures/tiny_llama")


def slayer(binary, kind, out, inputs, sets):
    args = [binary, "exec", kind, "--out", out]
    for k, v in inputs.items():
        args += ["--in", f"{k}={v}"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    # exec lifts a single directory output to --out; train's model is out/model.
    return os.path.join(out, "model") if os.path.isdir(os.path.join(out, "model")) else out


def load(model_dir):
    card = ModelCard.load(os.path.join(model_dir, "README.md"))
    steps = card.data.slayer["steps"]
    return card, steps


def check_card(card, steps, failures, where):
    def check(ok, what):
        if not ok:
            failures.append(f"{where}: {what}")

    check(bool(card.data.base_model), "no base_model")
    check(card.data.library_name == "transformers", f"library_name {card.data.library_name}")
    check("slayer" in (card.data.tags or []), f"tags {card.data.tags}")
    for s in steps:
        if s["kind"] in ("expand", "prune"):
            check("blocks" in s and "source_blocks" in s, f"{s['kind']} step without block counts")
        if s["kind"] == "expand":
            check(bool(s.get("layout")), "expand step without layout")
            check(f"`{s['layout']}`" in card.text, f"body does not name layout {s['layout']}")
    return check


def pipeline(binary):
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "tok")
        os.makedirs(data)
        ids = [[(i * 31 + t * 7) % 256 for t in range(32)] for i in range(8)]
        pq.write_table(pa.table({"input_ids": pa.array(ids, pa.list_(pa.uint32()))}),
                       os.path.join(data, "part-0.parquet"))
        e = slayer(binary, "expand", os.path.join(tmp, "e"), {"model": FIXTURE},
                   {"layout": "(1+1)x3"})
        p = slayer(binary, "prune", os.path.join(tmp, "p"), {"model": e}, {"delete": "1"})
        t = slayer(binary, "train", os.path.join(tmp, "t"), {"model": e, "data": data},
                   {"mode": "cpt", "lr": "0.001", "batch_size": "4", "max_steps": "3",
                    "checkpoint_every": "0"})
        x = slayer(binary, "model.export", os.path.join(tmp, "x"), {"model": t}, {"dtype": "bf16"})
        want = {
            e: ["expand"],
            p: ["expand", "prune"],
            t: ["expand", "train"],
            x: ["expand", "train", "model.export"],
        }
        for model_dir, kinds in want.items():
            where = os.path.relpath(model_dir, tmp)
            card, steps = load(model_dir)
            check = check_card(card, steps, failures, where)
            check(card.data.base_model == "tiny_llama", f"base_model {card.data.base_model!r}")
            check([s["kind"] for s in steps] == kinds, f"steps {[s['kind'] for s in steps]}")
            check(steps[0]["layout"] == "(1+1)x3", f"layout {steps[0].get('layout')!r}")
            check(steps[0]["new_blocks"] == [1, 3, 5], f"new blocks {steps[0].get('new_blocks')}")
            if "train" in kinds:
                tr = steps[kinds.index("train")]
                check(tr["training"]["mode"] == "cpt" and tr["training"]["lr"] == 0.001,
                      f"recipe {tr['training']}")
                check(tr["results"]["steps"] == 3.0, f"results {tr['results']}")
                check("continued-pretraining" in card.data.tags, f"tags {card.data.tags}")
            print(f"{where:8} base_model={card.data.base_model} tags={card.data.tags} "
                  f"steps={[s['kind'] for s in steps]} layout={steps[0]['layout']}")
        print("\n--- the exported model's card ---\n" + open(os.path.join(x, "README.md")).read())
    return failures


def store(path):
    failures = []
    cards = sorted(glob.glob(os.path.join(path, "out", "*", "model", "README.md")))
    if not cards:
        failures.append(f"no out/*/model/README.md under {path}")
    for readme in cards:
        model_dir = os.path.dirname(readme)
        where = os.path.relpath(model_dir, path)
        card, steps = load(model_dir)
        check_card(card, steps, failures, where)
        layouts = [s.get("layout") for s in steps if s.get("layout")]
        print(f"{where}: base_model={card.data.base_model} "
              f"steps={[s['stage'] for s in steps]} layouts={layouts}")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("slayer", nargs="?", default=os.path.join(ROOT, "target/debug/slayer"))
    ap.add_argument("--store", help="a .slayer directory whose model outputs to check")
    opts = ap.parse_args()
    failures = store(opts.store) if opts.store else pipeline(opts.slayer)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("all model cards load and name their base model and layout")


if __name__ == "__main__":
    main()
