"""Tiny random embedding checkpoints, saved exactly as transformers / sentence-transformers save them, plus golden
vectors from sentence-transformers (torch CPU, float32). Run with the reference venv:

    /work/main/.cache/py-ref/bin/python scripts/gen-embed-fixtures.py test/fixtures/embeddings [name...]

With names, only those fixtures are (re)written (the others keep their bytes).

The tests read the committed output and need no Python. Every model gets its own small trained tokenizer (WordPiece
for BERT, Unigram for XLM-R, byte-level BPE for ModernBERT and Qwen3) so the tokenizer path is compared too.
"""
import json, os, shutil, sys
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders, trainers
from transformers import (BertConfig, BertModel, BertTokenizerFast, XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast,
                          ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast, Qwen3Config, Qwen3Model)
from sentence_transformers import SentenceTransformer, models as st_models

OUT = sys.argv[1]
ONLY = set(sys.argv[2:])
want = lambda *names: not ONLY or any(n in ONLY for n in names)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "A man is eating food.", "A man is riding a horse.",
    "Embeddings map text to vectors so that similar meanings land close together.", "What is the capital of France?",
    "Paris is the capital and largest city of France.", "Machine learning models run on Apple silicon with MLX.",
    "Ünïcödé text, emoji 🙂 and numbers 12345 are tokenized too.", "short", "retrieval query about cats and dogs",
] * 20
TEXTS = ["A man is eating food.", "short", "What is the capital of France? Paris is the capital and largest city of France.",
         "Ünïcödé text 🙂 and numbers 12345", "The quick brown fox jumps over the lazy dog, again and again and again."]
QUERIES = ["capital of France", "what do foxes jump over"]

def train(model, trainer, norm, pre, dec):
    tok = Tokenizer(model)
    if norm: tok.normalizer = norm
    tok.pre_tokenizer = pre
    if dec: tok.decoder = dec
    tok.train_from_iterator(CORPUS, trainer)
    return tok

def wordpiece():
    t = train(models.WordPiece(unk_token="[UNK]"), trainers.WordPieceTrainer(vocab_size=220, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
              normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer(), decoders.WordPiece())
    cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=t, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")

def unigram():
    t = train(models.Unigram(), trainers.UnigramTrainer(vocab_size=200, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>"),
              normalizers.NFKC(), pre_tokenizers.Metaspace(), decoders.Metaspace())
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return XLMRobertaTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")

def bytebpe(specials, template, **kw):
    t = train(models.BPE(), trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
              None, pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel())
    t.post_processor = template(t)
    return PreTrainedTokenizerFast(tokenizer_object=t, **kw)

def save(name, st, golden_extra=None, prompts=None, named_prompts=None):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    st.save(d, safe_serialization=True)
    for junk in ["README.md"]:
        p = os.path.join(d, junk)
        if os.path.exists(p): os.remove(p)
    st2 = SentenceTransformer(d, device="cpu")
    st2.eval()
    tok = st2.tokenizer
    g = {"texts": TEXTS, "token_ids": [tok(t)["input_ids"] for t in TEXTS]}
    with torch.no_grad():
        g["embeddings"] = [[round(float(x), 7) for x in row] for row in st2.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True)]
        g["single"] = [round(float(x), 7) for x in st2.encode([TEXTS[2]], batch_size=1, convert_to_numpy=True)[0]]
        if prompts:
            g["queries"] = QUERIES
            g["query_prompt"] = prompts["query"]
            g["query_embeddings"] = [[round(float(x), 7) for x in row] for row in st2.encode(QUERIES, prompt_name="query", convert_to_numpy=True)]
            instr = "Instruct: Find the animal\nQuery:"
            g["instruct"] = instr
            g["instruct_embeddings"] = [[round(float(x), 7) for x in row] for row in st2.encode(QUERIES, prompt=instr, convert_to_numpy=True)]
        for key, prompt in (named_prompts or {}).items():
            g[f"{key}_prompt"] = prompt
            g[f"{key}_embeddings"] = [[round(float(x), 7) for x in row] for row in st2.encode(QUERIES, prompt=prompt, convert_to_numpy=True)]
        if named_prompts:
            g["queries"] = QUERIES
    json.dump(g, open(os.path.join(OUT, f"{name}.golden.json"), "w"), indent=0)
    print(name, "dims", len(g["embeddings"][0]), "files", sorted(os.listdir(d)))

def st_from(model_dir, pooling, normalize, max_len=64, prompts=None, padding_side=None, dense=None):
    tr = st_models.Transformer(model_dir, max_seq_length=max_len, tokenizer_args={"padding_side": padding_side} if padding_side else {})
    mods = [tr, st_models.Pooling(tr.get_word_embedding_dimension(), pooling_mode=pooling)]
    if dense: mods.append(dense(tr.get_word_embedding_dimension()))
    if normalize: mods.append(st_models.Normalize())
    return SentenceTransformer(modules=mods, device="cpu", prompts=prompts)

def build(name, model, tok, pooling, normalize, prompts=None, padding_side=None, dense=None, named_prompts=None):
    tmp = os.path.join(OUT, f"_{name}_hf")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    st = st_from(tmp, pooling, normalize, prompts=prompts, padding_side=padding_side, dense=dense)
    save(name, st, prompts=prompts, named_prompts=named_prompts)
    shutil.rmtree(tmp)

torch.manual_seed(0)
os.makedirs(OUT, exist_ok=True)

tok = wordpiece()
cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
bert = BertModel(cfg, add_pooling_layer=True).eval()
if want("bert"): build("bert", bert, tok, "mean", True)
torch.manual_seed(1)
if want("bert_cls"): build("bert_cls", BertModel(cfg, add_pooling_layer=False).eval(), tok, "cls", False)

torch.manual_seed(2)
tok = unigram()
cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
if want("xlm_roberta"): build("xlm_roberta", XLMRobertaModel(cfg, add_pooling_layer=False).eval(), tok, "mean", True)

torch.manual_seed(3)
tok = bytebpe(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], lambda t: processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]),
              pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48, max_position_embeddings=128,
                       local_attention=4, global_attn_every_n_layers=3, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3)
if want("modernbert"): build("modernbert", ModernBertModel(cfg).eval(), tok, "mean", True)

torch.manual_seed(4)
tok = bytebpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], lambda t: processors.TemplateProcessing(single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", 0)]),
              eos_token="<|endoftext|>", pad_token="<|endoftext|>")
cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
                  max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True)
prompts = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:", "document": ""}
if want("qwen3_embedding"): build("qwen3_embedding", Qwen3Model(cfg).eval(), tok, "lasttoken", True, prompts=prompts, padding_side="left")

# sentence-transformers Dense after pooling (a projection to 16 dims with Tanh, as BGE/GTE-style heads and static
# embedders add), then Normalize
torch.manual_seed(5)
if want("bert_dense"):
    build("bert_dense", bert, wordpiece(), "cls", True, dense=lambda d: st_models.Dense(d, 16, activation_function=torch.nn.Tanh()))

# NomicBERT (transformers 5 NomicBertModel) with nomic's task prefixes; the tiny config keeps the ST files free of
# prompts, as the Hub repos are, so the prefixes come from mlxk's own table
torch.manual_seed(6)
if want("nomic_bert", "nomic_bert_remote"):
    from transformers import NomicBertConfig, NomicBertModel
    from safetensors.torch import save_file
    tok = wordpiece()
    cfg = NomicBertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                          max_position_embeddings=128, type_vocab_size=2, rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
    nomic = NomicBertModel(cfg).eval()
    build("nomic_bert", nomic, tok, "mean", True, named_prompts={"query": "search_query: ", "document": "search_document: "})
    # the same weights as the Hub's trust_remote_code repos spell them (GPT-2 config names, fused Wqkv, fc11/fc12/fc2)
    src, dst = os.path.join(OUT, "nomic_bert"), os.path.join(OUT, "nomic_bert_remote")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    sd = nomic.state_dict()
    out = {"embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
           "embeddings.token_type_embeddings.weight": sd["embeddings.token_type_embeddings.weight"],
           "emb_ln.weight": sd["embeddings.LayerNorm.weight"], "emb_ln.bias": sd["embeddings.LayerNorm.bias"]}
    for i in range(cfg.num_hidden_layers):
        p, q = f"layers.{i}.", f"encoder.layers.{i}."
        out[q + "attn.Wqkv.weight"] = torch.cat([sd[p + f"self_attn.{x}_proj.weight"] for x in "qkv"], 0)
        out[q + "attn.out_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        for a, b in (("up_proj", "fc11"), ("gate_proj", "fc12"), ("down_proj", "fc2")):
            out[q + f"mlp.{b}.weight"] = sd[p + f"mlp.{a}.weight"]
        for a, b in (("post_attention_layernorm", "norm1"), ("post_mlp_layernorm", "norm2")):
            out[q + f"{b}.weight"], out[q + f"{b}.bias"] = sd[p + f"{a}.weight"], sd[p + f"{a}.bias"]
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    json.dump({"architectures": ["NomicBertModel"], "auto_map": {"AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig",
               "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel"}, "model_type": "nomic_bert",
               "activation_function": "swiglu", "bos_token_id": None, "eos_token_id": None, "n_embd": 32, "n_head": 4, "n_inner": 48,
               "n_layer": 2, "n_positions": 128, "layer_norm_epsilon": 1e-12, "vocab_size": cfg.vocab_size, "type_vocab_size": 2,
               "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False, "rotary_emb_scale_base": None,
               "rotary_scaling_factor": None, "qkv_proj_bias": False, "mlp_fc1_bias": False, "mlp_fc2_bias": False, "prenorm": False,
               "causal": False, "fused_bias_fc": True, "fused_dropout_add_ln": True, "use_flash_attn": True, "use_xentropy": True,
               "max_trained_positions": 2048, "pad_vocab_size_multiple": 64, "torch_dtype": "float32", "transformers_version": "4.34.0"},
              open(os.path.join(dst, "config.json"), "w"), indent=2)
    print("nomic_bert_remote", sorted(os.listdir(dst)))
