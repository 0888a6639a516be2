"""How many tokens a distilled trace costs the default student, with and without the teacher's phrases in
its tokenizer's training corpus. Writes ``benchmarks/results/trace_tokens.json``.

    .venv/bin/python benchmarks/trace_tokens.py runs/bench/distill/train.jsonl
"""

import json
import statistics
import sys
from pathlib import Path

from qponder.models.build import train_tokenizer

texts = [json.loads(line)["text"] for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
res = {"traces": len(texts), "words_mean": round(statistics.fmean(len(t.split()) for t in texts), 1)}
for name, with_phrases in (("with_teacher_phrases", True), ("lexicon_only", False)):
    tok = train_tokenizer(2048, teacher_phrases=with_phrases)
    n = [len(tok(t)["input_ids"]) for t in texts]
    res[name] = {"tokens_mean": round(statistics.fmean(n), 1), "tokens_max": max(n)}
print(res)
Path("benchmarks/results/trace_tokens.json").write_text(json.dumps(res, indent=1))
