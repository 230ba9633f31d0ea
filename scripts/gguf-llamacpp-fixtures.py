"""Write test/fixtures/gguf/tiny-<arch>.llamacpp.F16.gguf with llama.cpp's own convert_hf_to_gguf.py.

Usage (not part of `npm test`; the fixtures are committed):
    bun -e 'import { HF_TINY_ARCHS, writeHfTiny } from "./test/support/hf-tiny.ts";
            for (const a of HF_TINY_ARCHS) writeHfTiny(a, `/tmp/ggufconv/${a}`)'
    LLAMA_CPP=/path/to/llama.cpp  <python with torch, transformers, numpy, sentencepiece> scripts/gguf-llamacpp-fixtures.py /tmp/ggufconv

LLAMA_CPP is a llama.cpp checkout (the fixtures: de3ff815ea7d, the source in node-llama-cpp 3.22.1's bundle).
The tiny models' byte-level tokenizer is not one llama.cpp knows (it checks a hash of the pre-tokenizer), so the
vocab is written with llama.cpp's gpt2 writer under the qwen2 pre-tokenizer name; everything else (tensor names,
permutations, norm shifts, metadata) is the converter's own code.
"""
import os
import runpy
import sys
from pathlib import Path

ARCHS = ["llama", "qwen2", "qwen3", "qwen3_moe", "phi3", "gemma3_text"]  # test/support/hf-tiny.ts HF_TINY_ARCHS

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
for name in ARCHS:
    sys.argv = ["convert_hf_to_gguf.py", str(src / name), "--outfile", str(out / f"tiny-{name}.llamacpp.F16.gguf"), "--outtype", "f16"]
    try:
        runpy.run_path(str(lcpp / "convert_hf_to_gguf.py"), run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
