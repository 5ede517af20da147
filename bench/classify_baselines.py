#!/usr/bin/env python3
"""Baselines for `haven classify --eval`: the better-profanity word list and the
alt-profanity-check model (both from PyPI), scored on the same file the same
way, for "Offensive user" (the category they address).

    pip install better-profanity alt-profanity-check
    python3 bench/classify_baselines.py ../shared/data/eval/dev.jsonl
"""
import json
import sys
import time

from better_profanity import profanity
from profanity_check import predict

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
texts = [r["text"] for r in rows]
profanity.load_censor_words()


def score(name, flags, secs):
    off = [("Offensive user" in r["labels"]) for r in rows]
    benign = [not r["labels"] for r in rows]
    hard = [not r["labels"] and r.get("hard_negative") for r in rows]
    tp = sum(1 for o, f in zip(off, flags) if o and f)
    fn = sum(1 for o, f in zip(off, flags) if o and not f)
    fp = sum(1 for b, f in zip(benign, flags) if b and f)
    recall = tp / (tp + fn)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * precision * recall / (precision + recall)
    print(f"| {name} | {recall:.3f} | {precision:.3f} | {f1:.3f} | {100*fp/sum(benign):.2f}% | "
          f"{100*sum(1 for h, f in zip(hard, flags) if h and f)/sum(hard):.2f}% | {len(texts)/secs:,.0f} |")


print("| baseline (Offensive user) | recall | precision | F1 | benign flagged | hard negatives flagged | texts/s |")
print("|---|---|---|---|---|---|---|")
t = time.perf_counter()
flags = [bool(p) for p in predict(texts)]
score("alt-profanity-check", flags, time.perf_counter() - t)
# better-profanity checks generated spelling variants word by word in pure
# Python: minutes per thousand texts. Pass --all to include it.
if "--all" in sys.argv:
    t = time.perf_counter()
    flags = [profanity.contains_profanity(x) for x in texts]
    score("better-profanity", flags, time.perf_counter() - t)
