"""Tiny random embedding checkpoints, saved exactly as transformers / sentence-transformers save them, plus golden
vectors from sentence-transformers (torch CPU, float32). Run with the reference venv:

    /work/main/.cache/py-ref/bin/python scripts/gen-embed-fixtures.py test/fixtures/embeddings

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

def save(name, st, golden_extra=None, prompts=None):
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
    json.dump(g, open(os.path.join(OUT, f"{name}.golden.json"), "w"), indent=0)
    print(name, "dims", len(g["embeddings"][0]), "files", sorted(os.listdir(d)))

def st_from(model_dir, pooling, normalize, max_len=64, prompts=None, padding_side=None):
    tr = st_models.Transformer(model_dir, max_seq_length=max_len, tokenizer_args={"padding_side": padding_side} if padding_side else {})
    mods = [tr, st_models.Pooling(tr.get_word_embedding_dimension(), pooling_mode=pooling)]
    if normalize: mods.append(st_models.Normalize())
    return SentenceTransformer(modules=mods, device="cpu", prompts=prompts)

def build(name, model, tok, pooling, normalize, prompts=None, padding_side=None):
    tmp = os.path.join(OUT, f"_{name}_hf")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    st = st_from(tmp, pooling, normalize, prompts=prompts, padding_side=padding_side)
    save(name, st, prompts=prompts)
    shutil.rmtree(tmp)

torch.manual_seed(0)
os.makedirs(OUT, exist_ok=True)

tok = wordpiece()
cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
build("bert", BertModel(cfg, add_pooling_layer=True).eval(), tok, "mean", True)
torch.manual_seed(1)
build("bert_cls", BertModel(cfg, add_pooling_layer=False).eval(), tok, "cls", False)

torch.manual_seed(2)
tok = unigram()
cfg = XLMRobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
build("xlm_roberta", XLMRobertaModel(cfg, add_pooling_layer=False).eval(), tok, "mean", True)

torch.manual_seed(3)
tok = bytebpe(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], lambda t: processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]),
              pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48, max_position_embeddings=128,
                       local_attention=4, global_attn_every_n_layers=3, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3)
build("modernbert", ModernBertModel(cfg).eval(), tok, "mean", True)

torch.manual_seed(4)
tok = bytebpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], lambda t: processors.TemplateProcessing(single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", 0)]),
              eos_token="<|endoftext|>", pad_token="<|endoftext|>")
cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=64,
                  max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True)
prompts = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:", "document": ""}
build("qwen3_embedding", Qwen3Model(cfg).eval(), tok, "lasttoken", True, prompts=prompts, padding_side="left")
