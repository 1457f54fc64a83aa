"""RULER's 13 prompts, written from the semantics of RULER's generators (arXiv 2404.06654,
``nvidia-long-context-eval`` 26.3's ``synthetic.yaml``, ``constants.py`` and generator
scripts), not from their code.

A generator draws everything random about one sample once (keys, values, needle depths,
word lists, the QA question) and returns a :class:`Draft`: ``text(n)`` is the prompt with
``n`` haystack units (essay words, repeated filler paragraphs, distractor needles, noise
paragraphs, list words, coded words, documents), so the fitting in :mod:`.core` can grow
``n`` to the target length without the sample changing. Prompts use RULER's ``base``
template (task template + answer prefix, no chat wrapper).

Differences from RULER's scripts, all deliberate: randomness comes from one
:class:`random.Random` per sample (RULER reseeds a global one); sentence splitting of the
essays is a regex on ``. ! ?`` (RULER uses nltk's punkt); positions of inserted lines are
drawn as fractions of the haystack so they do not move as it grows; a word key is an
adjective and a noun drawn independently (RULER draws from their de-duplicated product).
"""

from __future__ import annotations

import math
import random
import re
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .data import QaSet, RulerData

FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back "
          "again.")
NEEDLE = "One of the special magic {kind} for {key} is: {value}."
#: RULER's needle depths in percent: 40 points from 0 to 100
DEPTHS = tuple(round(100 * i / 39) for i in range(40))

NIAH = ("Some special magic {kind} are hidden within the following text. Make sure to memorize "
        "it. I will quiz you about the {kind} afterwards.\n{context}\nWhat are all the special "
        "magic {kind} for {query} mentioned in the provided text? The special magic {kind} for "
        "{query} mentioned in the provided text are")
VT = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
      "{context}\nQuestion: Find all variables that are assigned the value {query} in the text "
      "above. Answer: According to the chain(s) of variable assignment in the text above, "
      "{num_v} variables are assgined the value {query}, they are: ")
CWE = ("Below is a numbered list of words. In these words, some appear more often than others. "
       "Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most "
       "common words in the above list? Answer: The top 10 words that appear most often in the "
       "list are:")
FWE = ("Read the following coded text and track the frequency of each coded word. Find the "
       "three most frequently appeared coded words. {context}\nQuestion: Do not provide any "
       "explanation. Please ignore the dots '....'. What are the three most frequently appeared "
       "words in the above coded text? Answer: According to the coded text above, the three "
       "most frequently appeared words are:")
QA = ("Answer the question based on the given documents. Only give me the answer and do not "
      "output any other words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the "
      "question based on the given documents. Only give me the answer and do not output any "
      "other words.\n\nQuestion: {query} Answer:")


@dataclass(frozen=True)
class Draft:
    """One sample before its length is chosen: ``text(n)`` with ``n`` in 0 … ``max_units``
    haystack units, and ``depth(n)`` the fraction of the haystack before the first needle
    (None for tasks without one)."""

    text: Callable[[int], str]
    answers: tuple[str, ...]
    max_units: int
    depth: Callable[[int], float | None] = lambda n: None


def random_value(rng: random.Random, kind: str, data: RulerData) -> str:
    """A needle key or value of RULER's kinds: 7-digit numbers, adjective-noun words, uuids."""
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "words":
        return f"{rng.choice(data.adjectives)}-{rng.choice(data.nouns)}"
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(frozen=True)
class NiahConfig:
    haystack: str  # repeat | essay | needle
    key_kind: str
    value_kind: str
    keys: int = 1
    values: int = 1
    queries: int = 1


def _place(lines: list[str], inserts: list[str], fractions: list[float]) -> list[str]:
    """``lines`` with ``inserts`` put before line round(f · len(lines)), in order."""
    out, n = list(lines), len(lines)
    for shift, (f, line) in enumerate(sorted(zip(fractions, inserts), key=lambda p: p[0])):
        out.insert(round(f * n) + shift, line)
    return out


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _niah_haystack(cfg: NiahConfig, rng: random.Random, data: RulerData, kind: str
                   ) -> tuple[Callable[[int], list[str]], int, str]:
    """(n → haystack lines, the most units there are, the separator of lines)."""
    if cfg.haystack == "essay":
        words = re.sub(r"\s+", " ", data.essays).strip().split(" ")
        return lambda n: _sentences(" ".join(words[:n])), len(words), " "
    if cfg.haystack == "repeat":
        return lambda n: [FILLER] * n, 1 << 30, "\n"
    distractors: list[str] = []  # drawn on demand, so the first n never change

    def lines(n: int) -> list[str]:
        while len(distractors) < n:
            distractors.append(NEEDLE.format(kind=kind, key=random_value(rng, cfg.key_kind, data),
                                             value=random_value(rng, cfg.value_kind, data)))
        return distractors[:n]
    return lines, 1 << 30, "\n"


def niah(cfg: NiahConfig, rng: random.Random, data: RulerData, depth: float | None) -> Draft:
    kind = cfg.value_kind
    keys = [random_value(rng, cfg.key_kind, data) for _ in range(max(cfg.keys, cfg.queries))]
    values = [[random_value(rng, kind, data) for _ in range(cfg.values)] for _ in keys]
    needles = [NEEDLE.format(kind=kind, key=k, value=v) for k, vs in zip(keys, values) for v in vs]
    rng.shuffle(needles)
    fractions = [d / 100 for d in rng.sample(DEPTHS, len(needles))]
    if depth is not None:
        fractions[0] = depth
    asked = rng.sample(range(len(keys)), cfg.queries)
    query = (", ".join(keys[i] for i in asked[:-1]) + ", and " + keys[asked[-1]]
             if len(asked) > 1 else keys[asked[0]])
    template, shown = NIAH, kind
    if cfg.queries * cfg.values == 1:  # RULER's singular wording for one answer
        template = (template.replace("Some", "A").replace("are all", "is").replace("are", "is")
                    .replace("answers", "answer"))
        shown = kind[:-1]
    haystack, most, sep = _niah_haystack(cfg, rng, data, kind)
    first = min(fractions) if depth is None else depth

    def text(n: int) -> str:
        context = sep.join(_place(haystack(n), needles, fractions))
        return template.format(kind=shown, context=context, query=query)

    def achieved(n: int) -> float:
        units = len(haystack(n))
        return round(first * units) / units if units else 0.0
    return Draft(text, tuple(v for i in asked for v in values[i]), most, achieved)


def _chain(rng: random.Random, hops: int, letters: int) -> tuple[list[str], list[str]]:
    names: list[str] = []
    while len(names) < hops + 1:
        name = "".join(rng.choices(string.ascii_uppercase, k=letters))
        if name not in names:
            names.append(name)
    lines = [f"VAR {names[0]} = {rng.randint(10000, 99999)}"]
    lines += [f"VAR {names[j + 1]} = VAR {names[j]} " for j in range(hops)]
    return names, lines


def _vt_prompt(lines: list[str], fractions: list[float], n: int, hops: int) -> str:
    noise = _place([FILLER + "\n"] * n, lines, fractions)
    context = " ".join(noise).replace(". \n", ".\n")
    return VT.format(context=context, query=lines[0].split("=")[-1].strip(), num_v=hops + 1)


def variable_tracking(rng: random.Random, hops: int = 4) -> Draft:
    """One chain of ``hops`` assignments in noise, after one worked example (RULER's
    few-shot example: 3-letter names, 5 noise paragraphs, answer given)."""
    names, lines = _chain(rng, hops, 5)
    fractions = sorted(rng.random() for _ in lines)
    example_names, example_lines = _chain(rng, hops, 3)
    example = (_vt_prompt(example_lines, sorted(rng.random() for _ in example_lines), 5, hops)
               + " " + " ".join(example_names))
    cut = example.index("Memorize")  # the example follows the (empty) model template

    def text(n: int) -> str:
        return example[cut:] + "\n\n" + _vt_prompt(lines, fractions, n, hops)
    return Draft(text, tuple(names), 1 << 30)


def _numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def common_words(rng: random.Random, data: RulerData, length: int, common: int = 10,
                 freq: tuple[int, int] = (30, 3)) -> Draft:
    """A numbered list where ``common`` words appear often and the others rarely, after a
    worked example; RULER's shorter repeats (6, 1) below 4,096 tokens."""
    vocabulary = sorted(set(data.nouns) | set(data.adjectives) | set(data.verbs))
    rng.shuffle(vocabulary)
    small = length < 4096
    example_words = rng.sample(vocabulary, 20 if small else 40)
    example_list = (example_words[:common] * (3 if small else 10)
                    + example_words[common:] * (1 if small else 3))
    rng.shuffle(example_list)
    example = CWE.format(context=_numbered(example_list)) + " " + _numbered(
        example_words[:common])
    words = rng.sample(vocabulary, len(vocabulary))
    often, rarely = (6, 1) if small else freq
    order_seed = rng.getrandbits(64)

    def text(n: int) -> str:
        n = n + common
        chosen = words[:common] * often + words[common:n] * rarely
        random.Random(order_seed).shuffle(chosen)
        return example + "\n" + CWE.format(context=_numbered(chosen))
    return Draft(text, tuple(words[:common]), len(words) - common)


def _zeta(alpha: float, terms: int = 100_000) -> float:
    """Riemann zeta(alpha) for alpha > 1: a partial sum and its Euler-Maclaurin tail."""
    head = math.fsum(k ** -alpha for k in range(1, terms))
    return head + terms ** (1 - alpha) / (alpha - 1) + terms ** -alpha / 2


def frequent_words(rng: random.Random, length: int, alpha: float = 2.0,
                   letters: int = 6) -> Draft:
    """Coded words with Zipf(alpha) counts (rank 1 is the '...' noise); the answer is ranks
    2-4. The vocabulary has length // 50 words, as in RULER."""
    size = max(5, length // 50)
    vocabulary: set[str] = set()
    while len(vocabulary) < size:
        vocabulary.add("".join(rng.choices(string.ascii_lowercase, k=letters)))
    ranked = sorted(vocabulary)
    rng.shuffle(ranked)
    ranked[0] = "..."
    order_seed, zeta = rng.getrandbits(64), _zeta(alpha)

    def text(n: int) -> str:
        counts = [int(n * k ** -alpha / zeta) for k in range(1, size + 1)]
        words = [w for w, c in zip(ranked, counts) for _ in range(c)]
        random.Random(order_seed).shuffle(words)
        return FWE.format(context=" ".join(words))
    return Draft(text, tuple(ranked[1:4]), 1 << 30)


def question_answering(rng: random.Random, qa: QaSet) -> Draft:
    """The question's gold documents among distractors: its article's other paragraphs first
    (SQuAD), then random documents; all shuffled into "Document i:" blocks."""
    item = qa.items[rng.randrange(len(qa.items))]
    related = list(item.related)
    rng.shuffle(related)
    taken = set(item.gold) | set(related)
    others = [i for i in range(len(qa.documents)) if i not in taken]
    distractors = related + rng.sample(others, len(others))
    order_seed = rng.getrandbits(64)

    def text(n: int) -> str:
        chosen = list(item.gold) + distractors[:max(0, n - len(item.gold))]
        random.Random(order_seed).shuffle(chosen)
        context = "\n\n".join(f"Document {i + 1}:\n{qa.documents[d]}"
                              for i, d in enumerate(chosen))
        return QA.format(context=context, query=item.question)
    return Draft(text, item.answers, len(distractors) + len(item.gold))


__all__ = ["DEPTHS", "FILLER", "NEEDLE", "Draft", "NiahConfig", "common_words",
           "frequent_words", "niah", "question_answering", "random_value", "variable_tracking"]
