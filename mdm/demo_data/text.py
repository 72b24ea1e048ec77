"""English prose that is already on the machine: nothing is downloaded.

Sources:
  - `pydoc_data.topics` (ships with every CPython): the language reference topics behind
    `help()`, about 0.46 MB of English. Each topic is cut at paragraph boundaries into documents
    of at most `max_doc_chars` characters.
  - Debian's fortunes, where installed (`fortunes`, `fortunes-min` packages;
    /usr/share/games/fortunes): one document per fortune. The `off/` (offensive, rot13)
    collection and the `.dat` index / `.u8` link files are skipped; if the directory is absent
    the source is skipped cleanly.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

FORTUNES_DIR = Path("/usr/share/games/fortunes")


def pydoc_documents(max_doc_chars: int = 2000) -> list[str]:
    """Documents cut from the standard library's pydoc topics, in a fixed (sorted) order."""
    from pydoc_data import topics
    docs: list[str] = []
    for name in sorted(topics.topics):
        docs.extend(split_paragraphs(topics.topics[name], max_doc_chars))
    return docs


def split_paragraphs(text: str, max_chars: int) -> list[str]:
    """Greedily join blank-line-separated paragraphs into chunks of <= max_chars (a single
    longer paragraph stays whole). Whitespace inside paragraphs is kept verbatim."""
    paras = [p.strip("\n") for p in text.split("\n\n")]
    paras = [p for p in paras if p.strip()]
    out: list[str] = []
    cur = ""
    for p in paras:
        if cur and len(cur) + 2 + len(p) > max_chars:
            out.append(cur)
            cur = p
        else:
            cur = f"{cur}\n\n{p}" if cur else p
    if cur:
        out.append(cur)
    return out


def fortune_documents(root: str | os.PathLike | None = None) -> list[str]:
    """One document per fortune from a fortune directory; [] when it does not exist."""
    root = Path(root) if root is not None else FORTUNES_DIR
    if not root.is_dir():
        return []
    docs: list[str] = []
    for f in sorted(root.iterdir()):
        if f.is_dir() or f.is_symlink() or f.suffix in (".dat", ".u8") or f.name.startswith("."):
            continue
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for chunk in text.replace("\r\n", "\n").split("\n%\n"):
            chunk = chunk.strip("%\n")
            if chunk.strip():
                docs.append(chunk)
    return docs


def make_text_corpus(seed: int = 0, *, valid_fraction: float = 0.05,
                     max_chars: int | None = None, max_doc_chars: int = 2000,
                     fortunes_dir: str | os.PathLike | None = None
                     ) -> tuple[list[str], list[str], dict[str, Any]]:
    """(train docs, valid docs, info): all sources shuffled with `seed`, cut to `max_chars`
    total characters if given, split into train / valid by document."""
    sources = {"pydoc_topics": pydoc_documents(max_doc_chars),
               "fortunes": fortune_documents(fortunes_dir)}
    docs = [(name, d) for name, ds in sources.items() for d in ds]
    order = np.random.default_rng(seed).permutation(len(docs))
    docs = [docs[i] for i in order]
    if max_chars is not None:
        kept, total = [], 0
        for name, d in docs:
            if total >= max_chars:
                break
            kept.append((name, d))
            total += len(d)
        docs = kept
    n_valid = max(1, int(round(valid_fraction * len(docs)))) if len(docs) > 1 else 0
    valid, train = docs[:n_valid], docs[n_valid:]
    info = {
        "sources": {name: sum(1 for n, _ in docs if n == name) for name in sources},
        "fortunes_found": bool(sources["fortunes"]),
        "num_train_docs": len(train), "num_valid_docs": len(valid),
        "train_chars": sum(len(d) for _, d in train),
        "valid_chars": sum(len(d) for _, d in valid),
    }
    return [d for _, d in train], [d for _, d in valid], info
