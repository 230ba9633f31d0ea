"""Reference side of bench/convert.ts: a random Qwen3ForCausalLM (bf16, ~230M parameters, as transformers saves it)
made once, and mlx_lm.convert --quantize timed on it.

  make <dir>                 write the model (tokenizer from test/fixtures/convert/hf_qwen3)
  convert <src> <dst> <bits> run mlx_lm.convert(quantize=True, q_bits=bits) and print {"seconds": …}
"""
import json, os, shutil, sys, time

if sys.argv[1] == "make":
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=32000, hidden_size=1024, num_hidden_layers=12, num_attention_heads=16, num_key_value_heads=8, head_dim=64,
                      intermediate_size=3072, max_position_embeddings=4096, tie_word_embeddings=False)
    Qwen3ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[2], safe_serialization=True)
    fix = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "convert", "hf_qwen3")
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(fix, f), sys.argv[2])
    print("made")
else:
    from mlx_lm import convert
    src, dst, bits = sys.argv[2], sys.argv[3], int(sys.argv[4])
    shutil.rmtree(dst, ignore_errors=True)
    t0 = time.perf_counter()
    convert(src, dst, quantize=True, q_bits=bits, q_group_size=64)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
