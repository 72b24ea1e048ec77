"""Byte-level BPE text tokenizer: exact round trips, save / load, user tokenizer.json, registry."""
import json

import numpy as np
import pytest

from mdm.tokenizers import TokenizerError, load_tokenizer, read_meta
from mdm.tokenizers.text import TextTokenizer

HARD_STRINGS = [
    "",
    "plain ascii text.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n\nand CRLF\r\nlines\r\n",
    "unicode: héllo wörld, naïve café, Ελληνικά, русский, 日本語のテキスト, 한국어",
    "emoji 🎉🚀 and ZWJ 👩‍👩‍👧 and combining é (e + U+0301)",
    "math ∑∫√∞ ≤ ≥ and symbols §¶•",
    "\x00control\x07chars\x1b[0m",
    "mixed   multiple     spaces\t\t\ttabs\u00a0nbsp\u2003em-space",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code\n",
]


@pytest.fixture(scope="module")
def corpus():
    from mdm.demo_data.text import pydoc_documents
    return pydoc_documents()[:150]


@pytest.fixture(scope="module")
def tok(corpus):
    return TextTokenizer.train(corpus, vocab_size=600)


def test_vocab_size_and_id_range(tok, corpus):
    assert 256 < tok.vocab_size <= 600
    ids = np.concatenate([tok.encode(d) for d in corpus[:20]])
    assert ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    # merges compress: English prose takes well under one token per byte
    assert len(ids) < 0.6 * sum(len(d.encode()) for d in corpus[:20])


@pytest.mark.parametrize("s", HARD_STRINGS)
def test_roundtrip_is_exact(tok, s):
    ids = tok.encode(s)
    assert tok.decode(ids) == s
    assert tok.decode(list(ids)) == s


def test_batch_encode_matches_single(tok):
    batch = tok.encode_batch(HARD_STRINGS)
    for s, ids in zip(HARD_STRINGS, batch):
        np.testing.assert_array_equal(ids, tok.encode(s))
    assert tok.decode_batch(batch) == HARD_STRINGS


def test_save_load_same_ids_and_id(tok, tmp_path, corpus):
    d = tok.save(tmp_path / "text_tok")
    meta = read_meta(d)
    assert meta["kind"] == "text" and meta["type"] == "bpe_text"
    assert meta["tokenizer_id"] == tok.tokenizer_id
    for loaded in (TextTokenizer.load(d), load_tokenizer(d)):
        assert isinstance(loaded, TextTokenizer)
        assert loaded.tokenizer_id == tok.tokenizer_id
        assert loaded.vocab_size == tok.vocab_size
        for s in HARD_STRINGS + corpus[:5]:
            np.testing.assert_array_equal(loaded.encode(s), tok.encode(s))
    desc = load_tokenizer(d).describe()
    assert desc["path"] == str(d)
    assert {k: desc[k] for k in ("kind", "vocab_size", "tokenizer_id")} == {
        "kind": "text", "vocab_size": tok.vocab_size, "tokenizer_id": tok.tokenizer_id}


def test_training_is_deterministic_and_id_tracks_content(corpus, tok):
    again = TextTokenizer.train(corpus, vocab_size=600)
    assert again.tokenizer_id == tok.tokenizer_id
    other = TextTokenizer.train(corpus, vocab_size=500)
    assert other.tokenizer_id != tok.tokenizer_id
    assert tok.tokenizer_id.startswith("bpe_text-")


def test_user_tokenizer_json_loads(tok, tmp_path):
    f = tmp_path / "user" / "tokenizer.json"
    f.parent.mkdir()
    tok.hf_tokenizer.save(str(f))
    for user in (load_tokenizer(f), load_tokenizer(f.parent)):
        assert isinstance(user, TextTokenizer)
        assert user.describe()["path"] == str(f.parent)
        for s in HARD_STRINGS:
            np.testing.assert_array_equal(user.encode(s), tok.encode(s))
            assert user.decode(user.encode(s)) == s


def test_user_tokenizer_with_special_tokens_counts_them(tmp_path, corpus):
    from tokenizers import AddedToken
    t = TextTokenizer.train(corpus[:30], vocab_size=300)
    hf = t.hf_tokenizer
    n = hf.get_vocab_size(with_added_tokens=True)
    hf.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    f = tmp_path / "tokenizer.json"
    hf.save(str(f))
    user = load_tokenizer(f)
    assert user.vocab_size == n + 1
    ids = user.encode("a<|endoftext|>b")
    assert n in ids.tolist()
    assert user.decode(ids) == "a<|endoftext|>b"


def test_errors_name_the_problem(tok, tmp_path):
    with pytest.raises(TokenizerError, match="must lie in"):
        tok.decode([tok.vocab_size])
    with pytest.raises(TokenizerError, match="takes a str"):
        tok.encode(b"bytes")
    with pytest.raises(TokenizerError, match="vocab_size >= 256"):
        TextTokenizer.train(["abc"], vocab_size=100)
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="mdm_tokenizer.json is missing"):
        load_tokenizer(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text("{not a tokenizer")
    with pytest.raises(TokenizerError, match="not a valid Hugging Face tokenizer.json"):
        load_tokenizer(bad)


def test_tampered_or_unknown_metadata_is_rejected(tok, tmp_path):
    d = tok.save(tmp_path / "t")
    meta_file = d / "mdm_tokenizer.json"
    meta = json.loads(meta_file.read_text())
    meta["tokenizer_id"] = "bpe_text-0000000000000000"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(TokenizerError, match="does not match"):
        load_tokenizer(d)
    meta["type"] = "no_such_type"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(TokenizerError, match="unknown tokenizer type"):
        load_tokenizer(d)
    meta["type"], meta["kind"] = "bpe_text", "smell"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(TokenizerError, match="kind"):
        load_tokenizer(d)
