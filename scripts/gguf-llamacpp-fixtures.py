"""Write test/fixtures/gguf/tiny-<arch>.llamacpp.F16.gguf with llama.cpp's own convert_hf_to_gguf.py.

Usage (not part of `npm test`; the fixtures are committed):
    bun -e 'import { writeTinyModel } from "./test/support/tiny-models.ts";
            for (const n of ["llama","qwen2","qwen3","phi3","gemma3_text"]) writeTinyModel(n, `/tmp/ggufconv/${n}`, { layout: "hf" })'
    bun -e 'import { writeHfQwen3Moe } from "./test/support/hf-to-gguf.ts"; writeHfQwen3Moe("/tmp/ggufconv/qwen3_moe")'
    LLAMA_CPP=/path/to/llama.cpp  <python with torch, transformers, numpy, sentencepiece> scripts/gguf-llamacpp-fixtures.py /tmp/ggufconv

LLAMA_CPP is a llama.cpp checkout (the fixtures: de3ff815ea7d, the source in node-llama-cpp 3.22.1's bundle).
The tiny models' byte-level tokenizer is not one llama.cpp knows (it checks a hash of the pre-tokenizer), so the
vocab is written with llama.cpp's gpt2 writer under the qwen2 pre-tokenizer name; everything else (tensor names,
permutations, norm shifts, metadata) is the converter's own code. transformers-saved configs carry no
`architectures`, which the converter needs: it is added here.
"""
import json
import os
import runpy
import sys
from pathlib import Path

ARCHS = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
}

lcpp = Path(os.environ["LLAMA_CPP"])
src = Path(sys.argv[1])
out = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "gguf"
sys.path[:0] = [str(lcpp), str(lcpp / "gguf-py")]
import conversion  # noqa: E402
from conversion.base import TextModel  # noqa: E402

TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
_get = conversion.get_model_class


def _model_class(*a, **k):
    cls = _get(*a, **k)
    if isinstance(cls, type) and issubclass(cls, TextModel):
        cls.set_vocab = TextModel._set_vocab_gpt2
    return cls


conversion.get_model_class = _model_class
for name, arch in ARCHS.items():
    cfg_path = src / name / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["architectures"] = [arch]
    cfg_path.write_text(json.dumps(cfg, indent=2))
    sys.argv = ["convert_hf_to_gguf.py", str(src / name), "--outfile", str(out / f"tiny-{name}.llamacpp.F16.gguf"), "--outtype", "f16"]
    try:
        runpy.run_path(str(lcpp / "convert_hf_to_gguf.py"), run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
