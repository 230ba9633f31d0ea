"""Reference outputs from transformers (torch, float32, greedy) for the tiny fixture models.

argv: <out.json> <configs dir> <prompt ids comma-separated> <steps> <name>=<model dir> ...
Each <model dir> holds the transformers layout our generator writes (test/support/tiny-models.ts). For each:
  1. load it strictly (no missing weights; only rotary inv_freq buffers may be unexpected; wrappers may miss
     their vision tower, which the text path never reads),
  2. save_pretrained it again and require the same tensor names and shapes (text part) as ours: our layout
     is the one transformers writes,
  3. keep the config.json transformers 5 wrote (<configs dir>/<name>.json, the "v5 spelling" fixture),
  4. store float32 logits of every prompt position and the greedy continuation, recomputed over the whole
     sequence each step (no cache, so no generate() setting can change the answer; dynamic NTK rope, which
     depends on the cache, decodes with it).
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
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, Mxfp4Config

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


def round_trip(name, model, path):
    """save_pretrained must write our tensor names and shapes; keep the config.json it writes."""
    tmp = tempfile.mkdtemp()
    try:
        model.save_pretrained(tmp)
        ours = {k: v for k, v in tensors(path).items() if "inv_freq" not in k and not VISION.search(k)}
        theirs = {k: v for k, v in tensors(tmp).items() if not VISION.search(k)}
        if ours != theirs:
            diff = sorted(set(ours) ^ set(theirs))
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


result = {"transformers": transformers.__version__, "torch": torch.__version__, "prompt": prompt, "models": {}}
# a subset of models (bun scripts/gen-goldens.ts <name>...) updates their entries and keeps the others
if os.environ.get("MLXK_GOLDENS_MERGE") == "1" and os.path.exists(out_path):
    with open(out_path) as f:
        result["models"] = json.load(f)["models"]
os.makedirs(configs_dir, exist_ok=True)
for spec in models:
    name, path = spec.split("=", 1)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    wrapped = "vision_config" in cfg
    # gpt-oss's MXFP4 experts: dequantized on load (no kernels on this CPU), the layout check is the strict load
    mxfp4 = (cfg.get("quantization_config") or {}).get("quant_method") == "mxfp4"
    cls = AutoModelForImageTextToText if wrapped else AutoModelForCausalLM
    extra = {"quantization_config": Mxfp4Config(dequantize=True)} if mxfp4 else {}
    model, info = cls.from_pretrained(path, dtype=torch.float32, output_loading_info=True, **extra)
    model.eval()
    missing = [k for k in info["missing_keys"] if not (wrapped and VISION.search(k))]
    unexpected = [k for k in info["unexpected_keys"] if "rotary_emb.inv_freq" not in k and not (wrapped and VISION.search(k))]
    if missing or unexpected or info.get("mismatched_keys"):
        raise SystemExit(f"{name}: transformers does not read our layout: missing={missing} unexpected={unexpected} mismatched={info.get('mismatched_keys')}")
    if not mxfp4:
        round_trip(name, model, path)
    # dynamic NTK rope depends on how far the sequence has grown when a key is rotated: decode with the KV
    # cache, as every engine (and transformers' generate) does; everything else recomputes the whole sequence
    rope = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    cached = "dynamic" in str(rope.get("rope_type") or rope.get("type") or "")
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0].float()
        seq = list(prompt)
        tokens = []
        out = model(torch.tensor([prompt]), use_cache=True) if cached else None
        for _ in range(steps):
            if cached:
                nxt = int(out.logits[0, -1].argmax())
                out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
            else:
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
