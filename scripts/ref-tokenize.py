#!/usr/bin/env python3
"""Write reference goldens for the text pipeline tests (test/fixtures/tokenizers/*.json).

The references come from independent implementations: gguf-py (GGUF header), the Rust-backed
`tokenizers` package (SmolLM2 tokenizer rebuilt from GGUF metadata by the recipe in
shared/reference/test-models.md) and transformers' chat-template renderer (Jinja2). Tests compare
against the committed JSON and never need Python.

Setup (throwaway venv, git-ignored):
  python3 -m venv .cache/ref-venv
  .cache/ref-venv/bin/pip install tokenizers==0.22.1 transformers==5.15.1 jinja2==3.1.6 gguf==0.19.0 numpy
  .cache/ref-venv/bin/python scripts/ref-tokenize.py .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import json
import sys
from pathlib import Path

from gguf import GGUFReader, GGUFValueType
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "tokenizers"

# Texts exercising digits, Unicode numerics, whitespace runs, code, emoji (4-byte UTF-8), CJK, combining marks, specials.
TEXTS = [
    "Hello world 123",
    "What is the capital of France?",
    "  leading spaces and trailing   ",
    "line one\nline two\n\n\tindented",
    "def f(x):\n    return x ** 2  # square\n",
    "ied 4 ½ months, 3.14159 and 1,000,000",
    "emoji 🦙🚀 and flags 🇩🇪 and 👨‍👩‍👧",
    "中文测试：你好，世界！日本語のテキスト",
    "Cửa Việt — naïve café, Ünïcödé",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end",
    "don't won't I'm we'll they've",
    "",
    " ",
]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is the capital of France?"}],
    "system": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi!"},
    ],
    "multi": [
        {"role": "user", "content": "  2+2?  "},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    "think_tail": [
        {"role": "user", "content": "Why?"},
        {"role": "assistant", "content": "<think>\nbecause\n</think>\n\nBecause."},
    ],
    "not_alternating": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ],
}


def field_value(f):
    t = f.types[0]
    if t == GGUFValueType.ARRAY:
        return None
    return f.contents()


def header_golden(path):
    r = GGUFReader(path)
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        entry = {"type": int(f.types[0])}
        if f.types[0] == GGUFValueType.ARRAY:
            entry["array_type"] = int(f.types[1]) if len(f.types) > 1 else None
            vals = f.contents()
            entry["length"] = len(vals)
            entry["head"] = vals[:3]
            entry["tail"] = vals[-2:]
        else:
            v = f.contents()
            entry["value"] = v
        meta[name] = entry
    tensors = [
        {
            "name": t.name,
            "shape": [int(x) for x in reversed(t.shape.tolist())],
            "type": int(t.tensor_type),
            "offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
        }
        for t in r.tensors
    ]
    return {"metadata": meta, "tensors": tensors, "data_offset": int(r.data_offset)}


def smollm2_tokenizer(path):
    r = GGUFReader(path)
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    template = r.fields["tokenizer.chat_template"].contents()
    return tok, template


def render(template, messages, **kw):
    out, _ = render_jinja_template(conversations=[messages], chat_template=template, **kw)
    return out[0]


def main():
    gguf_path = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    OUT.mkdir(parents=True, exist_ok=True)
    header = header_golden(gguf_path)
    (OUT / "smollm2-gguf-header.json").write_text(json.dumps(header, indent=1, ensure_ascii=False) + "\n")

    tok, smol_template = smollm2_tokenizer(gguf_path)
    cases = []
    for text in TEXTS + [render(smol_template, CONVERSATIONS["system"], add_generation_prompt=True)]:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    (OUT / "smollm2-encode.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")

    templates = {"smollm2": smol_template}
    for p in sorted((OUT / "templates").glob("*.jinja")):
        templates[p.stem] = p.read_text()
    renders = []
    for tname, template in templates.items():
        for cname, conv in CONVERSATIONS.items():
            variants = [{"add_generation_prompt": True}, {"add_generation_prompt": False}]
            if tname.startswith("qwen3"):
                variants += [{"add_generation_prompt": True, "enable_thinking": False}]
            for kw in variants:
                try:
                    text = render(template, conv, bos_token="<s>", eos_token="</s>", **kw)
                    renders.append({"template": tname, "conversation": cname, "options": kw, "text": text})
                except Exception as e:  # raise_exception() in the template
                    renders.append({"template": tname, "conversation": cname, "options": kw, "error": str(e)})
    (OUT / "chat-templates.json").write_text(
        json.dumps({"conversations": CONVERSATIONS, "renders": renders}, indent=1, ensure_ascii=False) + "\n"
    )
    print(f"wrote {len(cases)} encodings, {len(renders)} renders, header with {len(header['tensors'])} tensors")


if __name__ == "__main__":
    main()
