"""Tests of tools/export-clip and the clipexport CLIP module.

Run: /usr/bin/python3 -m unittest discover -s tools/tests
Needs torch and onnx (Debian's python3) and the reference data
($CLIPD_SHARED, else ../shared next to the repository).
"""

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(TESTS)
REPO = os.path.dirname(TOOLS)
EXPORT_CLIP = os.path.join(TOOLS, "export-clip")
sys.path.insert(0, TOOLS)
sys.path.insert(0, TESTS)

try:
    import numpy as np
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper

    from clipexport import bundle
    from clipexport.model import (ARCHITECTURES, CLIP, CLIPConfig, build_model, config_from_state_dict, pool_eot,
                                  random_model)
    MISSING = None
except ImportError as err:  # the first python3 on PATH may lack torch
    MISSING = f"{err}; run with Debian's /usr/bin/python3 (torch 1.13, onnx, numpy)"

from minibpe import MiniBPE, ascii_only

SHARED = os.environ.get("CLIPD_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
REFERENCE = os.path.join(SHARED, "reference")
MODEL_DIR = os.path.join(REFERENCE, "model")
# The ModifiedResNet reference: its own checkpoints and expected.json, on
# the images and tensors of reference/.
RN_MODEL_DIR = os.path.join(SHARED, "reference-rn", "model")
VOCAB = os.path.join(SHARED, "clip", "bpe_simple_vocab_16e6.txt.gz")
CHECKPOINTS = {"state": os.path.join(MODEL_DIR, "tiny-vit-state.pt"),
               "jit": os.path.join(MODEL_DIR, "tiny-vit-jit.pt")}
RN_CHECKPOINTS = {"state": os.path.join(RN_MODEL_DIR, "tiny-rn-state.pt"),
                  "jit": os.path.join(RN_MODEL_DIR, "tiny-rn-jit.pt")}
NEEDED = [VOCAB, os.path.join(MODEL_DIR, "expected.json"), os.path.join(RN_MODEL_DIR, "expected.json"),
          os.path.join(REFERENCE, "tokenizer.jsonl")] + list(CHECKPOINTS.values()) + list(RN_CHECKPOINTS.values())

TINY_EMBED = 64
TINY_LAYERS = 2
# reference-rn: stages (1,1,1,1) at width 16, 8 pooling heads, 224 px.
TINY_RN_STAGES = (1, 1, 1, 1)
TINY_RN_WIDTH = 16


def setUpModule():
    if MISSING:
        raise unittest.SkipTest(f"torch/onnx unavailable: {MISSING}")
    absent = [p for p in NEEDED if not os.path.exists(p)]
    if absent:
        raise unittest.SkipTest(f"reference data missing (set CLIPD_SHARED): {', '.join(absent)}")


def load_expected(model_dir=None):
    with open(os.path.join(model_dir or MODEL_DIR, "expected.json")) as f:
        return json.load(f)


def reference_image(name):
    path = os.path.join(REFERENCE, name + ".f32")
    return np.fromfile(path, dtype="<f4").reshape(3, 224, 224)


def load_checkpoint(form, checkpoints=None):
    path = (checkpoints or CHECKPOINTS)[form]
    if form == "jit":
        return torch.jit.load(path, map_location="cpu").state_dict()
    return torch.load(path, map_location="cpu")


def min_cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()


def run_export(*args):
    return subprocess.run([sys.executable, EXPORT_CLIP, *args], capture_output=True, text=True, timeout=600)


class MiniBPETest(unittest.TestCase):
    """expected.json's texts have no tokenizer.jsonl rows, so the tests
    tokenize them with MiniBPE; this proves it on every ASCII reference row."""

    def test_matches_every_ascii_reference_row(self):
        bpe = MiniBPE(VOCAB)
        checked = 0
        with open(os.path.join(REFERENCE, "tokenizer.jsonl")) as f:
            for number, line in enumerate(f, start=1):
                row = json.loads(line)
                if not ascii_only(row["text"]):
                    continue
                checked += 1
                self.assertEqual(bpe.encode(row["text"]), row["ids"], f"tokenizer.jsonl:{number}")
                self.assertEqual(bpe.tokens77(row["text"]), row["tokens77"], f"tokenizer.jsonl:{number}")
        self.assertGreater(checked, 500)


class ReferenceParityTest(unittest.TestCase):
    model_dir, checkpoints = MODEL_DIR, CHECKPOINTS

    @classmethod
    def setUpClass(cls):
        cls.expected = load_expected(cls.model_dir)
        bpe = MiniBPE(VOCAB)
        cls.tokens = torch.tensor([bpe.tokens77(t) for t in cls.expected["texts"]], dtype=torch.int32)
        cls.images = torch.from_numpy(np.stack([reference_image(item["image"]) for item in cls.expected["images"]]))

    def check_form(self, form):
        model = build_model(load_checkpoint(form, self.checkpoints))
        self.assertEqual(model.cfg.embed_dim, TINY_EMBED)
        with torch.no_grad():
            text = model.encode_text(self.tokens)
            image = model.encode_image(self.images)
            # int64 ids, as OpenAI's tokenizer returns, must give the same result.
            text64 = model.encode_text(self.tokens.long())
        want_text = torch.tensor(self.expected["text_embeds"])
        want_image = torch.tensor([item["image_embed"] for item in self.expected["images"]])
        self.assertGreaterEqual(min_cosine(text, want_text), 0.99999)
        self.assertGreaterEqual(min_cosine(image, want_image), 0.99999)
        self.assertTrue(torch.equal(text, text64))
        self.assertAlmostEqual(model.logit_scale.exp().item(), self.expected["logit_scale"], places=4)
        # The zero-shot probabilities with the checkpoint's own scale.
        logits = model.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).t()
        want_probs = torch.tensor([item["probs"] for item in self.expected["images"]])
        self.assertLess((logits.softmax(-1) - want_probs).abs().max().item(), 1e-4)
        return model

    def test_state_dict_checkpoint(self):
        self.check_form("state")

    def test_torchscript_checkpoint(self):
        self.check_form("jit")

    def test_state_dict_round_trip_is_strict(self):
        model = build_model(load_checkpoint("state", self.checkpoints))
        original = load_checkpoint("state", self.checkpoints)
        self.assertEqual(set(model.state_dict()), set(original))


class ResNetReferenceParityTest(ReferenceParityTest):
    """The same checks on the ModifiedResNet reference (reference-rn)."""
    model_dir, checkpoints = RN_MODEL_DIR, RN_CHECKPOINTS

    def check_form(self, form):
        model = super().check_form(form)
        self.assertEqual(model.cfg.vision_layers, TINY_RN_STAGES)
        self.assertEqual(model.cfg.vision_width, TINY_RN_WIDTH)
        self.assertEqual(model.cfg.vision_heads, 8)
        self.assertEqual(model.cfg.image_resolution, 224)
        self.assertIsNone(model.cfg.vision_patch_size)
        # Inference form: BatchNorm uses the checkpoint's running statistics.
        self.assertFalse(model.training)
        bn = model.visual.layer2[0].bn2
        want = load_checkpoint(form, self.checkpoints)["visual.layer2.0.bn2.running_var"].float()
        self.assertTrue(torch.equal(bn.running_var, want))
        self.assertFalse(torch.allclose(want, torch.ones_like(want)))


class PoolingTest(unittest.TestCase):
    def test_picks_first_eot_for_any_vocabulary(self):
        eot = 99
        features = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
        text = torch.tensor([[98, 5, eot, 0, 0, 0],
                             [98, 5, 7, 8, 9, eot]], dtype=torch.int32)
        pooled = pool_eot(features, text, eot)
        self.assertTrue(torch.equal(pooled[0], features[0, 2]))
        self.assertTrue(torch.equal(pooled[1], features[1, 5]))

    def test_small_vocabulary_pools_at_its_own_eot(self):
        cfg = CLIPConfig(32, 32, 1, 64, 16, 77, 600, 64, 1)
        torch.manual_seed(0)
        model = CLIP(cfg).eval()
        self.assertEqual(cfg.eot_token, 599)
        text = torch.zeros(1, 77, dtype=torch.int32)
        text[0, :4] = torch.tensor([598, 10, 11, 599])
        after_eot = text.clone()
        after_eot[0, 5] = 20
        before_eot = text.clone()
        before_eot[0, 2] = 12
        with torch.no_grad():
            base = model.encode_text(text)
            # Attention is causal, so only tokens up to the pooled EOT count.
            self.assertTrue(torch.equal(base, model.encode_text(after_eot)))
            self.assertFalse(torch.allclose(base, model.encode_text(before_eot)))


def graph_of(path):
    return onnx.load(path).graph


def io_signature(value):
    tensor = value.type.tensor_type
    return value.name, tensor.elem_type, [d.dim_param or d.dim_value for d in tensor.shape.dim]


def equal_against_text(graph):
    """Integer constants that the graph input `text` is compared with."""
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    found = []
    for node in graph.node:
        if node.op_type == "Equal" and "text" in node.input:
            other = [i for i in node.input if i != "text"][0]
            found.append(consts[other].reshape(-1).tolist())
    return found


class ExportedBundleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="export-clip-test-")
        cls.bundles = {}
        cls.logs = {}
        for name, checkpoint, opset in (("jit17", CHECKPOINTS["jit"], "17"),
                                        ("state17", CHECKPOINTS["state"], "17"),
                                        ("state16", CHECKPOINTS["state"], "16")):
            out = os.path.join(cls.tmp, name)
            result = run_export(checkpoint, out, "--vocab", VOCAB, "--opset", opset)
            if result.returncode != 0:
                raise AssertionError(f"export {name} failed: {result.stderr}")
            cls.bundles[name] = out
            cls.logs[name] = result.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_layout_and_config(self):
        expected = load_expected()
        for name, out in self.bundles.items():
            with self.subTest(bundle=name):
                for rel in ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json",
                            "textual/model.onnx", "textual/bpe_simple_vocab_16e6.txt.gz"):
                    self.assertTrue(os.path.isfile(os.path.join(out, rel)), rel)
                with open(os.path.join(out, "config.json")) as f:
                    config = json.load(f)
                self.assertEqual(config["embed_dim"], TINY_EMBED)
                self.assertEqual(config["vision_cfg"], {"image_size": 224, "layers": 2, "width": 128,
                                                        "patch_size": 32, "heads": 2})
                self.assertEqual(config["text_cfg"], {"context_length": 77, "vocab_size": 49408,
                                                      "width": 128, "heads": 2, "layers": 2})
                self.assertAlmostEqual(config["logit_scale"], expected["logit_scale"], places=4)
                with open(os.path.join(out, "visual", "preprocess_cfg.json")) as f:
                    pre = json.load(f)
                self.assertEqual(pre, {"size": [224, 224], "mode": "RGB",
                                       "mean": [0.48145466, 0.4578275, 0.40821073],
                                       "std": [0.26862954, 0.26130258, 0.27577711],
                                       "interpolation": "bicubic", "resize_mode": "shortest",
                                       "fill_color": 0})
                with open(VOCAB, "rb") as a, open(os.path.join(out, "textual", "bpe_simple_vocab_16e6.txt.gz"), "rb") as b:
                    self.assertEqual(a.read(), b.read())
                self.assertEqual(os.listdir(self.tmp).count(name), 1)
        self.assertFalse([e for e in os.listdir(self.tmp) if ".tmp-" in e or ".old-" in e])

    def test_graphs_pass_checker_with_dynamic_batch(self):
        for name, out in self.bundles.items():
            for tower, input_sig in (("visual", ("image", onnx.TensorProto.FLOAT, ["batch", 3, 224, 224])),
                                     ("textual", ("text", onnx.TensorProto.INT32, ["batch", 77]))):
                with self.subTest(bundle=name, tower=tower):
                    path = os.path.join(out, tower, "model.onnx")
                    onnx.checker.check_model(path, full_check=True)
                    graph = graph_of(path)
                    self.assertEqual([io_signature(v) for v in graph.input], [input_sig])
                    self.assertEqual([io_signature(v) for v in graph.output],
                                     [("embedding", onnx.TensorProto.FLOAT, ["batch", TINY_EMBED])])

    def test_opset_and_layer_norm(self):
        # Visual: ln_pre, 2 per block, ln_post. Text: 2 per block, ln_final.
        want = {"visual": 2 * TINY_LAYERS + 2, "textual": 2 * TINY_LAYERS + 1}
        for name, out in self.bundles.items():
            opset = int(name[-2:])
            for tower in ("visual", "textual"):
                with self.subTest(bundle=name, tower=tower):
                    model = onnx.load(os.path.join(out, tower, "model.onnx"))
                    self.assertEqual([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")], [opset])
                    count = [n.op_type for n in model.graph.node].count("LayerNormalization")
                    self.assertEqual(count, want[tower] if opset == 17 else 0)

    def test_text_pools_with_equal_against_eot(self):
        for name, out in self.bundles.items():
            with self.subTest(bundle=name):
                graph = graph_of(os.path.join(out, "textual", "model.onnx"))
                self.assertEqual(equal_against_text(graph), [[49407]])
                ops = {n.output[0]: n for n in graph.node}
                argmax = [n for n in graph.node if n.op_type == "ArgMax"]
                self.assertEqual(len(argmax), 1)
                # ArgMax runs on the float mask (TensorRT 8.x: FP32/FP16 only), not on the ids.
                cast = ops[argmax[0].input[0]]
                self.assertEqual(cast.op_type, "Cast")
                self.assertEqual(ops[cast.input[0]].op_type, "Equal")
                # Ops that TensorRT 8.5 lacks or handles poorly must not appear.
                self.assertFalse({n.op_type for n in graph.node} & {"If", "Loop", "NonZero", "Identity"})

    def test_weights_are_float32_and_match_checkpoint(self):
        graph = graph_of(os.path.join(self.bundles["state17"], "visual", "model.onnx"))
        conv = [t for t in graph.initializer if t.name.endswith("conv1.weight")]
        self.assertEqual(len(conv), 1)
        self.assertEqual(conv[0].data_type, onnx.TensorProto.FLOAT)
        want = load_checkpoint("state")["visual.conv1.weight"].float().numpy()
        np.testing.assert_array_equal(numpy_helper.to_array(conv[0]), want)

    def test_progress_goes_to_stderr(self):
        self.assertIn("exporting image tower", self.logs["jit17"])
        self.assertIn("torchscript checkpoint", self.logs["jit17"])


_RN_TMP = None
_RN_BUNDLES = None


def resnet_bundles():
    """The ModifiedResNet reference exported from both forms at opsets 17
    and 16, once per test run: ({name: dir}, {name: export log})."""
    global _RN_TMP, _RN_BUNDLES
    if _RN_BUNDLES is None:
        _RN_TMP = tempfile.mkdtemp(prefix="export-clip-rn-test-")
        bundles, logs = {}, {}
        for form in ("jit", "state"):
            for opset in ("17", "16"):
                name = form + opset
                out = os.path.join(_RN_TMP, name)
                result = run_export(RN_CHECKPOINTS[form], out, "--vocab", VOCAB, "--opset", opset)
                if result.returncode != 0:
                    raise AssertionError(f"export {name} failed: {result.stderr}")
                bundles[name], logs[name] = out, result.stderr
        _RN_BUNDLES = bundles, logs
    return _RN_BUNDLES


def tearDownModule():
    if _RN_TMP is not None:
        shutil.rmtree(_RN_TMP, ignore_errors=True)


class ResNetExportedBundleTest(unittest.TestCase):
    """tools/export-clip on the ModifiedResNet reference, both forms, both
    opsets. ONNX Runtime parity: ResNetCLIParityTest below (through
    `clipd embed` and `clipd classify`) and the Go test
    engine/onnxrt TestResNetReferenceParity."""

    @classmethod
    def setUpClass(cls):
        cls.bundles, cls.logs = resnet_bundles()

    def test_config_and_preprocess(self):
        expected = load_expected(RN_MODEL_DIR)
        for name, out in self.bundles.items():
            with self.subTest(bundle=name):
                with open(os.path.join(out, "config.json")) as f:
                    config = json.load(f)
                self.assertEqual(config["embed_dim"], TINY_EMBED)
                self.assertEqual(config["vision_cfg"], {"image_size": 224, "layers": 4, "stage_layers": [1, 1, 1, 1],
                                                        "width": TINY_RN_WIDTH, "heads": 8})
                self.assertEqual(config["text_cfg"], {"context_length": 77, "vocab_size": 49408,
                                                      "width": 128, "heads": 2, "layers": 2})
                self.assertAlmostEqual(config["logit_scale"], expected["logit_scale"], places=4)
                with open(os.path.join(out, "visual", "preprocess_cfg.json")) as f:
                    self.assertEqual(json.load(f)["size"], [224, 224])
        self.assertIn("image ModifiedResNet 224px stages 1/1/1/1 width 16 heads 8", self.logs["jit17"])

    def test_visual_graph(self):
        for name, out in self.bundles.items():
            with self.subTest(bundle=name):
                path = os.path.join(out, "visual", "model.onnx")
                onnx.checker.check_model(path, full_check=True)
                model = onnx.load(path)
                graph = model.graph
                self.assertEqual([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
                                 [int(name[-2:])])
                self.assertEqual([io_signature(v) for v in graph.input],
                                 [("image", onnx.TensorProto.FLOAT, ["batch", 3, 224, 224])])
                self.assertEqual([io_signature(v) for v in graph.output],
                                 [("embedding", onnx.TensorProto.FLOAT, ["batch", TINY_EMBED])])
                ops = [n.op_type for n in graph.node]
                # Stem 3 + per block 3 + one shortcut per stage: 19 convolutions,
                # each with its BatchNorm folded in (a bias, no BN node).
                self.assertEqual(ops.count("Conv"), 3 + 3 * 4 + 4)
                self.assertTrue(all(len(n.input) == 3 for n in graph.node if n.op_type == "Conv"))
                # Stem pool, and per strided stage the block's pool and its shortcut's.
                self.assertEqual(ops.count("AveragePool"), 1 + 2 * 3)
                self.assertEqual(ops.count("Softmax"), 1)
                self.assertFalse({"BatchNormalization", "LayerNormalization", "Pad", "If", "Loop", "NonZero",
                                  "Identity"} & set(ops))
                self.assertFalse([t.name for t in graph.initializer if "running" in t.name])

    def test_folded_batch_norm_matches_checkpoint(self):
        # The stem's first convolution: weight * gamma / sqrt(var + eps),
        # bias beta - mean * gamma / sqrt(var + eps).
        state = {k: v.float() for k, v in load_checkpoint("state", RN_CHECKPOINTS).items()}
        graph = graph_of(os.path.join(self.bundles["state17"], "visual", "model.onnx"))
        inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[0] == "image")
        scale = state["visual.bn1.weight"] / torch.sqrt(state["visual.bn1.running_var"] + 1e-5)
        want_w = (state["visual.conv1.weight"] * scale.view(-1, 1, 1, 1)).numpy()
        want_b = (state["visual.bn1.bias"] - state["visual.bn1.running_mean"] * scale).numpy()
        np.testing.assert_allclose(inits[conv.input[1]], want_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(inits[conv.input[2]], want_b, rtol=1e-5, atol=1e-6)

    def test_text_tower_as_for_vit(self):
        for name, out in self.bundles.items():
            with self.subTest(bundle=name):
                model = onnx.load(os.path.join(out, "textual", "model.onnx"))
                count = [n.op_type for n in model.graph.node].count("LayerNormalization")
                self.assertEqual(count, 2 * TINY_LAYERS + 1 if name.endswith("17") else 0)
                self.assertEqual(equal_against_text(model.graph), [[49407]])


def onnxruntime_library():
    lib = os.environ.get("CLIPD_ONNXRUNTIME_LIB") or os.path.join(REPO, "build", "onnxruntime", "libonnxruntime.so.1")
    return lib if os.path.exists(lib) else None


class ResNetCLIParityTest(unittest.TestCase):
    """The whole chain for the ModifiedResNet reference, as a user runs it:
    export-clip's bundles, clipd's preprocessing of the reference images,
    its tokenizer and ONNX Runtime, through `clipd embed` and `clipd
    classify --top-k 0`, against the original implementation's embeddings
    and probabilities. (The ViT reference has the same checks in
    cmd/clipd/oneshot_test.go.)"""

    @classmethod
    def setUpClass(cls):
        go = shutil.which(os.environ.get("GO", "go"))
        if go is None:
            raise unittest.SkipTest("needs the Go toolchain to build clipd")
        cls.lib = onnxruntime_library()
        if cls.lib is None:
            raise unittest.SkipTest("needs the ONNX Runtime library (make deps, or set CLIPD_ONNXRUNTIME_LIB)")
        cls.tmp = tempfile.mkdtemp(prefix="clipd-rn-cli-")
        cls.clipd = os.path.join(cls.tmp, "clipd")
        build = subprocess.run([go, "build", "-o", cls.clipd, "./cmd/clipd"], cwd=REPO,
                               capture_output=True, text=True, timeout=900)
        if build.returncode != 0:
            raise AssertionError(f"go build ./cmd/clipd failed: {build.stderr}")
        cls.bundles, _ = resnet_bundles()
        cls.expected = load_expected(RN_MODEL_DIR)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_clipd(self, *args):
        result = subprocess.run([self.clipd, *args, "--backend", "onnxruntime", "--onnxruntime-lib", self.lib],
                                capture_output=True, text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr)
        return [json.loads(line) for line in result.stdout.splitlines()]

    def test_embed(self):
        exp = self.expected
        args = []
        for item in exp["images"]:
            args += ["--image", os.path.join(REFERENCE, item["image"])]
        for text in exp["texts"]:
            args += ["--text", text]
        want = [item["image_embed"] for item in exp["images"]] + exp["text_embeds"]
        for name, bundle_dir in sorted(self.bundles.items()):
            with self.subTest(bundle=name):
                lines = self.run_clipd("embed", "--model", bundle_dir, *args)
                self.assertEqual(len(lines), len(want))
                got = torch.tensor([line["embedding"] for line in lines], dtype=torch.float64)
                self.assertEqual([line.get("text") for line in lines[len(exp["images"]):]], exp["texts"])
                cos = F.cosine_similarity(got, torch.tensor(want, dtype=torch.float64), dim=-1)
                worst = cos.min().item()
                print(f"\n  {name}: worst cosine to the reference over {len(lines)} embeddings "
                      f"{worst:.9f} (1 - cos = {1 - worst:.1e})", file=sys.stderr)
                self.assertGreaterEqual(worst, 0.99999)
                self.assertLess((got.norm(dim=-1) - 1).abs().max().item(), 1e-5)

    def test_classify_all_labels(self):
        exp = self.expected
        labels = os.path.join(self.tmp, "ten.labels")
        with open(labels, "w") as f:
            f.write("# the reference labels\n" + "\n".join(exp["labels"]) + "\n")
        images = [os.path.join(REFERENCE, item["image"]) for item in exp["images"]]
        for name, bundle_dir in sorted(self.bundles.items()):
            with self.subTest(bundle=name):
                lines = self.run_clipd("classify", "--model", bundle_dir, "--labels", labels, "--top-k", "0", *images)
                self.assertEqual(len(lines), len(images))
                worst = 0.0
                for line, item in zip(lines, exp["images"]):
                    scores = [m["score"] for m in line["top"]]
                    self.assertEqual(sorted(m["label"] for m in line["top"]), sorted(exp["labels"]))
                    self.assertEqual(scores, sorted(scores, reverse=True))
                    for m in line["top"]:
                        diff = abs(m["score"] - item["probs"][exp["labels"].index(m["label"])])
                        worst = max(worst, diff)
                print(f"\n  {name}: largest probability difference {worst:.1e}", file=sys.stderr)
                self.assertLessEqual(worst, 1e-4)

    def test_larger_input_sizes_need_no_special_case(self):
        # RN50x4/x16/x64 take 288/384/448 px; clipd must take the size
        # from the bundle's preprocess_cfg.json. Small random ResNets at
        # those sizes, checked against PyTorch on CLIP's own transform.
        images = [os.path.join(REFERENCE, "images", n) for n in ("img2_1920x1080.jpg", "img7_501x333.png")]
        for size in (288, 448):
            with self.subTest(size=size):
                torch.manual_seed(size)
                model = CLIP(CLIPConfig(32, size, (1, 1, 1, 1), 16, None, 77, 49408, 64, 1))
                randomize_batch_norm(model)
                model.eval()
                out = bundle.write_bundle(model, os.path.join(self.tmp, f"rn-{size}"), VOCAB)
                self.assertFalse(model.training, "the export left the model in training mode")
                with open(os.path.join(out, "visual", "preprocess_cfg.json")) as f:
                    self.assertEqual(json.load(f)["size"], [size, size])
                args = []
                for path in images:
                    args += ["--image", path]
                lines = self.run_clipd("embed", "--model", out, *args)
                with torch.no_grad():
                    want = model.encode_image(torch.stack([clip_transform(p, size) for p in images]))
                got = torch.tensor([line["embedding"] for line in lines])
                cos = F.cosine_similarity(got.double(), want.double(), dim=-1).min().item()
                self.assertGreaterEqual(cos, 0.99999, f"{size} px")


def randomize_batch_norm(model):
    """Non-trivial BatchNorm statistics and scales, as a trained model has
    (a fresh one's are 0/1, and its blocks' last scales are 0)."""
    with torch.no_grad():
        for m in model.visual.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def clip_transform(path, size):
    """clip.clip._transform(size) with Pillow alone (no torchvision here):
    bicubic resize of the shorter side, centre crop with round() offsets,
    RGB, /255, CLIP's mean and std."""
    from PIL import Image
    img = Image.open(path)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    img = img.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BICUBIC)
    w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size)).convert("RGB")
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(bundle.CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(bundle.CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


class ExportErrorTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="export-clip-err-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def assertFailsWith(self, result, *fragments):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        for fragment in fragments:
            self.assertIn(fragment, result.stderr)

    def assertNothingLeft(self):
        self.assertEqual(sorted(os.listdir(self.tmp)), sorted(self.inputs))

    inputs = ()

    def save(self, name, state):
        path = os.path.join(self.tmp, name)
        torch.save(state, path)
        self.inputs = tuple(self.inputs) + (name,)
        return path

    def test_missing_checkpoint(self):
        missing = os.path.join(self.tmp, "nope.pt")
        self.assertFailsWith(run_export(missing, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             missing, "no such file")
        self.assertNothingLeft()

    def test_not_a_clip_checkpoint_names_missing_key(self):
        state = load_checkpoint("state")
        del state["text_projection"]
        path = self.save("broken.pt", state)
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "'text_projection' is missing")
        self.assertNothingLeft()

    def test_metadata_entries_and_wrapped_state_dict_load(self):
        # Released archives may carry input_resolution/context_length/vocab_size
        # beside the weights; training checkpoints often wrap the state_dict.
        state = load_checkpoint("state")
        state.update(input_resolution=224, context_length=torch.tensor(77), vocab_size=49408)
        path = self.save("wrapped.pt", {"state_dict": state, "epoch": 3})
        result = run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("state_dict checkpoint", result.stderr)

    def test_unknown_image_tower_names_what_was_found(self):
        state = {k: v for k, v in load_checkpoint("state").items() if not k.startswith("visual.")}
        state["visual.stem.weight"] = torch.zeros(1)
        path = self.save("odd.pt", state)
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "neither a ViT", "ModifiedResNet", "found visual.stem")
        self.assertNothingLeft()

    def test_resnet_with_a_missing_stage(self):
        state = {k: v for k, v in load_checkpoint("state", RN_CHECKPOINTS).items()
                 if not k.startswith("visual.layer3.")}
        path = self.save("rn-no-layer3.pt", state)
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "no visual.layer3.N keys")
        self.assertNothingLeft()

    def test_resnet_positional_embedding_not_square(self):
        state = load_checkpoint("state", RN_CHECKPOINTS)
        state["visual.attnpool.positional_embedding"] = state["visual.attnpool.positional_embedding"][:40]
        path = self.save("rn-pos.pt", state)
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "visual.attnpool.positional_embedding has 40 rows", "grid² + 1")

    def test_resnet_embedding_mismatch(self):
        state = load_checkpoint("state", RN_CHECKPOINTS)
        state["visual.attnpool.c_proj.weight"] = state["visual.attnpool.c_proj.weight"][:32]
        state["visual.attnpool.c_proj.bias"] = state["visual.attnpool.c_proj.bias"][:32]
        path = self.save("rn-embed.pt", state)
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "visual.attnpool.c_proj.weight: 32", "text_projection's 64")

    def test_resnet_block_with_wrong_shape(self):
        # Dimensions agree where they are read, but a block's weight does not
        # fit: the strict load names the key and the architecture.
        state = load_checkpoint("state", RN_CHECKPOINTS)
        state["visual.layer2.0.conv2.weight"] = torch.zeros(32, 32, 5, 5, dtype=torch.float16)
        path = self.save("rn-conv.pt", state)
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "ModifiedResNet architecture", "visual.layer2.0.conv2.weight")

    def test_not_a_state_dict(self):
        path = self.save("list.pt", [1, 2, 3])
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB), "not a state_dict")

    def test_missing_vocab(self):
        self.assertFailsWith(run_export(CHECKPOINTS["state"], os.path.join(self.tmp, "out")), "--vocab")
        self.assertNothingLeft()

    def test_vocab_that_does_not_fit_the_model(self):
        small = os.path.join(self.tmp, "small.txt")
        with open(small, "w") as f:
            f.write("#version: 0.2\ni n\nt h\n")
        self.inputs = ("small.txt",)
        self.assertFailsWith(run_export(CHECKPOINTS["state"], os.path.join(self.tmp, "out"), "--vocab", small),
                             "2 merges give 516 tokens", "49408")
        self.assertNothingLeft()

    def test_vocab_with_a_blank_line_is_refused(self):
        # OpenAI's vocabulary with one blank line among its merges: skipping
        # the line would still count 48894 merges (one more line is read),
        # fit the model and write a bundle that clipd's tokenizer refuses.
        with gzip.open(VOCAB, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        lines.insert(1000, "")
        blank = os.path.join(self.tmp, "blank.txt")
        with open(blank, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        self.inputs = ("blank.txt",)
        self.assertFailsWith(run_export(CHECKPOINTS["state"], os.path.join(self.tmp, "out"), "--vocab", blank),
                             "blank.txt:1001: blank line among the merges")
        self.assertNothingLeft()

    def test_vocab_lines_are_counted_as_clipd_counts_them(self):
        # A final newline ends the last merge; a second one is a blank line.
        self.assertEqual(bundle.parse_vocab(b"#version: 0.2\ni n\nt h\n", "v")[0], 2)
        self.assertEqual(bundle.parse_vocab(b"#version: 0.2\ni n\nt h", "v")[0], 2)
        self.assertEqual(bundle.parse_vocab(b"#version: 0.2\ni n\r\nt h\r\n", "v")[0], 2)
        for bad, line in ((b"#version: 0.2\ni n\nt h\n\n", 4), (b"#version: 0.2\n\ni n\n", 2),
                          (b"#version: 0.2\ni n\n \t\nt h\n", 3)):
            with self.assertRaisesRegex(bundle.ExportError, f"v:{line}: blank line"):
                bundle.parse_vocab(bad, "v")

    def test_existing_bundle_needs_force_and_vocab_is_reused(self):
        out = os.path.join(self.tmp, "out")
        self.assertEqual(run_export(CHECKPOINTS["state"], out, "--vocab", VOCAB).returncode, 0)
        before = os.stat(os.path.join(out, "config.json")).st_mtime_ns
        self.assertFailsWith(run_export(CHECKPOINTS["jit"], out), "--force")
        self.assertEqual(os.stat(os.path.join(out, "config.json")).st_mtime_ns, before)
        # Without --vocab the bundle's own vocabulary is carried over.
        result = run_export(CHECKPOINTS["jit"], out, "--force")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(json.load(f)["source"]["form"], "torchscript")
        self.assertTrue(os.path.isfile(os.path.join(out, "textual", "bpe_simple_vocab_16e6.txt.gz")))
        self.assertEqual(sorted(os.listdir(self.tmp)), ["out"])

    def test_refuses_to_replace_foreign_files(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("mine")
        self.assertFailsWith(run_export(CHECKPOINTS["state"], out, "--vocab", VOCAB, "--force"), "notes.txt")
        self.assertEqual(os.listdir(out), ["notes.txt"])

    def test_random_init_needs_no_checkpoint(self):
        self.assertFailsWith(run_export("--random-init", "ViT-X/99", os.path.join(self.tmp, "out"), "--vocab", VOCAB),
                             "unknown architecture 'ViT-X/99'")
        result = run_export("--random-init", "tiny", "a.pt", os.path.join(self.tmp, "out"), "--vocab", VOCAB)
        self.assertEqual(result.returncode, 2)
        self.assertIn("OUTDIR only", result.stderr)


class RandomInitTest(unittest.TestCase):
    def test_seeded(self):
        a = random_model("tiny", seed=3).state_dict()
        b = random_model("tiny", seed=3).state_dict()
        c = random_model("tiny", seed=4).state_dict()
        self.assertTrue(all(torch.equal(a[k], b[k]) for k in a))
        self.assertFalse(torch.equal(a["visual.proj"], c["visual.proj"]))

    def test_resnet_architectures_have_openai_shapes(self):
        # Parameter totals of OpenAI's released RN50, RN101 and RN50x4
        # (CLIP's README notebook); each must read back to its own config.
        # RN50x16/RN50x64 (291M/623M parameters) are too big for the test
        # run; their table rows follow the same code.
        for arch, params in (("RN50", 102_007_137), ("RN101", 119_688_033), ("RN50x4", 178_300_601)):
            with self.subTest(arch=arch):
                model = random_model(arch)
                self.assertEqual(sum(p.numel() for p in model.parameters()), params)
                cfg = config_from_state_dict(model.state_dict())
                self.assertEqual(cfg, model.cfg)
                self.assertEqual(model.visual.attnpool.positional_embedding.shape[0],
                                 (cfg.image_resolution // 32) ** 2 + 1)
                del model
        sizes = {arch: ARCHITECTURES[arch].image_resolution for arch in ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64")}
        self.assertEqual(sizes, {"RN50": 224, "RN101": 224, "RN50x4": 288, "RN50x16": 384, "RN50x64": 448})
        self.assertEqual([ARCHITECTURES[a].vision_heads for a in ("RN50", "RN50x4", "RN50x16", "RN50x64")],
                         [32, 40, 48, 64])

    def test_resnet_init_is_openai_s(self):
        model = random_model("tiny-rn", seed=1)
        for stage in (model.visual.layer1, model.visual.layer4):
            self.assertTrue(torch.equal(stage[0].bn3.weight, torch.zeros_like(stage[0].bn3.weight)))
        std = model.visual.attnpool.q_proj.weight.std().item()
        self.assertAlmostEqual(std, 512 ** -0.5, delta=0.1 * 512 ** -0.5)

    def test_random_bundle_notes_it_is_random(self):
        tmp = tempfile.mkdtemp(prefix="export-clip-rand-")
        self.addCleanup(shutil.rmtree, tmp, True)
        out = os.path.join(tmp, "rand")
        result = run_export("--random-init", "tiny", "-", out, "--vocab", VOCAB, "--seed", "7")
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        self.assertEqual(config["random_init"]["arch"], "tiny")
        self.assertEqual(config["random_init"]["seed"], 7)
        self.assertEqual(config["embed_dim"], TINY_EMBED)

    def test_small_vocab_bundle_with_plain_text_vocab(self):
        # A learnt vocabulary in plain text, as tools/learn-bpe writes it.
        tmp = tempfile.mkdtemp(prefix="export-clip-small-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with gzip.open(VOCAB, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[:1 + 100]
        vocab = os.path.join(tmp, "learnt.txt")
        with open(vocab, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        cfg = CLIPConfig(32, 32, 1, 64, 16, 77, 512 + 100 + 2, 64, 1)
        torch.manual_seed(0)
        out = bundle.write_bundle(CLIP(cfg).eval(), os.path.join(tmp, "out"), vocab)
        staged = os.path.join(out, "textual", "bpe_simple_vocab_16e6.txt.gz")
        with gzip.open(staged, "rt", encoding="utf-8") as f:
            self.assertEqual(f.read().split("\n")[:101], lines)
        graph = graph_of(os.path.join(out, "textual", "model.onnx"))
        self.assertEqual(equal_against_text(graph), [[613]])


if __name__ == "__main__":
    unittest.main()
