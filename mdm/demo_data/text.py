"""English prose that is already on the machine: nothing is downloaded at run time.

Sources (each used when present; `SOURCES` names them, with the Debian package that brings
each one, and the Makefile's `system-deps` target installs those packages):
  - `pydoc_topics`: the standard library's `pydoc_data.topics` (ships with every CPython), the
    language reference behind `help()`, about 0.46 MB of English. Each topic is cut at paragraph
    boundaries into documents of at most `max_doc_chars` characters.
  - `fortunes`: Debian's fortune cookies (packages `fortunes`, `fortunes-min`;
    /usr/share/games/fortunes), one document per fortune. The `off/` (offensive, rot13)
    collection, the `.dat` index / `.u8` link files and the ASCII-art collections are skipped,
    and so is any fortune that is mostly not letters (pictures drawn in characters).
  - `devil`, `jargon`, `gcide`: dictd databases (/usr/share/dictd/NAME.dict.dz, a gzip file,
    with NAME.index giving each entry's offset and length): Ambrose Bierce's *The Devil's
    Dictionary* (`dict-devil`), the Jargon File (`dict-jargon`) and the Collaborative
    International Dictionary of English, i.e. Webster's 1913 (`dict-gcide`). Their markup is
    stripped to plain sentences ("Loadstone: A piece of magnetite, ...") -- pronunciations,
    etymologies, source tags ("[1913 Webster]"), cross-reference braces, field labels ("(Bot.)"),
    citations ("--Shak."), synonym lists, italics underscores -- and consecutive entries are
    grouped into documents of at most `max_doc_chars` characters.

Every document is cleaned (newlines normalised, control characters dropped, trailing spaces
stripped, runs of blank lines collapsed) and the corpus is deduplicated (same text up to case
and whitespace: the first source in `SOURCES` order keeps it). A source may be capped
(`max_chars_per_source`, a seeded sample of its documents) so no single one dominates, and the
whole corpus is then cut to `max_chars`. If fewer than `min_bytes` (UTF-8) remain,
`make_text_corpus` raises `TextCorpusTooSmallError` with one line naming the apt command.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DICTD_DIR = Path("/usr/share/dictd")
RECIPE_VERSION = 2      # bump when the reading / cleaning below changes: the text stage rebuilds
FORTUNE_SKIP = frozenset({"art", "ascii-art"})   # collections of pictures, not prose
# the Debian packages the Makefile installs for the text sources (fortunes pulls in fortunes-min)
TEXT_PACKAGES: tuple[str, ...] = ("fortunes", "fortunes-min", "dict-gcide", "dict-devil",
                                  "dict-jargon")
APT_COMMAND = "sudo apt-get install " + " ".join(TEXT_PACKAGES)


class TextCorpusTooSmallError(RuntimeError):
    """The installed text sources hold less prose than the demo scale asks for."""


@dataclasses.dataclass(frozen=True)
class TextSource:
    name: str
    package: str        # the Debian package that brings it ("" for the standard library)
    description: str


SOURCES: tuple[TextSource, ...] = (
    TextSource("pydoc_topics", "", "Python language reference (pydoc_data.topics)"),
    TextSource("fortunes", "fortunes", "fortune cookies (/usr/share/games/fortunes)"),
    TextSource("devil", "dict-devil", "The Devil's Dictionary, Ambrose Bierce"),
    TextSource("jargon", "dict-jargon", "The Jargon File 4.4.7"),
    TextSource("gcide", "dict-gcide", "Collaborative International Dictionary of English"),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


# --- sources ----------------------------------------------------------------------------------
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
    return _group(paras, max_chars, "\n\n")


def _group(items: list[str], max_chars: int, sep: str) -> list[str]:
    out: list[str] = []
    cur = ""
    for p in items:
        if cur and len(cur) + len(sep) + len(p) > max_chars:
            out.append(cur)
            cur = p
        else:
            cur = f"{cur}{sep}{p}" if cur else p
    if cur:
        out.append(cur)
    return out


def _fortune_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [f for f in sorted(root.iterdir())
            if f.is_file() and not f.is_symlink() and f.suffix not in (".dat", ".u8")
            and not f.name.startswith(".") and f.name not in FORTUNE_SKIP]


def fortune_documents(root: str | os.PathLike | None = None) -> list[str]:
    """One document per fortune from a fortune directory; [] when it does not exist."""
    root = Path(root) if root is not None else FORTUNES_DIR
    docs: list[str] = []
    for f in _fortune_files(root):
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for chunk in text.replace("\r\n", "\n").split("\n%\n"):
            chunk = chunk.strip("%\n")
            if chunk.strip():
                docs.append(chunk)
    return docs


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def _dictd_paths(name: str, root: Path) -> tuple[Path, Path]:
    return root / f"{name}.dict.dz", root / f"{name}.index"


def dictd_entries(name: str, root: str | os.PathLike | None = None) -> list[str]:
    """The raw entries of dictd database `name` in file order (each stored entry once, however
    many headwords point at it; the 00-database-* header entries are skipped); [] when the
    database is not installed."""
    root = Path(root) if root is not None else DICTD_DIR
    data_file, index_file = _dictd_paths(name, root)
    if not (data_file.is_file() and index_file.is_file()):
        return []
    spans: set[tuple[int, int]] = set()
    for line in index_file.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        try:
            spans.add((_b64(parts[1]), _b64(parts[2])))
        except ValueError:
            continue
    with gzip.open(data_file, "rb") as f:      # a dictzip file is a gzip file
        raw = f.read()
    return [raw[o:o + n].decode("utf-8", errors="replace") for o, n in sorted(spans)]


# --- dictionary markup -> sentences -------------------------------------------------------------
# GCIDE writes accented letters and ligatures as bracketed codes: caf['e], [ae]on, [=a]
_CODE_NAMES = {"ae": "ae", "AE": "Ae", "oe": "oe", "OE": "Oe", "eth": "th", "thorn": "th",
               "add": "a", "asl": "a", "aum": "a", "imac": "i", "udd": "u", "yogh": "y",
               "ng": "ng", "th": "th", "nbsp": " ", "root": "root", "sharp": "sharp",
               "flat": "flat", "phi": "phi", "deg": " degrees", "frac12": " 1/2", "dsdot": ""}
_CODE = re.compile(r"\[(?:([`'\"=~^.,*-]?)([A-Za-z]{1,2})(\^?)|([A-Za-z]{2,6}))\]")
_PRON = re.compile(r"\\[^\\\n]*\\(\s*\([^()\n]*\))?")      # \Lap"i*date\ (l[a^]p"...)
_SOURCE_TAG = re.compile(r"\[[^\[\]]*(?:Webster|WordNet|PJC|Century|RDH|\bAS\b)[^\[\]]*\][^\n]*")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_SUB_ENTRY = re.compile(r"\}\s*(?:n|a|adj|adv|v\. ?[ti]|v|pl|prep|interj|p\. ?p|p\. ?a)\.")
_BRACES = re.compile(r"\{\s*([^{}]*?)\s*\}")
_FIELD = re.compile(r"\(\s*(?:[A-Z][A-Za-z]*\.\s*(?:&\s*)?)+\)")   # (Bot.) (Zool. & Anat.)
_CITATION = re.compile(r"\s*--\s?[A-Z].*$")                      # --Shak.  --Sir T. Browne.
_SPACES = re.compile(r"[ \t]+")
# what a cleaned dictionary document must not hold any more (tests check it on every document)
DICT_MARKUP = re.compile(r"[\\{}\[\]]|(?<!\w)_\w|\w_(?!\w)|\[(?:1913 Webster|WordNet|PJC)")


def _decode_codes(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(4) is not None:
            name = m.group(4)
            return _CODE_NAMES.get(name, m.group(0))
        if not (m.group(1) or m.group(3)) and m.group(2) not in _CODE_NAMES:
            return m.group(0)              # a plain bracketed word ("[He]"): editorial, not a code
        return _CODE_NAMES.get(m.group(2), m.group(2))
    return _CODE.sub(sub, text)


def _remove_brackets(text: str) -> str:
    prev = None
    while prev != text:                    # innermost first, so nested spans go too
        prev, text = text, _BRACKETS.sub("", text)
    return text


def _sentence(text: str) -> str:
    """One paragraph of dictionary text as one line: braces, field labels and a trailing
    citation removed, whitespace collapsed."""
    text = _BRACES.sub(lambda m: _SPACES.sub(" ", m.group(1)), text.replace("\n", " "))
    text = _FIELD.sub("", text)
    text = _CITATION.sub("", text)
    return _tidy(re.sub(r"[\\{}\[\]]", "", text))


def _tidy(text: str) -> str:
    """Whitespace collapsed, no space before punctuation."""
    return re.sub(r"\s+([,.;:?!])", r"\1", _SPACES.sub(" ", text)).strip()


def _unitalic(text: str) -> str:
    """`_emphasis_` -> `emphasis`."""
    return re.sub(r"(?<!\w)_([^_\n]+(?:\n[^_\n]+)?)_(?!\w)", r"\1", text)


def clean_gcide_entry(entry: str) -> str:
    """A GCIDE (Webster 1913) entry as plain sentences, "Headword: definition." ("" when
    nothing but markup is left)."""
    first = entry.lstrip("\n").split("\n", 1)[0]
    head = _SPACES.sub(" ", first.split("\\", 1)[0]).strip().rstrip(",")
    text = _decode_codes(entry)
    text = _PRON.sub("", text)
    text = _SOURCE_TAG.sub("", text)
    text = _remove_brackets(text)
    text = _SUB_ENTRY.sub("}:", text)
    lines = text.strip("\n").split("\n")
    body = "\n".join(lines[1:])
    paras = []
    for p in re.split(r"\n\s*\n", body):
        s = _sentence(p)
        if not s or s.startswith(("Syn.", "Syn:")) or s.startswith("Usage:"):
            continue
        paras.append(s)
    head = re.sub(r"[\\{}\[\]]", "", head)
    if not paras or not head:
        return ""
    return f"{head}: " + "\n".join(paras)


def clean_jargon_entry(entry: str) -> str:
    """A Jargon File entry: "headword: text", pronunciation / part-of-speech line and the
    bracketed usage labels ("[IRC]") removed, cross-reference braces dropped, paragraphs
    unwrapped (indented code or quotations keep their lines; pictures drawn in characters go)."""
    lines = entry.strip("\n").split("\n")
    if len(lines) < 2:
        return ""
    head = _remove_brackets(lines[0]).strip()
    rest = lines[1:]
    if rest and rest[0].startswith(" ") and rest[0].strip() and not rest[0].startswith("    "):
        rest = rest[1:]                                  # " /pron/, n." or " n."
    body = _remove_brackets(_BRACES.sub(lambda m: _SPACES.sub(" ", m.group(1)),
                                        _unitalic("\n".join(rest))))
    paras = []
    for p in re.split(r"\n\s*\n", body):
        plines = [ln for ln in p.split("\n") if ln.strip()]
        if not plines or not is_prose("\n".join(plines)):       # pictures, diagrams
            continue
        if all(ln.startswith("        ") for ln in plines):    # code / quotation: keep lines
            paras.append("\n".join(ln[4:].rstrip() for ln in plines))
        else:
            paras.append(_tidy(" ".join(ln.strip() for ln in plines)))
    paras = [re.sub(r"[\\{}\[\]]", "", p) for p in paras if p]
    if not paras or not head or len(head) > 80:
        return ""
    return f"{head}: " + "\n\n".join(paras)


def clean_devil_entry(entry: str) -> str:
    """A Devil's Dictionary entry ("LIAR, n.  A lawyer with a roving commission."): prose
    paragraphs unwrapped, verse (indented) kept line by line, `_italics_` underscores and
    editorial brackets dropped."""
    text = _BRACES.sub(lambda m: m.group(1), _unitalic(entry.strip("\n")))
    text = _remove_brackets(text).replace("_", "")
    paras = []
    for p in re.split(r"\n\s*\n", text):
        plines = [ln.rstrip() for ln in p.split("\n") if ln.strip()]
        if not plines:
            continue
        if plines[0].startswith(" "):                      # verse: keep its lines
            paras.append("\n".join(plines))
        else:
            paras.append(_tidy(" ".join(ln.strip() for ln in plines)))
    return "\n\n".join(paras)


def dictionary_documents(name: str, root: str | os.PathLike | None = None,
                         max_doc_chars: int = 2000) -> list[str]:
    """Cleaned entries of dictd database `name` ("devil", "jargon", "gcide"), consecutive
    short entries grouped into documents of at most `max_doc_chars`; [] when not installed."""
    clean: Callable[[str], str] = {"gcide": clean_gcide_entry, "jargon": clean_jargon_entry,
                                   "devil": clean_devil_entry}[name]
    entries = [c for c in (clean(e) for e in dictd_entries(name, root)) if c]
    if name == "devil":             # the first "entry" is the book's preface: keep it whole
        return entries
    return _group(entries, max_doc_chars, "\n")


# --- cleaning, dedup, corpus ------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")


def clean_document(text: str) -> str:
    """Newlines normalised, control characters dropped, tabs kept, trailing spaces stripped,
    runs of blank lines collapsed to one."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def is_prose(text: str, min_letters: float = 0.6) -> bool:
    """Mostly letters and spaces, at least three words (drops pictures drawn in characters)."""
    stripped = re.sub(r"\s+", "", text)
    if not stripped or len(text.split()) < 3:
        return False
    return sum(c.isalpha() for c in stripped) / len(stripped) >= min_letters


def _dedup_key(text: str) -> str:
    return hashlib.sha1(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


def source_documents(name: str, *, max_doc_chars: int = 2000,
                     fortunes_dir: str | os.PathLike | None = None,
                     dictd_dir: str | os.PathLike | None = None) -> list[str]:
    """The raw documents of one source ([] when it is not installed)."""
    if name == "pydoc_topics":
        return pydoc_documents(max_doc_chars)
    if name == "fortunes":
        return fortune_documents(fortunes_dir)
    return dictionary_documents(name, dictd_dir, max_doc_chars)


def _check_sources(sources: Sequence[str] | None) -> list[TextSource]:
    if sources is None:
        return list(SOURCES)
    unknown = sorted(set(sources) - set(SOURCE_NAMES))
    if unknown:
        raise ValueError(f"unknown demo text source(s) {unknown}; known: {list(SOURCE_NAMES)}")
    return [s for s in SOURCES if s.name in sources]


def source_files(fortunes_dir: str | os.PathLike | None = None,
                 dictd_dir: str | os.PathLike | None = None,
                 sources: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """The installed files each source reads (empty list: not installed; pydoc_topics reads
    none)."""
    fdir = Path(fortunes_dir) if fortunes_dir is not None else FORTUNES_DIR
    ddir = Path(dictd_dir) if dictd_dir is not None else DICTD_DIR
    out: dict[str, list[Path]] = {}
    for src in _check_sources(sources):
        if src.name == "pydoc_topics":
            out[src.name] = []
        elif src.name == "fortunes":
            out[src.name] = _fortune_files(fdir)
        else:
            files = list(_dictd_paths(src.name, ddir))
            out[src.name] = files if all(f.is_file() for f in files) else []
    return out


def sources_fingerprint(fortunes_dir: str | os.PathLike | None = None,
                        dictd_dir: str | os.PathLike | None = None,
                        sources: Sequence[str] | None = None) -> dict[str, str]:
    """Content hash of each source (what the text stage's cache key depends on): the bytes of
    its installed files, or of the pydoc topics this Python ships; "missing" if absent."""
    out: dict[str, str] = {"recipe": str(RECIPE_VERSION)}
    for name, files in source_files(fortunes_dir, dictd_dir, sources).items():
        h = hashlib.sha256()
        if name == "pydoc_topics":
            from pydoc_data import topics
            for k in sorted(topics.topics):
                h.update(k.encode() + b"\0" + topics.topics[k].encode("utf-8") + b"\0")
        elif not files:
            out[name] = "missing"
            continue
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        out[name] = h.hexdigest()[:20]
    return out


def make_text_corpus(seed: int = 0, *, valid_fraction: float = 0.05,
                     max_chars: int | None = None, max_doc_chars: int = 2000,
                     max_chars_per_source: int | None = None, min_bytes: int = 0,
                     sources: Sequence[str] | None = None,
                     fortunes_dir: str | os.PathLike | None = None,
                     dictd_dir: str | os.PathLike | None = None, scale_name: str = ""
                     ) -> tuple[list[str], list[str], dict[str, Any]]:
    """(train docs, valid docs, info): every installed source read, cleaned and deduplicated,
    each capped to `max_chars_per_source` (a seeded sample), all shuffled with `seed`, cut to
    `max_chars` total characters if given, split into train / valid by document. `sources`
    restricts the sources read (names from SOURCE_NAMES; default all). `info` records per source
    its package, whether it was found, and the documents / characters / UTF-8 bytes used.
    Raises TextCorpusTooSmallError (one line) when fewer than `min_bytes` remain."""
    chosen = _check_sources(sources)
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    per_source: dict[str, list[str]] = {}
    found: dict[str, bool] = {}
    for src in chosen:
        raw = source_documents(src.name, max_doc_chars=max_doc_chars,
                               fortunes_dir=fortunes_dir, dictd_dir=dictd_dir)
        found[src.name] = bool(raw)
        docs = []
        for d in raw:
            d = clean_document(d)
            if not is_prose(d):
                continue
            k = _dedup_key(d)
            if k in seen:
                continue
            seen.add(k)
            docs.append(d)
        if max_chars_per_source is not None:
            order = rng.permutation(len(docs))
            kept, total = [], 0
            for i in order:
                if total >= max_chars_per_source:
                    break
                kept.append(int(i))
                total += len(docs[i])
            docs = [docs[i] for i in sorted(kept)]
        per_source[src.name] = docs
    docs_all = [(name, d) for name, ds in per_source.items() for d in ds]
    order = rng.permutation(len(docs_all))
    docs_all = [docs_all[i] for i in order]
    if max_chars is not None:
        kept2, total = [], 0
        for name, d in docs_all:
            if total >= max_chars:
                break
            kept2.append((name, d))
            total += len(d)
        docs_all = kept2
    sources_info = {}
    for src in chosen:
        used = [d for n, d in docs_all if n == src.name]
        sources_info[src.name] = {
            "package": src.package or "python stdlib", "found": found[src.name],
            "docs": len(used), "chars": sum(len(d) for d in used),
            "bytes": sum(len(d.encode("utf-8")) for d in used)}
    total_bytes = sum(s["bytes"] for s in sources_info.values())
    if total_bytes < min_bytes:
        missing = [s.package for s in chosen if s.package and not found[s.name]]
        what = f"missing: {', '.join(missing)}; " if missing else ""
        raise TextCorpusTooSmallError(
            f"demo text: {total_bytes:,} bytes of English prose found, the "
            f"{scale_name + ' ' if scale_name else ''}scale needs {min_bytes:,} ({what}"
            f"install the text sources with `{APT_COMMAND}` or `make system-deps`)")
    n_valid = max(1, int(round(valid_fraction * len(docs_all)))) if len(docs_all) > 1 else 0
    valid, train = docs_all[:n_valid], docs_all[n_valid:]
    info = {
        "sources": sources_info,
        "total_bytes": total_bytes,
        "min_bytes": min_bytes,
        "num_train_docs": len(train), "num_valid_docs": len(valid),
        "train_chars": sum(len(d) for _, d in train),
        "valid_chars": sum(len(d) for _, d in valid),
    }
    return [d for _, d in train], [d for _, d in valid], info
