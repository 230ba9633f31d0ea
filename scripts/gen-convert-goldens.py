"""Goldens for `mlxk convert` from mlx-lm's own convert (mlx-lm 0.32.2, MLX 0.32.4), so tests need no Python:

    /work/main/.cache/py-ref/bin/python scripts/gen-convert-goldens.py test/fixtures/convert/mlx_llama <work-dir> test/fixtures/goldens/convert.json

For each case: sha256 of every tensor mlx_lm.convert writes, its config `quantization`, and 12 greedy tokens mlx-lm
generates from the result. Also saves a transformers-saved tiny Qwen3ForCausalLM (bf16) as a second source.
With `--check <dir>...` it instead loads mlxk-converted dirs with mlx-lm and prints their greedy tokens.
"""
import hashlib, json, os, shutil, sys
import mlx.core as mx
from mlx_lm import convert, load
from mlx_lm.generate import generate_step

PROMPT = [72, 101, 108, 108, 111, 32, 116, 105, 110, 121]
CASES = {"q4_g64": dict(q_bits=4, q_group_size=64), "q3_g128": dict(q_bits=3, q_group_size=128), "q8_g32": dict(q_bits=8, q_group_size=32),
         "mxfp4": dict(q_bits=4, q_group_size=32, q_mode="mxfp4"), "q6_g64": dict(q_bits=6, q_group_size=64), "q2_g64": dict(q_bits=2, q_group_size=64),
         "q5_g64": dict(q_bits=5, q_group_size=64)}

def greedy(path):
    model, _ = load(path)
    out = []
    for tok, _ in generate_step(mx.array(PROMPT), model, max_tokens=12, sampler=lambda x: mx.argmax(x, axis=-1)):
        out.append(int(tok))
    return out

def tensors(path):
    hashes = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            for k, v in mx.load(os.path.join(path, f)).items():
                mx.eval(v)
                hashes[k] = [str(v.dtype), list(v.shape), hashlib.sha256(bytes(memoryview(v))).hexdigest()]
    return hashes

if sys.argv[1] == "--check":
    print(json.dumps([greedy(d) for d in sys.argv[2:]]))
    sys.exit(0)

src, work, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(work, exist_ok=True)
hf = os.path.join(os.path.dirname(out), "..", "convert", "hf_qwen3")
if not os.path.exists(os.path.join(hf, "config.json")):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=272, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=128,
                      max_position_embeddings=512, tie_word_embeddings=False, bos_token_id=256, eos_token_id=258, pad_token_id=256)
    m = Qwen3ForCausalLM(cfg).to(torch.bfloat16).eval()
    m.save_pretrained(hf, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(src, f), hf)
golden = {"prompt": PROMPT, "cases": {}}
for source_name, source in [("llama", src), ("hf_qwen3", hf)]:
    for name, kw in CASES.items():
        if source_name == "hf_qwen3" and name not in ("q4_g64", "mxfp4"):
            continue
        dst = os.path.join(work, f"{source_name}-{name}")
        shutil.rmtree(dst, ignore_errors=True)
        convert(source, dst, quantize=True, **kw)
        cfg = json.load(open(os.path.join(dst, "config.json")))
        golden["cases"][f"{source_name}/{name}"] = {"args": kw, "quantization": cfg["quantization"], "tensors": tensors(dst), "tokens": greedy(dst)}
    dst = os.path.join(work, f"{source_name}-f16")
    shutil.rmtree(dst, ignore_errors=True)
    convert(source, dst, dtype="float16")
    golden["cases"][f"{source_name}/f16"] = {"args": {"dtype": "float16"}, "quantization": None, "tensors": tensors(dst), "tokens": greedy(dst)}
json.dump(golden, open(out, "w"), indent=0)
print("cases", list(golden["cases"]))
