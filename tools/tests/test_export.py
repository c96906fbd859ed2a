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
    from onnx import numpy_helper

    from clipexport import bundle
    from clipexport.model import CLIP, CLIPConfig, build_model, pool_eot, random_model
    MISSING = None
except ImportError as err:  # the first python3 on PATH may lack torch
    MISSING = f"{err}; run with Debian's /usr/bin/python3 (torch 1.13, onnx, numpy)"

from minibpe import MiniBPE, ascii_only

SHARED = os.environ.get("CLIPD_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
REFERENCE = os.path.join(SHARED, "reference")
MODEL_DIR = os.path.join(REFERENCE, "model")
VOCAB = os.path.join(SHARED, "clip", "bpe_simple_vocab_16e6.txt.gz")
CHECKPOINTS = {"state": os.path.join(MODEL_DIR, "tiny-vit-state.pt"),
               "jit": os.path.join(MODEL_DIR, "tiny-vit-jit.pt")}
NEEDED = [VOCAB, os.path.join(MODEL_DIR, "expected.json"),
          os.path.join(REFERENCE, "tokenizer.jsonl")] + list(CHECKPOINTS.values())

TINY_EMBED = 64
TINY_LAYERS = 2


def setUpModule():
    if MISSING:
        raise unittest.SkipTest(f"torch/onnx unavailable: {MISSING}")
    absent = [p for p in NEEDED if not os.path.exists(p)]
    if absent:
        raise unittest.SkipTest(f"reference data missing (set CLIPD_SHARED): {', '.join(absent)}")


def load_expected():
    with open(os.path.join(MODEL_DIR, "expected.json")) as f:
        return json.load(f)


def reference_image(name):
    path = os.path.join(REFERENCE, name + ".f32")
    return np.fromfile(path, dtype="<f4").reshape(3, 224, 224)


def load_checkpoint(form):
    path = CHECKPOINTS[form]
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
    @classmethod
    def setUpClass(cls):
        cls.expected = load_expected()
        bpe = MiniBPE(VOCAB)
        cls.tokens = torch.tensor([bpe.tokens77(t) for t in cls.expected["texts"]], dtype=torch.int32)
        cls.images = torch.from_numpy(np.stack([reference_image(item["image"]) for item in cls.expected["images"]]))

    def check_form(self, form):
        model = build_model(load_checkpoint(form))
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

    def test_state_dict_checkpoint(self):
        self.check_form("state")

    def test_torchscript_checkpoint(self):
        self.check_form("jit")

    def test_state_dict_round_trip_is_strict(self):
        model = build_model(load_checkpoint("state"))
        original = load_checkpoint("state")
        self.assertEqual(set(model.state_dict()), set(original))


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

    def test_modified_resnet_is_refused(self):
        path = self.save("rn50.pt", {"visual.layer1.0.conv1.weight": torch.zeros(1),
                                     "visual.attnpool.c_proj.weight": torch.zeros(1)})
        self.assertFailsWith(run_export(path, os.path.join(self.tmp, "out"), "--vocab", VOCAB), "ModifiedResNet")

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
