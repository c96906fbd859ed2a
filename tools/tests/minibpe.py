"""A minimal CLIP BPE encoder for plain ASCII prompts, used only by the tests.

The reference tokenizer.jsonl has no rows for expected.json's texts
("a photo of a {label}."), and the project's real tokenizer is Go code
owned by another helper. This encoder skips ftfy and the Unicode classes,
so it is limited to ASCII text without HTML entities; `ascii_only`
tells which texts qualify, and the tests check it against every such
reference row before trusting it.
"""

import gzip
import html
import re

SPLIT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")
MERGE_CAP = 49152 - 256 - 2


def bytes_to_unicode():
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def ascii_only(text):
    return text.isascii() and "&" not in text and all(c.isprintable() or c in " \t\n" for c in text)


class MiniBPE:
    def __init__(self, vocab_path):
        opener = gzip.open if vocab_path.endswith(".gz") else open
        with opener(vocab_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:MERGE_CAP + 1] if line.strip()]
        byte_symbols = list(bytes_to_unicode().values())
        vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.sot = self.encoder["<|startoftext|>"]
        self.eot = self.encoder["<|endoftext|>"]

    def _bpe(self, word):
        if word in ("<|startoftext|>", "<|endoftext|>"):
            return [word]
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = [(self.ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            rank, at = min(pairs)
            if rank == float("inf"):
                break
            first, second = symbols[at], symbols[at + 1]
            merged = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def encode(self, text):
        if not ascii_only(text):
            raise ValueError(f"MiniBPE handles plain ASCII only: {text!r}")
        text = html.unescape(html.unescape(text))
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for token in SPLIT.findall(text):
            word = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._bpe(word))
        return ids

    def tokens77(self, text, context_length=77):
        ids = [self.sot] + self.encode(text) + [self.eot]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = self.eot
        return ids + [0] * (context_length - len(ids))
