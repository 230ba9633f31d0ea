"""Reference outputs from transformers (torch, float32, greedy) for tiny fixture models.

argv: <out.json> <prompt ids comma-separated> <steps> <name>=<model dir> ...
For each model: float32 logits of every prompt position and the greedy continuation, recomputed over the
whole sequence each step (no cache, so no generate() configuration can change the answer). Merged into
<out.json> (existing entries of other models kept). Called by scripts/gen-goldens.ts.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

torch.manual_seed(0)
out_path, prompt_s, steps_s, *models = sys.argv[1:]
prompt = [int(t) for t in prompt_s.split(",")]
steps = int(steps_s)
result = {"prompt": prompt, "models": {}}
if os.path.exists(out_path):
    with open(out_path) as f:
        result = json.load(f)
result["transformers"] = transformers.__version__
result["torch"] = torch.__version__
for spec in models:
    name, path = spec.split("=", 1)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0].float()
        seq = list(prompt)
        tokens = []
        for _ in range(steps):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            tokens.append(nxt)
            seq.append(nxt)
    result["models"][name] = {
        "logits": [[round(float(v), 6) for v in row] for row in logits.tolist()],
        "greedy": tokens,
    }
with open(out_path, "w") as f:
    json.dump(result, f)
