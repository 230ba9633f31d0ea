"""Reference side of bench/embed.ts: random BERT-base- and Qwen3-Embedding-0.6B-shaped sentence-transformers models
(made once), and sentence-transformers (torch CPU, float32, the thread count given) embeddings/s on the same weights.

  make <dir>                      write bert_base/ and qwen3_06b/ under <dir> (tokenizers from test/fixtures/embeddings)
  measure <model_dir> <texts.json> <threads> <batch>...   JSON {batch: embeddings_per_s} (wall and per CPU-second) plus the first vector,
                                  torch.set_num_threads(threads)
"""
import json, os, shutil, sys, time
import torch

def make(out):
    from transformers import BertConfig, BertModel, Qwen3Config, Qwen3Model, AutoTokenizer
    from sentence_transformers import SentenceTransformer, models as st_models
    fix = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "embeddings")
    torch.manual_seed(0)
    specs = [
        ("bert_base", "bert", BertModel(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512), add_pooling_layer=False), "mean", None),
        # Qwen3-Embedding-0.6B's transformer (28 layers, 1024 wide, 16/8 heads of 128, MLP 3072); vocab cut to 8192
        # to spare memory — the embedding lookup is not compute, the layers are
        ("qwen3_06b", "qwen3_embedding", Qwen3Model(Qwen3Config(vocab_size=8192, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128, intermediate_size=3072, max_position_embeddings=32768, tie_word_embeddings=True)), "lasttoken", "left"),
    ]
    for name, tok_from, model, pooling, side in specs:
        tmp = os.path.join(out, f"_{name}")
        model.eval().save_pretrained(tmp, safe_serialization=True)
        tok = AutoTokenizer.from_pretrained(os.path.join(fix, tok_from))
        tok.save_pretrained(tmp)
        tr = st_models.Transformer(tmp, max_seq_length=512, tokenizer_args={"padding_side": side} if side else {})
        st = SentenceTransformer(modules=[tr, st_models.Pooling(tr.get_word_embedding_dimension(), pooling_mode=pooling), st_models.Normalize()], device="cpu")
        st.save(os.path.join(out, name), safe_serialization=True)
        shutil.rmtree(tmp)
        print("made", name)

def measure(model_dir, texts_path, threads, batches):
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(threads)
    st = SentenceTransformer(model_dir, device="cpu")
    st.eval()
    texts = json.load(open(texts_path))
    out = {"threads": torch.get_num_threads(), "rates": {}, "cpu_rates": {}}
    with torch.inference_mode():
        for b in batches:
            batch = texts[:b]
            st.encode(batch, batch_size=b)  # warm-up
            reps = max(2, 16 // b)  # as bench/embed.ts: at least two timed calls per batch size
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps):
                v = st.encode(batch, batch_size=b, convert_to_numpy=True)
            out["rates"][str(b)] = reps * b / (time.perf_counter() - t0)
            out["cpu_rates"][str(b)] = reps * b / (time.process_time() - c0)
            if b == batches[-1]:
                out["first"] = [float(x) for x in v[0]]
    print(json.dumps(out))

if sys.argv[1] == "make":
    make(sys.argv[2])
else:
    measure(sys.argv[2], sys.argv[3], int(sys.argv[4]), [int(x) for x in sys.argv[5:]])
