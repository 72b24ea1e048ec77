"""The unified token space (DESIGN.md section 3) and the sequence layouts built on it.

One vocabulary, laid out as contiguous ranges at fixed offsets:

    [0, num_special)                                  special / layout tokens
    [text_offset,  text_offset  + text_vocab)         text tokens (BPE ids)
    [image_offset, image_offset + image_vocab)        image tokens (image-tokenizer codes)
    [audio_offset, audio_offset + audio_vocab)        audio tokens (speech-codec codes)
    padded up to a multiple of `pad_vocab_to` (unused ids; never predicted)

Specials (never masked, never predicted, no loss): PAD, MASK, BOS, EOS, begin/end of image,
begin/end of audio, and task tokens (T2I, I2T = captioning, T2S, S2T = ASR, TXT = plain text).

Sequence layouts (L = seq_len); `segment_ids` restrict attention to one document / example and
are 0 on PAD; `cond` marks the conditioning segment (what condition dropout masks):

    text (packed):   d1_1 .. d1_n EOS d2_1 .. EOS ... PAD*          segments 1, 2, ...
    T2I:             T2I caption.. BOI image.. EOI PAD*             cond = caption
    I2T:             I2T BOI image.. EOI caption.. EOS PAD*         cond = image
    T2S:             T2S transcript.. BOA audio.. EOA PAD*          cond = transcript
    S2T:             S2T BOA audio.. EOA transcript.. EOS PAD*      cond = audio

Per-position modality ids: LAYOUT = 0 (specials and PAD), TEXT = 1, IMAGE = 2, AUDIO = 3, derived
from the token id ranges (`modality_of`), so they need not be stored.

Default vocabulary sizes (text 4096 BPE, image 1000 FSQ codes, audio 1000 FSQ codes) are those of
the embedded demo tokenizers; real runs derive them from the data set manifest.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from mdm.run_contract import MODALITIES

LAYOUT, TEXT, IMAGE, AUDIO = 0, 1, 2, 3
MODALITY_NAMES: tuple[str, ...] = MODALITIES  # modality id m <-> name [m - 1]
MODALITY_IDS: dict[str, int] = {"text": TEXT, "image": IMAGE, "audio": AUDIO}

SPECIAL_TOKENS: tuple[str, ...] = (
    "PAD", "MASK", "BOS", "EOS", "BOI", "EOI", "BOA", "EOA", "T2I", "I2T", "T2S", "S2T", "TXT",
)
NUM_SPECIAL = 16  # room for a few more specials without moving the content ranges
TASKS: tuple[str, ...] = ("T2I", "I2T", "T2S", "S2T")


class LayoutError(ValueError):
    """A sequence or token id does not follow the token-space layout."""


@dataclasses.dataclass(frozen=True)
class TokenSpace:
    """Offsets and sizes of the unified vocabulary. Recorded in every run's config.json."""

    text_vocab: int = 4096
    image_vocab: int = 1000
    audio_vocab: int = 1000
    pad_vocab_to: int = 128

    def __post_init__(self) -> None:
        for name in ("text_vocab", "image_vocab", "audio_vocab"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise LayoutError(f"token_space.{name} must be a positive integer, got {v!r}")
        if self.pad_vocab_to < 1:
            raise LayoutError(f"token_space.pad_vocab_to must be >= 1, got {self.pad_vocab_to}")

    # --- special ids -------------------------------------------------------------------
    def special(self, name: str) -> int:
        try:
            return SPECIAL_TOKENS.index(name)
        except ValueError:
            raise LayoutError(f"unknown special token {name!r}; known: {SPECIAL_TOKENS}") from None

    @property
    def pad(self) -> int:
        return self.special("PAD")

    @property
    def mask(self) -> int:
        return self.special("MASK")

    # --- ranges ------------------------------------------------------------------------
    @property
    def text_offset(self) -> int:
        return NUM_SPECIAL

    @property
    def image_offset(self) -> int:
        return self.text_offset + self.text_vocab

    @property
    def audio_offset(self) -> int:
        return self.image_offset + self.image_vocab

    @property
    def used_vocab(self) -> int:
        return self.audio_offset + self.audio_vocab

    @property
    def vocab_size(self) -> int:
        """Model vocabulary: used ids rounded up to a multiple of pad_vocab_to."""
        k = self.pad_vocab_to
        return -(-self.used_vocab // k) * k

    def modality_range(self, modality: int | str) -> tuple[int, int]:
        """[lo, hi) of a content modality's global ids."""
        m = MODALITY_IDS[modality] if isinstance(modality, str) else modality
        if m == TEXT:
            return self.text_offset, self.text_offset + self.text_vocab
        if m == IMAGE:
            return self.image_offset, self.image_offset + self.image_vocab
        if m == AUDIO:
            return self.audio_offset, self.audio_offset + self.audio_vocab
        raise LayoutError(f"modality {modality!r} has no token range (LAYOUT has specials only)")

    def range_table(self) -> np.ndarray:
        """[4, 2] int32: row m = [lo, hi) for modality id m (row 0, LAYOUT, is empty)."""
        rows = [(0, 0)] + [self.modality_range(m) for m in (TEXT, IMAGE, AUDIO)]
        return np.asarray(rows, dtype=np.int32)

    def modality_of(self, tokens: Any) -> Any:
        """Per-position modality id from token ids; works on numpy and jax arrays.

        tokens: int [...] -> int32 [...] in {LAYOUT, TEXT, IMAGE, AUDIO}.
        """
        xp = np if isinstance(tokens, np.ndarray) else _jnp()
        t = tokens
        return (xp.where(t >= self.text_offset, 1, 0)
                + xp.where(t >= self.image_offset, 1, 0)
                + xp.where(t >= self.audio_offset, 1, 0)).astype(xp.int32)

    # --- local <-> global ids ----------------------------------------------------------
    def to_global(self, local_ids: Sequence[int] | np.ndarray, modality: str) -> np.ndarray:
        """Shift a tokenizer's local ids [0, V_m) into the unified space, validating them."""
        lo, hi = self.modality_range(modality)
        ids = np.asarray(local_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= hi - lo):
            bad = ids[(ids < 0) | (ids >= hi - lo)][:5]
            raise LayoutError(f"{modality} token ids must lie in [0, {hi - lo}); got {bad.tolist()}")
        return (ids + lo).astype(np.int32)

    def to_local(self, global_ids: Sequence[int] | np.ndarray, modality: str) -> np.ndarray:
        lo, hi = self.modality_range(modality)
        ids = np.asarray(global_ids, dtype=np.int64)
        if ids.size and (ids.min() < lo or ids.max() >= hi):
            raise LayoutError(f"ids outside the {modality} range [{lo}, {hi})")
        return (ids - lo).astype(np.int32)

    def to_dict(self) -> dict[str, int]:
        return {
            "num_special": NUM_SPECIAL, "text_offset": self.text_offset,
            "text_vocab": self.text_vocab, "image_offset": self.image_offset,
            "image_vocab": self.image_vocab, "audio_offset": self.audio_offset,
            "audio_vocab": self.audio_vocab, "vocab_size": self.vocab_size,
            "pad_vocab_to": self.pad_vocab_to,
            "specials": {name: i for i, name in enumerate(SPECIAL_TOKENS)},
        }

    @classmethod
    def from_config(cls, cfg: Any) -> "TokenSpace":
        return cls(text_vocab=int(cfg.text_vocab), image_vocab=int(cfg.image_vocab),
                   audio_vocab=int(cfg.audio_vocab), pad_vocab_to=int(cfg.pad_vocab_to))


def _jnp():
    import jax.numpy as jnp  # deferred: keep this module importable without JAX
    return jnp


@dataclasses.dataclass
class Sequences:
    """A batch of laid-out sequences. All arrays are [n, seq_len]."""

    tokens: np.ndarray       # int32 global token ids
    segment_ids: np.ndarray  # int32, 0 = PAD, else document / example id within the row
    cond: np.ndarray         # bool, True on the conditioning segment

    def __len__(self) -> int:
        return self.tokens.shape[0]


def pack_text(docs: Sequence[Sequence[int]], seq_len: int, space: TokenSpace) -> Sequences:
    """Pack documents (local text ids) into rows of seq_len, each document followed by EOS.

    Documents longer than a row continue on the next row (with a new segment id); the last row
    is PAD-filled. Nothing is dropped.
    """
    if seq_len < 2:
        raise LayoutError(f"seq_len must be >= 2 to pack text, got {seq_len}")
    eos = space.special("EOS")
    stream: list[np.ndarray] = []
    for i, d in enumerate(docs):
        if len(d) == 0:
            continue
        stream.append(np.concatenate([space.to_global(d, "text"), [eos]]).astype(np.int32))
    rows_tok: list[np.ndarray] = []
    rows_seg: list[np.ndarray] = []
    cur_tok: list[int] = []
    cur_seg: list[int] = []
    for doc in stream:
        pos = 0
        while pos < len(doc):
            room = seq_len - len(cur_tok)
            piece = doc[pos:pos + room]
            seg = (cur_seg[-1] + 1) if cur_seg else 1
            cur_tok.extend(piece.tolist())
            cur_seg.extend([seg] * len(piece))
            pos += len(piece)
            if len(cur_tok) == seq_len:
                rows_tok.append(np.asarray(cur_tok, np.int32))
                rows_seg.append(np.asarray(cur_seg, np.int32))
                cur_tok, cur_seg = [], []
    if cur_tok:
        pad = seq_len - len(cur_tok)
        rows_tok.append(np.asarray(cur_tok + [space.pad] * pad, np.int32))
        rows_seg.append(np.asarray(cur_seg + [0] * pad, np.int32))
    if not rows_tok:
        empty = np.zeros((0, seq_len), np.int32)
        return Sequences(empty, empty.copy(), np.zeros((0, seq_len), bool))
    tokens = np.stack(rows_tok)
    segs = np.stack(rows_seg)
    return Sequences(tokens, segs, np.zeros_like(tokens, dtype=bool))


def pair_sequence(task: str, text_ids: Sequence[int], media_ids: Sequence[int], seq_len: int,
                  space: TokenSpace) -> Sequences:
    """One image-text or audio-text example, PAD-filled to seq_len (see module docstring).

    task: "T2I" / "I2T" (media = image codes) or "T2S" / "S2T" (media = audio codes); ids are
    the tokenizers' local ids. Raises LayoutError if the example does not fit.
    """
    if task not in TASKS:
        raise LayoutError(f"unknown task {task!r}; expected one of {TASKS}")
    media = "image" if task in ("T2I", "I2T") else "audio"
    begin, end = ("BOI", "EOI") if media == "image" else ("BOA", "EOA")
    text = space.to_global(text_ids, "text")
    med = space.to_global(media_ids, media)
    if len(text) == 0 or len(med) == 0:
        raise LayoutError(f"{task} example needs non-empty text and {media} tokens")
    s = space.special
    media_block = np.concatenate([[s(begin)], med, [s(end)]])
    if task in ("T2I", "T2S"):  # text conditions media
        parts = [np.asarray([s(task)]), text, media_block]
        cond_parts = [np.zeros(1, bool), np.ones(len(text), bool), np.zeros(len(media_block), bool)]
    else:  # media conditions text (captioning / ASR)
        parts = [np.asarray([s(task)]), media_block, text, np.asarray([s("EOS")])]
        cond_parts = [np.zeros(1, bool), np.concatenate([[False], np.ones(len(med), bool), [False]]),
                      np.zeros(len(text), bool), np.zeros(1, bool)]
    tokens = np.concatenate(parts).astype(np.int32)
    cond = np.concatenate(cond_parts)
    n = len(tokens)
    if n > seq_len:
        raise LayoutError(f"{task} example has {n} tokens ({len(text)} text + {len(med)} {media} "
                          f"+ layout) but seq_len is {seq_len}")
    pad = seq_len - n
    tokens = np.concatenate([tokens, np.full(pad, space.pad, np.int32)])
    segs = np.concatenate([np.ones(n, np.int32), np.zeros(pad, np.int32)])
    cond = np.concatenate([cond, np.zeros(pad, bool)])
    return Sequences(tokens[None], segs[None], cond[None])


def concat(seqs: Sequence[Sequences]) -> Sequences:
    return Sequences(np.concatenate([s.tokens for s in seqs]),
                     np.concatenate([s.segment_ids for s in seqs]),
                     np.concatenate([s.cond for s in seqs]))


def validate_sequences(seqs: Sequences, space: TokenSpace, seq_len: int | None = None) -> None:
    """Check ids, shapes and layout invariants; raise LayoutError naming the first bad row."""
    tok, seg, cond = seqs.tokens, seqs.segment_ids, seqs.cond
    if tok.ndim != 2 or seg.shape != tok.shape or cond.shape != tok.shape:
        raise LayoutError(f"tokens/segment_ids/cond must be [n, seq_len] with equal shapes; got "
                          f"{tok.shape}, {seg.shape}, {cond.shape}")
    if seq_len is not None and tok.shape[1] != seq_len:
        raise LayoutError(f"rows have length {tok.shape[1]}, expected seq_len {seq_len}")
    bad = (tok < 0) | (tok >= space.used_vocab) | (tok == space.mask)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise LayoutError(f"row {r} position {c}: token id {tok[r, c]} is invalid (outside "
                          f"[0, {space.used_vocab}) or MASK, which never appears in data)")
    is_pad = tok == space.pad
    if np.any(is_pad != (seg == 0)):
        r = int(np.argwhere(is_pad != (seg == 0))[0][0])
        raise LayoutError(f"row {r}: PAD tokens and segment id 0 must coincide")
    if np.any(seg < 0):
        raise LayoutError("segment ids must be >= 0")
    mod = space.modality_of(tok)
    if np.any(cond & (mod == LAYOUT)):
        r = int(np.argwhere(cond & (mod == LAYOUT))[0][0])
        raise LayoutError(f"row {r}: the conditioning segment contains layout tokens")
    # PAD only at the end of a row.
    for r in range(tok.shape[0]):
        p = np.flatnonzero(is_pad[r])
        if p.size and not np.all(is_pad[r, p[0]:]):
            raise LayoutError(f"row {r}: PAD must only appear at the end of a row")
