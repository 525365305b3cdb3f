#!/usr/bin/env python3
"""A HellaSwag-format JSONL file (lm-eval's hellaswag fields: `activity_label`, `ctx_a`,
`ctx_b`, `endings`, `label`) built from the local PIQA copy, for the lm-eval parity check
of the HellaSwag code path (issue 7) on a machine that cannot download HellaSwag itself.

Each PIQA goal is split into `ctx_a` (first ~60% of its words) and `ctx_b` (the rest, so
that lm-eval's `ctx_b.capitalize()` — which also lower-cases the rest of the string — is
exercised), its two solutions become the endings, and every third item carries WikiHow
markup (` [title]`, `[header]`, `[step]`) in the context and endings so that HellaSwag's
`preprocess` (title -> ". ", bracketed tags removed, double spaces collapsed) matters.
The numbers it yields are NOT HellaSwag scores; they only prove that slayer scores the
HellaSwag format exactly as lm-eval does.

Usage: python3 dev/make_hellaswag_like.py ../shared/data/evals/piqa/piqa.jsonl OUT.jsonl [N]
"""
import json
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    out = []
    for i, line in enumerate(open(src)):
        if len(out) == n:
            break
        d = json.loads(line)
        goal = d["query"].removeprefix("Question:").strip()
        words = goal.split()
        if len(words) < 3:
            continue
        cut = max(1, round(len(words) * 0.6))
        ctx_a, ctx_b = " ".join(words[:cut]), " ".join(words[cut:])
        endings = list(d["choices"])
        if i % 3 == 0:
            ctx_a = f"{ctx_a} [title] How To"
            endings = [f"[step] {e} [header]  Done." for e in endings]
        out.append({"ind": i, "activity_label": "Physical commonsense", "ctx_a": ctx_a,
                    "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}", "endings": endings,
                    "label": str(d["gold"]), "split": "val", "source_id": f"piqa-{i}"})
    with open(dst, "w") as f:
        for d in out:
            f.write(json.dumps(d) + "\n")
    print(f"wrote {len(out)} items to {dst}")


if __name__ == "__main__":
    main()
