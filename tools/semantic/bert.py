"""all-MiniLM-L6-v2 (a 6-layer BERT) in numpy: the teacher Haven's static
embedding is distilled from. Forward pass only, float32, as
sentence-transformers runs it (mean pooling over real tokens, then L2)."""
import numpy as np
from safetensors.numpy import load_file


class Bert:
    def __init__(self, path):
        self.w = load_file(path)
        self.layers = 6
        self.heads = 12

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def hidden(self, ids, mask):
        """ids, mask: (batch, seq) int arrays. Returns (batch, seq, 384)."""
        w = self.w
        b, s = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s][None] + w["embeddings.token_type_embeddings.weight"][0]
        x = self._ln(x, "embeddings.LayerNorm").astype(np.float32)
        bias = ((1.0 - mask[:, None, None, :]) * -1e9).astype(np.float32)
        hd = 384 // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self._lin(x, p + "attention.self.query").reshape(b, s, self.heads, hd).transpose(0, 2, 1, 3)
            k = self._lin(x, p + "attention.self.key").reshape(b, s, self.heads, hd).transpose(0, 2, 3, 1)
            v = self._lin(x, p + "attention.self.value").reshape(b, s, self.heads, hd).transpose(0, 2, 1, 3)
            a = q @ k / np.sqrt(hd) + bias
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            c = (a @ v).transpose(0, 2, 1, 3).reshape(b, s, 384)
            x = self._ln(self._lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = self._lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embed(self, ids, mask):
        h = self.hidden(ids, mask)
        m = mask[:, :, None].astype(np.float32)
        e = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def erf(x):
    """erf by Abramowitz and Stegun 7.1.26 (error under 1.5e-7): numpy has
    none, and GELU needs it."""
    a1, a2, a3, a4, a5, p = 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429, 0.3275911
    s = np.sign(x)
    ax = np.abs(x)
    t = 1.0 / (1.0 + p * ax)
    y = 1.0 - (((((a5 * t + a4) * t) + a3) * t + a2) * t + a1) * t * np.exp(-ax * ax)
    return (s * y).astype(np.float32)
