"""Reference outputs from transformers (torch, float32, greedy) for the tiny fixture models.

argv: <out.json> <configs dir> <prompt ids comma-separated> <steps> <name>=<model dir> ...
Each <model dir> holds the transformers layout our generator writes (test/support/tiny-models.ts). For each:
  1. load it strictly (no missing weights; only rotary inv_freq buffers may be unexpected; wrappers may miss
     their vision tower, which the text path never reads),
  2. save_pretrained it again and require the same tensor names and shapes (text part) as ours: our layout
     is the one transformers writes,
  3. keep the config.json transformers 5 wrote (<configs dir>/<name>.json, the "v5 spelling" fixture),
  4. store float32 logits of every prompt position and the greedy continuation, recomputed over the whole
     sequence each step (no cache, so no generate() setting can change the answer).
Called by scripts/gen-goldens.ts.
"""
import json
import os
import re
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

torch.manual_seed(0)
out_path, configs_dir, prompt_s, steps_s, *models = sys.argv[1:]
prompt = [int(t) for t in prompt_s.split(",")]
steps = int(steps_s)
VISION = re.compile(r"(vision_tower|multi_modal_projector)")


def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "pt") as s:
                for k in s.keys():
                    out[k] = list(s.get_slice(k).get_shape())
    return out


result = {"transformers": transformers.__version__, "torch": torch.__version__, "prompt": prompt, "models": {}}
os.makedirs(configs_dir, exist_ok=True)
for spec in models:
    name, path = spec.split("=", 1)
    with open(os.path.join(path, "config.json")) as f:
        wrapped = "vision_config" in json.load(f)
    cls = AutoModelForImageTextToText if wrapped else AutoModelForCausalLM
    model, info = cls.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    model.eval()
    missing = [k for k in info["missing_keys"] if not (wrapped and VISION.search(k))]
    unexpected = [k for k in info["unexpected_keys"] if "rotary_emb.inv_freq" not in k and not (wrapped and VISION.search(k))]
    if missing or unexpected or info.get("mismatched_keys"):
        raise SystemExit(f"{name}: transformers does not read our layout: missing={missing} unexpected={unexpected} mismatched={info.get('mismatched_keys')}")
    tmp = tempfile.mkdtemp()
    try:
        model.save_pretrained(tmp)
        ours = {k: v for k, v in tensors(path).items() if "inv_freq" not in k and not VISION.search(k)}
        theirs = {k: v for k, v in tensors(tmp).items() if not VISION.search(k)}
        if ours != theirs:
            diff = sorted(set(ours.items()) ^ set((k, tuple(v)) for k, v in theirs.items())) if False else sorted(set(ours) ^ set(theirs))
            bad = [k for k in ours if k in theirs and ours[k] != theirs[k]]
            raise SystemExit(f"{name}: save_pretrained writes other tensors: names {diff[:8]} shapes {bad[:8]}")
        with open(os.path.join(tmp, "config.json")) as f:
            saved = json.load(f)
        saved.pop("transformers_version", None)
        with open(os.path.join(configs_dir, f"{name}.json"), "w") as f:
            json.dump(saved, f, indent=2, sort_keys=True)
            f.write("\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
    print(f"{name}: ok", file=sys.stderr)
with open(out_path, "w") as f:
    json.dump(result, f)
