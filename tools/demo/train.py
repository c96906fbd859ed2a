"""Trains clipd's demo CLIP (the exporter's clipexport.model.CLIP, OpenAI
state_dict keys) contrastively on a `clipd-synth gen` dataset, on CPU."""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from clipexport.model import CLIP, CLIPConfig
from demo import bpe

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def load_images(data_dir, records):
    """All images as one uint8 [N,S,S,3] array, cached next to the data."""
    cache = os.path.join(data_dir, "images.npy")
    if os.path.exists(cache):
        arr = np.load(cache, mmap_mode=None)
        if len(arr) == len(records):
            return arr
    from PIL import Image
    first = np.asarray(Image.open(os.path.join(data_dir, records[0]["image"])).convert("RGB"))
    arr = np.empty((len(records),) + first.shape, dtype=np.uint8)
    for i, r in enumerate(records):
        arr[i] = np.asarray(Image.open(os.path.join(data_dir, r["image"])).convert("RGB"))
        if i % 10000 == 0:
            print(f"loading images {i}/{len(records)}", file=sys.stderr, flush=True)
    np.save(cache, arr)
    return arr


def load_records(data_dir):
    path = os.path.join(data_dir, "captions.jsonl")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                rec = json.loads(line)
                rec["image"], rec["captions"], rec["truth"]
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path}:{lineno}: not a captions record: {e}")
            out.append(rec)
    return out


def to_tensor(uint8_batch):
    x = torch.from_numpy(uint8_batch).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_text_short(model, tokens):
    """encode_text over only the first L positions, L = the longest text
    in the batch. With the causal mask, positions after the end-of-text
    token cannot change the pooled feature, so this equals
    model.encode_text on the full 77 (test_demo_train checks it) at a
    fraction of the cost."""
    eot = model.cfg.eot_token
    length = int((tokens == eot).float().argmax(-1).max()) + 1
    t = tokens[:, :length]
    x = model.token_embedding(t) + model.positional_embedding[:length]
    mask = torch.full((length, length), float("-inf")).triu_(1)
    for block in model.transformer.resblocks:
        x = x + block.attn(block.ln_1(x), mask)
        x = x + block.mlp(block.ln_2(x))
    x = model.ln_final(x)
    idx = (t == eot).float().argmax(-1)
    return x[torch.arange(x.shape[0]), idx] @ model.text_projection


def contrastive_loss(img, txt, tokens, logit_scale, true=None):
    """CLIP's symmetric cross-entropy, except that a caption that is also
    true of another image in the batch is not that image's negative:
    identical captions always count as right answers, and so does every
    [image, caption] pair marked in the boolean matrix `true`. With 42
    colour×shape pairs in a batch of 128, plain CLIP would push apart many
    images of the very same red circle."""
    img = F.normalize(img, dim=-1)
    txt = F.normalize(txt, dim=-1)
    logits = logit_scale.exp() * img @ txt.t()
    same = (tokens.unsqueeze(1) == tokens.unsqueeze(0)).all(-1)
    if true is not None:
        same = same | true
    same = same.float()
    return 0.5 * (torch.sum(-(same / same.sum(1, keepdim=True)) * F.log_softmax(logits, 1), 1).mean()
                  + torch.sum(-(same / same.sum(0, keepdim=True)).t() * F.log_softmax(logits.t(), 1), 1).mean())


COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
KINDS = ("circle", "square", "triangle", "star", "ring", "cross")
PLURALS = {k + "s": k for k in KINDS} | {"crosses": "cross"}
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}


def caption_meaning(caption):
    """What a synth caption claims, as ("pairs", sorted ((colour, kind),
    count) tuple), ("color", c) or ("kind", k); sizes, positions and
    backgrounds are ignored."""
    words = caption.lower().replace(",", " ").replace(".", " ").replace(":", " ").split()
    pairs = {}
    for i in range(len(words) - 1):
        kind = PLURALS.get(words[i + 1], words[i + 1])
        if words[i] in COLORS and kind in KINDS:
            n = next((NUMBERS[w] for w in reversed(words[max(0, i - 2):i]) if w in NUMBERS), 1)
            pairs[words[i], kind] = pairs.get((words[i], kind), 0) + n
    if pairs:
        return "pairs", tuple(sorted(pairs.items()))
    for w in words:
        if w in COLORS:
            return "color", w
    for w in words:
        if PLURALS.get(w, w) in KINDS:
            return "kind", PLURALS.get(w, w)
    return "none", None


def truth_meanings(truth):
    """The meanings of caption_meaning that are true of a scene."""
    pairs = {}
    for s in truth["shapes"]:
        pairs[s["color"], s["kind"]] = pairs.get((s["color"], s["kind"]), 0) + 1
    out = {("pairs", tuple(sorted(pairs.items())))}
    if len(truth["shapes"]) == 1:
        out |= {("color", truth["shapes"][0]["color"]), ("kind", truth["shapes"][0]["kind"])}
    return out


class Meanings:
    """Integer codes of caption meanings, so a batch's truth matrix is a
    few tensor comparisons: true[i, j] = caption j's meaning is among image
    i's true meanings."""

    def __init__(self, records):
        self.codes = {}
        self.caption = [[self.code(caption_meaning(c)) for c in r["captions"]] for r in records]
        self.image = [sorted(self.code(m) for m in truth_meanings(r["truth"])) for r in records]
        bad = [(i, r["captions"][k]) for i, r in enumerate(records) for k, c in enumerate(self.caption[i])
               if c not in self.image[i]]
        width = max(len(x) for x in self.image)
        self.image = torch.tensor([x + [-1] * (width - len(x)) for x in self.image])
        if bad:
            raise SystemExit(f"{len(bad)} captions are not true of their own scene, e.g. record {bad[0][0]}: {bad[0][1]!r}")

    def code(self, meaning):
        return self.codes.setdefault(meaning, len(self.codes))

    def matrix(self, idx, caption_codes):
        imgs = self.image[idx]  # [B, M]
        return (imgs.unsqueeze(1) == caption_codes.view(1, -1, 1)).any(-1)


class ShapeBatches:
    """Batches in which colour is no shortcut: single-shape scenes of only
    one or two colours (all shapes, sizes, backgrounds), each paired with a
    caption that names its shape (never a colour-only one such as "a red
    shape."). The contrastive loss of such a batch falls only if the image
    tower tells shapes apart."""

    def __init__(self, records):
        single = np.array([len(r["truth"]["shapes"]) == 1 for r in records])
        color = np.array([r["truth"]["shapes"][0]["color"] if s else "" for r, s in zip(records, single)])
        self.by_color = [np.flatnonzero(single & (color == c)) for c in COLORS]
        self.captions = [[k for k, c in enumerate(r["captions"]) if caption_meaning(c)[0] != "color"] or
                         list(range(len(r["captions"]))) for r in records]

    def draw(self, rng, batch):
        """(sorted scene indices, caption index per scene)."""
        cols = rng.choice(len(COLORS), size=int(rng.integers(1, 3)), replace=False)
        pool = np.concatenate([self.by_color[c] for c in cols])
        idx = np.sort(rng.choice(pool, size=min(batch, len(pool)), replace=False))
        return idx, [self.captions[i][int(rng.integers(len(self.captions[i])))] for i in idx]


@torch.no_grad()
def recalibrate_batch_norm(model, images, order, batch):
    """Replaces the BatchNorm running statistics of the image tower by their
    average over ordinary batches (every scene kind, in its natural mix).
    During training they follow the last few batches, and shape batches
    (one or two colours) have other statistics than the scenes the model
    is used on; the exported model normalises with these. Returns the
    number of batches run; 0 means the statistics were left as they were."""
    norms = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    batches = len(order) // batch
    # Checked before the statistics are reset: with fewer images than one
    # batch the loop below runs zero times, and the model would be saved
    # with mean 0 and variance 1 in every BatchNorm.
    if not norms or batches == 0:
        return 0
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    for start in range(0, len(order) - batch + 1, batch):
        model.visual(to_tensor(images[np.sort(order[start:start + batch])]))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)
    return batches


def pair_prompts(tok, templates):
    from itertools import product
    colors = ["red", "green", "blue", "yellow", "orange", "purple", "white", "black"]
    kinds = ["circle", "square", "triangle", "star", "ring", "cross"]
    pairs = [f"{c} {k}" for c, k in product(colors, kinds)]
    toks = [[tok.tokenize(t.replace("{}", p)) for t in templates] for p in pairs]
    return pairs, torch.tensor(toks)


@torch.no_grad()
def evaluate(model, images, records, tok, templates):
    """48-way zero-shot top-1 on single-shape scenes, prompt ensemble as in
    CLIP: mean of the normalized text embeddings over templates."""
    model.eval()
    pairs, toks = pair_prompts(tok, templates)
    n_t = toks.shape[1]
    emb = F.normalize(encode_text_short(model, toks.view(-1, toks.shape[-1])), dim=-1)
    emb = F.normalize(emb.view(len(pairs), n_t, -1).mean(1), dim=-1)
    correct = total = held_c = held_n = 0
    col_c = shp_c = 0
    held = {"red star", "green ring", "blue triangle", "yellow cross", "orange square", "purple circle"}
    for i in range(0, len(records), 256):
        x = to_tensor(images[i:i + 256])
        pred = (F.normalize(model.encode_image(x), dim=-1) @ emb.t()).argmax(-1)
        for j, p in enumerate(pred.tolist()):
            s = records[i + j]["truth"]["shapes"][0]
            want = f"{s['color']} {s['kind']}"
            got = pairs[p]
            correct += got == want
            col_c += got.split()[0] == s["color"]
            shp_c += got.split()[1] == s["kind"]
            total += 1
            if want in held:
                held_n += 1
                held_c += got == want
    model.train()
    return {"pair48": correct / total, "color_from48": col_c / total, "shape_from48": shp_c / total,
            "heldout48": held_c / max(held_n, 1), "n": total, "heldout_n": held_n}


def vision_layers(text):
    """argparse type: "3" is a ViT's depth, "1,1,1,1" a ModifiedResNet's
    stage depths (OpenAI's CLIP takes an int or a tuple the same way)."""
    try:
        parts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want N or A,B,C,D, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"a ModifiedResNet has 4 stages, got {len(parts)} in {text!r}")
    return tuple(parts)


def main(argv):
    p = argparse.ArgumentParser(prog="train-demo")
    p.add_argument("--data", required=True, help="clipd-synth gen output (training scenes)")
    p.add_argument("--val", help="clipd-synth gen --eval output, for progress reports")
    p.add_argument("--vocab", required=True)
    p.add_argument("--out", required=True, help="state_dict .pt to write")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (0: fit --minutes)")
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8, help="ViT patch size (ignored for a ModifiedResNet)")
    p.add_argument("--vision-width", type=int, default=128)
    p.add_argument("--vision-layers", type=vision_layers, default=3,
                   help="ViT depth N, or four stage depths A,B,C,D for a ModifiedResNet (CLIP's RN50 tower)")
    p.add_argument("--text-width", type=int, default=128)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--truth-targets", action="store_true",
                   help="captions true of other images in the batch are not their negatives")
    p.add_argument("--init", help="start from this state_dict (same architecture)")
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--shape-batches", type=float, default=0,
                   help="fraction of batches drawn from single-shape scenes of only 1-2 colours, "
                        "with captions that name the shape (colour is then no shortcut)")
    p.add_argument("--val-every", type=int, default=250)
    p.add_argument("--bn-batches", type=int, default=100,
                   help="ordinary batches over which the ResNet's BatchNorm statistics are recomputed at the end")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    tok = bpe.Tokenizer(args.vocab)
    records = load_records(args.data)
    images = load_images(args.data, records)
    if images.shape[1] != args.image_size:
        raise SystemExit(f"{args.data}: images are {images.shape[1]} px, model wants {args.image_size}")
    caps = [[tok.tokenize(c) for c in r["captions"]] for r in records]
    meanings = Meanings(records) if args.truth_targets else None
    shape_batches = ShapeBatches(records) if args.shape_batches else None
    val = None
    if args.val:
        vrec = load_records(args.val)
        val = (load_images(args.val, vrec), vrec)
    templates = ["a photo of one {}.", "one {} in the image.", "the {}."]

    resnet = isinstance(args.vision_layers, tuple)
    cfg = CLIPConfig(embed_dim=args.embed_dim, image_resolution=args.image_size, vision_layers=args.vision_layers,
                     vision_width=args.vision_width, vision_patch_size=None if resnet else args.patch, context_length=77,
                     vocab_size=tok.vocab_size, transformer_width=args.text_width,
                     transformer_layers=args.text_layers)
    model = CLIP(cfg)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu"), strict=True)
    decay = [q for n, q in model.named_parameters() if q.ndim >= 2 and "embedding" not in n]
    no_decay = [q for n, q in model.named_parameters() if not (q.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    print(f"config {cfg}", file=sys.stderr, flush=True)

    total = args.steps
    warmup = args.warmup
    start = time.time()
    cpu_start = time.process_time()  # all threads: the figure a shared machine cannot inflate
    step = 0
    order = rng.permutation(len(records))
    pos = 0
    while True:
        if total and step >= total:
            break
        if args.shape_batches and rng.random() < args.shape_batches:
            idx, choice = shape_batches.draw(rng, args.batch)
        else:
            if pos + args.batch > len(order):
                order, pos = rng.permutation(len(records)), 0
            idx = np.sort(order[pos:pos + args.batch])
            pos += args.batch
            choice = [int(rng.integers(len(caps[i]))) for i in idx]
        tokens = torch.tensor([caps[i][k] for i, k in zip(idx, choice)])
        true = None
        if meanings is not None:
            codes = torch.tensor([meanings.caption[i][k] for i, k in zip(idx, choice)])
            true = meanings.matrix(torch.from_numpy(idx), codes)
        x = to_tensor(images[idx])
        if step == 20 and not total:
            # Fit the run into --minutes from the measured speed; the log
            # records the step count so a rerun with --steps repeats it.
            per = (time.time() - start) / 20
            total = max(100, int(args.minutes * 60 / per))
            print(f"{per:.2f} s/step → {total} steps for {args.minutes} min (rerun with --steps {total})",
                  file=sys.stderr, flush=True)
        lr_total = total or 10 ** 9
        lr = args.lr * min(1, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / lr_total, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = contrastive_loss(model.encode_image(x), encode_text_short(model, tokens), tokens, model.logit_scale, true)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        if step % 25 == 0:
            print(f"step {step}/{total} loss {loss.item():.3f} lr {lr:.2e} scale {model.logit_scale.exp().item():.1f} "
                  f"{time.time() - start:.0f}s wall {time.process_time() - cpu_start:.0f}s cpu",
                  file=sys.stderr, flush=True)
        if val is not None and step % args.val_every == 0:
            print(f"step {step} val {evaluate(model, val[0], val[1], tok, templates)}", file=sys.stderr, flush=True)
        if step % 250 == 0:
            torch.save(model.state_dict(), args.out + ".partial")
            os.replace(args.out + ".partial", args.out)
    if args.bn_batches > 0:
        bn_order = np.random.default_rng(args.seed + 1).permutation(len(records))[:args.bn_batches * args.batch]
        ran = recalibrate_batch_norm(model, images, bn_order, args.batch)
        if ran:
            print(f"BatchNorm statistics recomputed over {ran} batches of {args.batch}", file=sys.stderr, flush=True)
        elif any(isinstance(m, torch.nn.BatchNorm2d) for m in model.visual.modules()):
            print(f"BatchNorm statistics kept from training: {len(bn_order)} records are fewer than one batch of "
                  f"{args.batch}", file=sys.stderr, flush=True)
    torch.save(model.state_dict(), args.out)
    if val is not None:
        print(f"final val {json.dumps(evaluate(model, val[0], val[1], tok, templates))}", file=sys.stderr, flush=True)
    print(f"wrote {args.out} after {step} steps, {time.time() - start:.0f}s wall, "
          f"{time.process_time() - cpu_start:.0f}s cpu", file=sys.stderr, flush=True)
