"""Writes a CLIP model bundle in the immich layout:

    config.json
    visual/model.onnx            image float32 [N,3,S,S] -> embedding float32 [N,D]
    visual/preprocess_cfg.json
    textual/model.onnx           text int32 [N,ctx]      -> embedding float32 [N,D]
    textual/bpe_simple_vocab*.txt[.gz]

The bundle is assembled in a temporary sibling directory and renamed into
place, so a failed or interrupted export never leaves half a bundle.
"""

import gzip
import json
import math
import os
import re
import shutil
import sys
import tempfile
import zipfile

import torch

from .model import NON_WEIGHT_KEYS, CheckpointError, build_model, random_model

# CLIP's normalisation constants (clip/clip.py, _transform).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(14, 18)  # 17 is the newest torch 1.13 can write.
VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_PATTERN = re.compile(r"^bpe_simple_vocab.*\.txt(\.gz)?$")
# The original tokenizer reads merges[1:49152-256-2+1]: at most this many.
MERGE_CAP = 49152 - 256 - 2
BUNDLE_ENTRIES = ("config.json", "visual", "textual")


class ExportError(Exception):
    pass


def log(message):
    print(f"export-clip: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- checkpoints

def _is_torchscript_archive(path):
    # Released CLIP .pt files are TorchScript zips: they carry constants.pkl
    # (or code/), which plain torch.save state_dict zips lack.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def load_state_dict(path):
    """Returns (state_dict, form) for a TorchScript archive or a torch.save file."""
    if not os.path.isfile(path):
        raise ExportError(f"checkpoint {path}: no such file")
    try:
        if _is_torchscript_archive(path):
            return torch.jit.load(path, map_location="cpu").state_dict(), "torchscript"
        loaded = torch.load(path, map_location="cpu")
    except Exception as err:  # torch raises many types for corrupt files
        raise ExportError(f"checkpoint {path}: cannot load with torch: {err}") from None
    if isinstance(loaded, torch.nn.Module):
        return loaded.state_dict(), "module"
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ExportError(f"checkpoint {path}: holds a {type(loaded).__name__}, not a state_dict")
    for key, value in loaded.items():
        # OpenAI's build_model drops these metadata entries, which may be ints.
        if key in NON_WEIGHT_KEYS:
            continue
        if not isinstance(value, torch.Tensor):
            raise ExportError(f"checkpoint {path}: key {key!r} holds a {type(value).__name__}, not a tensor")
    return loaded, "state_dict"


# ---------------------------------------------------------------- vocabulary

def parse_vocab(data, source):
    """Counts the merges the CLIP tokenizer would use from a vocab file's
    bytes (gzip or plain) and returns (merge_count, plain_bytes)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ExportError(f"vocab {source}: broken gzip data: {err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ExportError(f"vocab {source}: not UTF-8: {err}") from None
    lines = text.split("\n")
    # A final newline ends the last line; it is no empty merge (as in
    # clipd's tokenizer/load.go parseMergeLines).
    if lines and lines[-1] == "":
        lines.pop()
    merges = 0
    for number, line in enumerate(lines[1:], start=2):
        if merges == MERGE_CAP:
            break
        # A blank line among the merges is refused, not skipped: clipd
        # refuses it, and OpenAI's merges[1:48895] counts it as a merge, so
        # skipping it here would write a bundle whose vocab_size neither
        # agrees with.
        if not line.strip():
            raise ExportError(f"vocab {source}:{number}: blank line among the merges (clipd's tokenizer refuses it, "
                              f"and OpenAI's would count it as a merge)")
        if len(line.split()) != 2:
            raise ExportError(f"vocab {source}:{number}: want a merge 'a b', got {line[:60]!r}")
        merges += 1
    if merges == 0:
        raise ExportError(f"vocab {source}: no merge lines after the header")
    return merges, data


def vocab_size_of(merges):
    # 256 byte symbols, the same with </w>, one per merge, SOT and EOT.
    return 512 + merges + 2


def find_vocab(directory):
    textual = os.path.join(directory, "textual")
    if not os.path.isdir(textual):
        return None
    for name in sorted(os.listdir(textual)):
        if VOCAB_PATTERN.match(name):
            return os.path.join(textual, name)
    return None


def stage_vocab(vocab_path, vocab_size, textual_dir):
    """Copies the vocab into the bundle after checking it fits the model."""
    try:
        with open(vocab_path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ExportError(f"vocab {vocab_path}: {err.strerror}") from None
    merges, plain = parse_vocab(raw, vocab_path)
    if vocab_size_of(merges) != vocab_size:
        raise ExportError(
            f"vocab {vocab_path}: {merges} merges give {vocab_size_of(merges)} tokens, "
            f"but the model's token_embedding has {vocab_size} rows")
    name = os.path.basename(vocab_path)
    if VOCAB_PATTERN.match(name):
        target = os.path.join(textual_dir, name)
        with open(target, "wb") as f:
            f.write(raw)
    else:
        target = os.path.join(textual_dir, VOCAB_NAME)
        with gzip.open(target, "wb") as f:
            f.write(plain)
    return target


# ---------------------------------------------------------------- ONNX

class _ImageTower(torch.nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, image):
        return self.clip.encode_image(image)


class _TextTower(torch.nn.Module):
    def __init__(self, clip):
        super().__init__()
        self.clip = clip

    def forward(self, text):
        return self.clip.encode_text(text)


def _export(module, example, input_name, path, opset):
    with torch.no_grad():
        torch.onnx.export(
            module, (example,), path,
            input_names=[input_name], output_names=["embedding"],
            dynamic_axes={input_name: {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset, do_constant_folding=True,
        )


def materialize_shared_initializers(path):
    """torch.onnx deduplicates equal initializers (all-ones LayerNorm scales
    in fresh models) and re-links them through Identity nodes. TensorRT
    wants some weights (LayerNormalization scale and bias, Conv kernels) as
    initializers, so each such Identity becomes a copy of its initializer."""
    import onnx

    model = onnx.load(path)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    kept = []
    copies = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            copies.append(copy)
        else:
            kept.append(node)
    if not copies:
        return 0
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(copies)
    onnx.save(model, path)
    return len(copies)


def export_towers(model, visual_path, textual_path, opset):
    cfg = model.cfg
    # Batch 2 so the tracer cannot fold the batch size into a constant.
    image = torch.zeros(2, 3, cfg.image_resolution, cfg.image_resolution)
    text = torch.zeros(2, cfg.context_length, dtype=torch.int32)
    text[:, 0] = max(cfg.vocab_size - 2, 0)
    text[:, 1] = cfg.eot_token
    # The wrappers in eval mode: torch.onnx.export puts the wrapper's own
    # mode back afterwards, recursively, and a fresh module is in training
    # mode, which would leave the caller's model (and its BatchNorms) there.
    log(f"exporting image tower (opset {opset}) to {visual_path}")
    _export(_ImageTower(model).eval(), image, "image", visual_path, opset)
    materialize_shared_initializers(visual_path)
    log(f"exporting text tower (opset {opset}) to {textual_path}")
    _export(_TextTower(model).eval(), text, "text", textual_path, opset)
    materialize_shared_initializers(textual_path)


def check_graph(path, opset, cfg, kind):
    """Re-reads an exported graph and checks what the Go backends rely on."""
    import onnx
    from onnx import numpy_helper

    onnx.checker.check_model(path, full_check=True)
    graph = onnx.load(path).graph
    ops = [node.op_type for node in graph.node]
    layer_norms = ops.count("LayerNormalization")
    if kind == "visual" and cfg.is_resnet:
        # A ResNet has no LayerNorm; its BatchNorms are folded into the
        # convolutions (inference form), which TensorRT and ONNX Runtime
        # then need not fuse themselves.
        if layer_norms:
            raise ExportError(f"{path}: ModifiedResNet graph has LayerNormalization nodes")
        if "BatchNormalization" in ops:
            raise ExportError(f"{path}: ModifiedResNet graph kept BatchNormalization nodes (not folded)")
    elif opset >= 17 and layer_norms == 0:
        raise ExportError(f"{path}: opset {opset} graph has no LayerNormalization node")
    elif opset < 17 and layer_norms:
        raise ExportError(f"{path}: opset {opset} graph has LayerNormalization nodes")
    if kind == "textual":
        _check_eot_pooling(graph, path, cfg.eot_token)
    return ops


def _check_eot_pooling(graph, path, eot):
    """The pooling must compare the raw int32 ids with the EOT id."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    for node in graph.node:
        if node.op_type != "Equal" or "text" not in node.input:
            continue
        other = node.input[1] if node.input[0] == "text" else node.input[0]
        value = consts.get(other)
        if value is not None and value.size == 1 and value.dtype.kind == "i" and int(value.reshape(-1)[0]) == eot:
            return
    raise ExportError(f"{path}: text graph has no Equal(text, {eot}) node for the EOT pooling")


# ---------------------------------------------------------------- bundle

def bundle_config(model, extra):
    config = model.cfg.bundle_config()
    config["logit_scale"] = float(math.exp(float(model.logit_scale.detach())))
    config.update(extra)
    return config


def preprocess_config(image_size):
    return {
        "size": [image_size, image_size],
        "mode": "RGB",
        "mean": CLIP_MEAN,
        "std": CLIP_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def _check_outdir(outdir, force):
    if not os.path.exists(outdir):
        return
    if not os.path.isdir(outdir):
        raise ExportError(f"output {outdir}: exists and is not a directory")
    entries = os.listdir(outdir)
    foreign = sorted(e for e in entries if e not in BUNDLE_ENTRIES)
    if foreign:
        # The new bundle replaces the whole directory; refuse to drop files
        # that the exporter did not write.
        raise ExportError(f"output {outdir}: holds files that are not part of a bundle: {', '.join(foreign)}")
    existing = [p for p in ("config.json", "visual/model.onnx", "textual/model.onnx")
                if os.path.exists(os.path.join(outdir, p))]
    if existing and not force:
        raise ExportError(f"output {outdir}: already holds a bundle ({', '.join(existing)}); pass --force to replace it")


def write_bundle(model, outdir, vocab_path=None, opset=DEFAULT_OPSET, force=False, extra_config=None):
    """Exports `model` (a clipexport.model.CLIP) as a bundle at outdir."""
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported; use {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}")
    outdir = os.path.abspath(outdir)
    _check_outdir(outdir, force)
    if vocab_path is None:
        vocab_path = find_vocab(outdir)
        if vocab_path is None:
            raise ExportError(
                f"no vocabulary: pass --vocab FILE (CLIP's bpe_simple_vocab_16e6.txt.gz or a file in its "
                f"format), or put one in {os.path.join(outdir, 'textual')}")
        log(f"reusing vocabulary {vocab_path}")

    parent = os.path.dirname(outdir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(outdir)}.tmp-", dir=parent)
    try:
        visual_dir = os.path.join(staging, "visual")
        textual_dir = os.path.join(staging, "textual")
        os.mkdir(visual_dir)
        os.mkdir(textual_dir)
        stage_vocab(vocab_path, model.cfg.vocab_size, textual_dir)
        visual_path = os.path.join(visual_dir, "model.onnx")
        textual_path = os.path.join(textual_dir, "model.onnx")
        export_towers(model, visual_path, textual_path, opset)
        log("checking the exported graphs")
        check_graph(visual_path, opset, model.cfg, "visual")
        check_graph(textual_path, opset, model.cfg, "textual")
        _write_json(os.path.join(visual_dir, "preprocess_cfg.json"), preprocess_config(model.cfg.image_resolution))
        _write_json(os.path.join(staging, "config.json"), bundle_config(model, dict(extra_config or {}, onnx_opset=opset)))
        os.chmod(staging, 0o755)
        _swap_into_place(staging, outdir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"wrote {outdir}")
    return outdir


def _swap_into_place(staging, outdir):
    if not os.path.exists(outdir):
        os.rename(staging, outdir)
        return
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(outdir)}.old-", dir=os.path.dirname(outdir))
    os.rmdir(retired)
    os.rename(outdir, retired)
    try:
        os.rename(staging, outdir)
    except BaseException:
        os.rename(retired, outdir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def export_checkpoint(checkpoint, outdir, vocab_path=None, opset=DEFAULT_OPSET, force=False):
    log(f"loading {checkpoint}")
    state_dict, form = load_state_dict(checkpoint)
    try:
        model = build_model(state_dict)
    except CheckpointError as err:
        raise ExportError(f"checkpoint {checkpoint}: {err}") from None
    log(f"{form} checkpoint: {describe(model.cfg)}")
    return write_bundle(model, outdir, vocab_path, opset, force,
                        {"source": {"checkpoint": os.path.basename(checkpoint), "form": form}})


def export_random(arch, outdir, vocab_path=None, opset=DEFAULT_OPSET, force=False, seed=0):
    try:
        model = random_model(arch, seed)
    except ValueError as err:
        raise ExportError(str(err)) from None
    log(f"random {arch} (seed {seed}): {describe(model.cfg)}")
    note = {"random_init": {"arch": arch, "seed": seed,
                            "note": "random weights for benchmarks; embeddings are meaningless"}}
    return write_bundle(model, outdir, vocab_path, opset, force, note)


def describe(cfg):
    if cfg.is_resnet:
        image = (f"image ModifiedResNet {cfg.image_resolution}px stages {'/'.join(map(str, cfg.vision_layers))} "
                 f"width {cfg.vision_width} heads {cfg.vision_heads}")
    else:
        image = (f"image ViT {cfg.image_resolution}px patch {cfg.vision_patch_size} width {cfg.vision_width} "
                 f"layers {cfg.vision_layers}")
    return (f"{image}; text ctx {cfg.context_length} vocab {cfg.vocab_size} "
            f"width {cfg.transformer_width} layers {cfg.transformer_layers}; embed {cfg.embed_dim}")

