"""Tests of the demo model's BPE vocabulary (tools/demo/bpe.py, tools/learn-bpe).

Run: /usr/bin/python3 -m unittest discover -s tools/tests -p 'test_demo_*.py'
"""

import gzip
import json
import os
import subprocess
import sys
import tempfile
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(TESTS)
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from demo import bpe  # noqa: E402

CAPTIONS = [
    "a photo of a red circle.", "two blue squares on a noisy background.",
    "a small green star at the top left.", "an orange cross and a white ring.",
    "a purple triangle in the center of the image.", "three black crosses.",
] * 5
SHARED = os.environ.get("CLIPD_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
ORIGINAL_VOCAB = os.path.join(SHARED, "clip", "bpe_simple_vocab_16e6.txt.gz")
REFERENCE_ROWS = os.path.join(SHARED, "reference", "tokenizer.jsonl")


def decode(tok, ids):
    inv = {v: k for k, v in tok.encoder.items()}
    byte_decoder = {c: b for b, c in bpe.BYTE_ENCODER.items()}
    text = "".join(inv[i] for i in ids)
    return bytearray(byte_decoder[c] for c in text.replace("</w>", "")).decode("utf-8")


class LearnedVocabulary(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "vocab.txt.gz")
        self.merges = bpe.learn(CAPTIONS, 500)
        bpe.write(self.path, self.merges)
        self.tok = bpe.Tokenizer(self.path)

    def tearDown(self):
        self.dir.cleanup()

    def test_file_format_is_openai(self):
        with gzip.open(self.path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        self.assertEqual(lines[0], bpe.HEADER)
        for line in lines[1:-1]:
            a, b = line.split(" ")
            self.assertTrue(a and b)
        self.assertEqual(lines[-1], "")

    def test_vocab_layout(self):
        n = len(self.merges)
        self.assertEqual(self.tok.vocab_size, 512 + n + 2)
        self.assertEqual((self.tok.sot, self.tok.eot), (512 + n, 513 + n))
        self.assertEqual(len(self.tok.encoder), self.tok.vocab_size, "two vocabulary entries share a string")

    def test_every_caption_word_is_one_token(self):
        # With enough merges each frequent word is a single symbol.
        for w in "photo background purple triangle crosses".split():
            self.assertEqual(len(self.tok.encode(w)), 1, w)

    def test_round_trip(self):
        for text in CAPTIONS + ["a Zebra? 42 ümlaut"]:
            ids = self.tok.encode(text)
            self.assertEqual(decode(self.tok, ids), bpe.clean(text).replace(" ", ""))

    def test_tokenize_pads_and_truncates(self):
        ids = self.tok.tokenize("a red circle")
        self.assertEqual(len(ids), 77)
        self.assertEqual(ids[0], self.tok.sot)
        self.assertEqual(ids[4], self.tok.eot)
        self.assertEqual(ids[5:], [0] * 72)
        long = self.tok.tokenize("red " * 100)
        self.assertEqual((len(long), long[-1]), (77, self.tok.eot))

    def test_learn_bpe_command(self):
        data = os.path.join(self.dir.name, "captions.jsonl")
        with open(data, "w") as f:
            for c in CAPTIONS:
                f.write(json.dumps({"image": "x.png", "captions": [c], "truth": {}}) + "\n")
        out = os.path.join(self.dir.name, "cmd.txt.gz")
        subprocess.run([sys.executable, os.path.join(TOOLS, "learn-bpe"), data, out, "--merges", "20"], check=True,
                       capture_output=True)
        self.assertEqual(len(bpe.read_merges(out)), 20)
        with open(data, "a") as f:
            f.write("not json\n")
        r = subprocess.run([sys.executable, os.path.join(TOOLS, "learn-bpe"), data, out], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"{data}:{len(CAPTIONS) + 1}", r.stderr)


@unittest.skipUnless(os.path.exists(ORIGINAL_VOCAB) and os.path.exists(REFERENCE_ROWS),
                     f"needs {ORIGINAL_VOCAB} and {REFERENCE_ROWS} (set CLIPD_SHARED)")
class OriginalVocabulary(unittest.TestCase):
    def test_matches_openai_on_ascii_prompts(self):
        """The Python tokenizer is OpenAI's on ASCII text (the reference's
        prompt rows); rows with other characters need ftfy/regex."""
        tok = bpe.Tokenizer(ORIGINAL_VOCAB)
        checked = 0
        with open(REFERENCE_ROWS, encoding="utf-8") as f:
            for row in map(json.loads, f):
                if not row["text"].isascii() or "&" in row["text"]:
                    continue
                self.assertEqual(tok.encode(row["text"]), row["ids"], row["text"])
                self.assertEqual(tok.tokenize(row["text"]), row["tokens77"], row["text"])
                checked += 1
        self.assertGreater(checked, 500)


if __name__ == "__main__":
    unittest.main()
