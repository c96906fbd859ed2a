"""CLIP's byte-level BPE, in the format of OpenAI's bpe_simple_vocab_16e6.txt.

`learn` makes a small merges list from captions; `Tokenizer` encodes text
with any such file exactly as OpenAI's SimpleTokenizer does for the text the
demo model sees (ASCII captions and prompts). Two documented simplifications
against the original, neither of which changes ASCII text: no ftfy.fix_text
(ftfy is not installed here), and the split pattern uses Python's `re`
classes (`[^\\W\\d_]` for \\p{L}, `\\d` for \\p{N}) because the `regex` module
is not installed either. The Go tokenizer is the exact one; the tests check
the two agree on every caption.
"""

import collections
import gzip
import html
import re

HEADER = "#version: 0.2"
# OpenAI keeps at most this many merges (merges[1:49152-256-2+1]).
MAX_MERGES = 49152 - 256 - 2
SOT, EOT = "<|startoftext|>", "<|endoftext|>"

_PATTERN = re.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+""",
    re.IGNORECASE)


def bytes_to_unicode():
    """OpenAI's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def clean(text):
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def words(text):
    """Cleaned text split into pre-tokens, each as byte-unicode symbols."""
    for piece in _PATTERN.findall(clean(text)):
        yield "".join(BYTE_ENCODER[b] for b in piece.encode("utf-8"))


def _symbols(word):
    return tuple(word[:-1]) + (word[-1] + "</w>",)


def learn(texts, num_merges, min_frequency=2):
    """Learns up to num_merges merges, most frequent pair first (ties broken
    by the pair's text so the result is deterministic). Stops early when no
    pair occurs min_frequency times. Merges whose concatenation already is a
    vocabulary entry are skipped: OpenAI's encoder dict would map both to the
    later id, silently shifting ids."""
    counts = collections.Counter(w for t in texts for w in words(t))
    vocab = {_symbols(w): c for w, c in counts.items()}
    known = set(BYTE_ENCODER.values()) | {v + "</w>" for v in BYTE_ENCODER.values()}
    merges = []
    while len(merges) < num_merges:
        pairs = collections.Counter()
        for syms, c in vocab.items():
            for a, b in zip(syms, syms[1:]):
                pairs[a, b] += c
        candidates = [(-c, p) for p, c in pairs.items() if c >= min_frequency and p[0] + p[1] not in known]
        if not candidates:
            break
        _, best = min(candidates)
        merges.append(best)
        known.add(best[0] + best[1])
        vocab = {_merge(syms, best): c for syms, c in vocab.items()}
    return merges


def _merge(syms, pair):
    out, i = [], 0
    while i < len(syms):
        if i + 1 < len(syms) and (syms[i], syms[i + 1]) == pair:
            out.append(syms[i] + syms[i + 1])
            i += 2
        else:
            out.append(syms[i])
            i += 1
    return tuple(out)


def write(path, merges):
    """Writes the header and one "a b" line per merge; gzip when path ends
    in .gz (with a fixed mtime so the file is reproducible)."""
    data = (HEADER + "\n" + "".join(f"{a} {b}\n" for a, b in merges)).encode("utf-8")
    if path.endswith(".gz"):
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def read_merges(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = []
    for lineno, line in enumerate(lines[1:MAX_MERGES + 1], start=2):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: want a merge 'a b', got {line!r}")
        merges.append(tuple(parts))
    return merges


class Tokenizer:
    def __init__(self, path):
        self.merges = read_merges(path)
        vocab = list(BYTE_ENCODER.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in self.merges]
        vocab += [SOT, EOT]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]
        self.vocab_size = len(vocab)
        self._cache = {SOT: [SOT], EOT: [EOT]}

    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        syms = _symbols(word)
        while len(syms) > 1:
            pairs = set(zip(syms, syms[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            syms = _merge(syms, best)
        self._cache[word] = list(syms)
        return self._cache[word]

    def encode(self, text):
        return [self.encoder[t] for w in words(text) for t in self._bpe(w)]

    def tokenize(self, text, context_length=77):
        """SOT + ids + EOT, zero padded; truncated with EOT last (as
        clip.tokenize(truncate=True))."""
        ids = [self.sot] + self.encode(text) + [self.eot]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = self.eot
        return ids + [0] * (context_length - len(ids))
