"""Tests of the demo trainer's shortcuts (tools/demo/train.py).

Run: /usr/bin/python3 -m unittest discover -s tools/tests -p 'test_demo_*.py'
"""

import os
import sys
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(TESTS)
sys.path.insert(0, TOOLS)

try:
    import torch
    from clipexport.model import CLIP, CLIPConfig
    from demo import train
except ImportError as e:  # pragma: no cover
    torch = None
    IMPORT_ERROR = e


@unittest.skipIf(torch is None, "needs torch (Debian's /usr/bin/python3)")
class Trainer(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.cfg = CLIPConfig(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64,
                              vision_patch_size=8, context_length=77, vocab_size=600, transformer_width=64,
                              transformer_layers=2)
        self.model = CLIP(self.cfg).eval()

    def tokens(self, lengths):
        rows = []
        for n in lengths:
            row = [598] + [int(x) for x in torch.randint(1, 590, (n,))] + [599]
            rows.append(row + [0] * (77 - len(row)))
        return torch.tensor(rows)

    def test_short_text_encoding_equals_full(self):
        t = self.tokens([3, 10, 1])
        with torch.no_grad():
            full = self.model.encode_text(t)
            short = train.encode_text_short(self.model, t)
        self.assertLess((full - short).abs().max().item(), 1e-5)

    def test_identical_captions_are_not_negatives(self):
        img = torch.randn(3, 8)
        txt = img.clone()
        t = self.tokens([2, 2, 4])
        t[1] = t[0]
        # Images 0 and 1 share a caption: swapping their texts must not
        # change the loss, while it would for distinct captions.
        swapped = txt[[1, 0, 2]]
        scale = torch.tensor(2.0)
        a = train.contrastive_loss(img, txt, t, scale)
        b = train.contrastive_loss(img, swapped, t, scale)
        self.assertAlmostEqual(a.item(), b.item(), places=5)
        t2 = self.tokens([2, 3, 4])
        c = train.contrastive_loss(img, txt, t2, scale)
        d = train.contrastive_loss(img, swapped, t2, scale)
        self.assertGreater(d.item(), c.item())


@unittest.skipIf(torch is None, "needs torch (Debian's /usr/bin/python3)")
class ResNetTower(unittest.TestCase):
    def test_vision_layers_argument(self):
        import argparse
        self.assertEqual(train.vision_layers("3"), 3)
        self.assertEqual(train.vision_layers("1,2,1,1"), (1, 2, 1, 1))
        for bad in ("1,2", "a", "1,1,1,1,1"):
            with self.assertRaises(argparse.ArgumentTypeError):
                train.vision_layers(bad)

    def test_short_text_encoding_equals_full(self):
        torch.manual_seed(0)
        model = CLIP(CLIPConfig(32, 64, (1, 1, 1, 1), 16, None, 77, 600, 64, 2)).eval()
        t = torch.zeros(2, 77, dtype=torch.long)
        t[:, 0], t[0, 1:4], t[0, 4], t[1, 1], t[1, 2] = 598, 7, 599, 9, 599
        with torch.no_grad():
            self.assertLess((model.encode_text(t) - train.encode_text_short(model, t)).abs().max().item(), 1e-5)

    def test_batch_norm_recalibration(self):
        import copy
        import numpy as np
        torch.manual_seed(0)
        model = CLIP(CLIPConfig(32, 64, (1, 1, 1, 1), 16, None, 77, 600, 64, 1))
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(256, 64, 64, 3), dtype=np.uint8)
        # Skewed batches (one bright colour, as in a shape batch) leave
        # their statistics behind in training mode.
        with torch.no_grad():
            for _ in range(5):
                model.visual(train.to_tensor(np.full((8, 64, 64, 3), 250, dtype=np.uint8)))
        x = train.to_tensor(images)
        with torch.no_grad():
            want = copy.deepcopy(model).train().visual(x)  # normalised by this batch's own statistics
            stale = model.eval().visual(x)
            self.assertGreater((stale - want).abs().max().item(), 0.1)
            self.assertEqual(train.recalibrate_batch_norm(model, images, np.arange(256), 256), 1)
            got = model.eval().visual(x)
        self.assertLess((got - want).abs().max().item(), 1e-2 * want.abs().max().item())
        self.assertEqual({m.momentum for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)}, {0.1})

    def test_batch_norm_recalibration_needs_one_whole_batch(self):
        import copy
        import numpy as np
        torch.manual_seed(0)
        model = CLIP(CLIPConfig(32, 64, (1, 1, 1, 1), 16, None, 77, 600, 64, 1))
        images = np.random.default_rng(0).integers(0, 256, size=(24, 64, 64, 3), dtype=np.uint8)
        with torch.no_grad():
            model.visual(train.to_tensor(images[:8]))  # training statistics, not the initial 0 and 1
        before = copy.deepcopy(model.visual.state_dict())
        # Fewer records than one batch: nothing runs, so nothing is reset.
        self.assertEqual(train.recalibrate_batch_norm(model, images, np.arange(24), 32), 0)
        after = model.visual.state_dict()
        for name, value in before.items():
            self.assertTrue(torch.equal(value, after[name]), name)
        # The count is that of the batches run: 24 records make two of 10.
        self.assertEqual(train.recalibrate_batch_norm(model, images, np.arange(24), 10), 2)
        bn = next(m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d))
        self.assertEqual(bn.num_batches_tracked.item(), 2)


@unittest.skipIf(torch is None, "needs torch (Debian's /usr/bin/python3)")
class CaptionTruth(unittest.TestCase):
    def test_caption_meaning(self):
        m = train.caption_meaning
        self.assertEqual(m("a photo of a small red circle at the top left."), ("pairs", ((("red", "circle"), 1),)))
        self.assertEqual(m("two blue squares and a red cross on a noisy background."),
                         ("pairs", ((("blue", "square"), 2), (("red", "cross"), 1))))
        self.assertEqual(m("three shapes: two black crosses and a white star."),
                         ("pairs", ((("black", "cross"), 2), (("white", "star"), 1))))
        self.assertEqual(m("an orange shape."), ("color", "orange"))
        self.assertEqual(m("a ring on a cluttered background."), ("kind", "ring"))

    def test_truth_matrix(self):
        shape = lambda c, k: {"color": c, "kind": k}  # noqa: E731
        records = [
            {"captions": ["a red circle.", "a red shape."], "truth": {"shapes": [shape("red", "circle")]}},
            {"captions": ["a small red circle at the top."], "truth": {"shapes": [shape("red", "circle")]}},
            {"captions": ["a red circle and a blue star."],
             "truth": {"shapes": [shape("red", "circle"), shape("blue", "star")]}},
        ]
        mean = train.Meanings(records)
        codes = torch.tensor([mean.caption[0][1], mean.caption[1][0], mean.caption[2][0]])
        got = mean.matrix(torch.arange(3), codes).int().tolist()
        # "a red shape." is true of both single red circles, not of the
        # two-shape scene; the two red-circle captions are interchangeable.
        self.assertEqual(got, [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
        records[1]["captions"] = ["a blue circle."]
        with self.assertRaises(SystemExit):
            train.Meanings(records)

    def test_shape_batches(self):
        import numpy as np
        shape = lambda c, k: {"color": c, "kind": k}  # noqa: E731
        records = []
        for c in train.COLORS:
            for k in train.KINDS:
                records.append({"captions": [f"a {c} shape.", f"a photo of a {c} {k}.", f"a {k}."],
                                "truth": {"shapes": [shape(c, k)]}})
        records.append({"captions": ["a red circle and a blue star."],
                        "truth": {"shapes": [shape("red", "circle"), shape("blue", "star")]}})
        sb = train.ShapeBatches(records)
        rng = np.random.default_rng(0)
        for _ in range(20):
            idx, choice = sb.draw(rng, 8)
            self.assertEqual(list(idx), sorted(idx))
            shapes = [records[i]["truth"]["shapes"] for i in idx]
            self.assertTrue(all(len(s) == 1 for s in shapes))
            self.assertLessEqual(len({s[0]["color"] for s in shapes}), 2)
            for i, k in zip(idx, choice):
                self.assertNotEqual(train.caption_meaning(records[i]["captions"][k])[0], "color")


if __name__ == "__main__":
    unittest.main()
