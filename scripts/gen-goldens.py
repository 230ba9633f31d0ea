"""Reference outputs from mlx-lm for the tiny fixture models (called by scripts/gen-goldens.ts).

argv: <out.json> <prompt ids comma-separated> <steps> <name>=<model dir> ...
For each model: float32 logits of every prompt position (no cache) and the greedy continuation
from mlx_lm.generate.generate_step (KV cache, prefill + decode), as mlx-lm itself runs it.
"""
import json
import os
import sys

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.utils import load_model

out_path, prompt_s, steps_s, *models = sys.argv[1:]
prompt = [int(t) for t in prompt_s.split(",")]
steps = int(steps_s)
result = {"mlx": mx.__version__, "prompt": prompt, "models": {}}
# a subset of models (bun scripts/gen-goldens.ts <name>...) updates their entries and keeps the others
if os.environ.get("MLXK_GOLDENS_MERGE") == "1" and os.path.exists(out_path):
    with open(out_path) as f:
        result["models"] = json.load(f)["models"]
for spec in models:
    name, path = spec.split("=", 1)
    from pathlib import Path

    try:
        model, _ = load_model(Path(path))
        logits = model(mx.array([prompt]))[0].astype(mx.float32)
        tokens = []
        for tok, _ in generate_step(mx.array(prompt), model, max_tokens=steps, sampler=lambda x: mx.argmax(x, axis=-1)):
            tokens.append(int(tok))
    except Exception as e:  # mlx-lm cannot read this one: recorded, the transformers golden serves
        result["models"][name] = {"error": f"{type(e).__name__}: {e}"}
        continue
    result["models"][name] = {
        "logits": [[round(float(v), 6) for v in row] for row in logits.tolist()],
        "greedy": tokens,
    }
with open(out_path, "w") as f:
    json.dump(result, f)
