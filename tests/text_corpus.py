"""A synthetic text corpus for tests that train or evaluate: a folder of .txt documents made
of a fixed vocabulary, the same for every call with the same arguments.

Shared by the test modules (``from text_corpus import write_corpus``) instead of one test
module importing another's helpers; pytest puts ``tests/`` on the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ("the king queen lord lady sword crown night day love death speak hear come go "
         "thou thee thy my heart blood fair foul sweet good ill war peace").split()


def write_corpus(folder: Path, n_docs: int = 8, words_per_doc: int = 3000) -> Path:
    """``n_docs`` documents of ``words_per_doc`` words in sentences of ten, seeded."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text = []
        for _ in range(words_per_doc // 10):
            text.append(" ".join(rng.choice(WORDS, size=10)).capitalize() + ".")
        (folder / f"doc{i:02d}.txt").write_text("\n".join(text))
    return folder
