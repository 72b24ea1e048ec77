import numpy as np
import pytest

from mdm.token_space import (AUDIO, IMAGE, LAYOUT, TEXT, LayoutError, Sequences, TokenSpace,
                             pack_text, pair_sequence, validate_sequences)


@pytest.fixture
def space():
    return TokenSpace(text_vocab=100, image_vocab=50, audio_vocab=30, pad_vocab_to=64)


def test_offsets_are_contiguous_and_recorded(space):
    assert space.text_offset == 16
    assert space.image_offset == 116 and space.audio_offset == 166
    assert space.used_vocab == 196 and space.vocab_size == 256
    d = space.to_dict()
    assert d["image_offset"] == 116 and d["specials"]["MASK"] == space.mask
    tok = np.array([0, 3, 16, 115, 116, 165, 166, 195])
    np.testing.assert_array_equal(space.modality_of(tok),
                                  [LAYOUT, LAYOUT, TEXT, TEXT, IMAGE, IMAGE, AUDIO, AUDIO])


def test_pack_text_keeps_every_token_and_marks_segments(space):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 100, n) for n in (5, 30, 1, 17, 40)]
    s = pack_text(docs, 16, space)
    validate_sequences(s, space, 16)
    real = s.tokens[s.segment_ids > 0]
    eos = space.special("EOS")
    assert (real == eos).sum() == len(docs)
    np.testing.assert_array_equal(space.to_local(real[real != eos], "text"), np.concatenate(docs))
    # a document split across rows gets a new segment id on the next row; PAD only at the end
    assert s.segment_ids[-1, -1] == 0 and s.tokens[-1, -1] == space.pad
    assert not s.cond.any()


def test_pair_layouts(space):
    t2i = pair_sequence("T2I", [1, 2, 3], [4, 5], 12, space)
    sp = space.special
    assert t2i.tokens[0, :8].tolist() == [sp("T2I"), 17, 18, 19, sp("BOI"), 120, 121, sp("EOI")]
    assert t2i.cond[0, :8].tolist() == [False, True, True, True, False, False, False, False]
    assert t2i.segment_ids[0].tolist() == [1] * 8 + [0] * 4
    s2t = pair_sequence("S2T", [1], [2, 3], 10, space)
    assert s2t.tokens[0, :7].tolist() == [sp("S2T"), sp("BOA"), 168, 169, sp("EOA"), 17, sp("EOS")]
    assert s2t.cond[0, :7].tolist() == [False, False, True, True, False, False, False]
    validate_sequences(s2t, space, 10)


def test_bad_inputs_raise_clear_errors(space):
    with pytest.raises(LayoutError, match="text token ids must lie in"):
        pack_text([[1, 100]], 8, space)
    with pytest.raises(LayoutError, match="image token ids must lie in"):
        pair_sequence("T2I", [1], [50], 8, space)
    with pytest.raises(LayoutError, match="seq_len is 6"):
        pair_sequence("T2I", [1, 2, 3], [1, 2], 6, space)
    with pytest.raises(LayoutError, match="unknown task"):
        pair_sequence("X2Y", [1], [1], 8, space)
    good = pair_sequence("T2S", [1, 2], [3], 10, space)
    bad = Sequences(good.tokens.copy(), good.segment_ids.copy(), good.cond.copy())
    bad.tokens[0, 2] = space.mask
    with pytest.raises(LayoutError, match="MASK"):
        validate_sequences(bad, space)
    bad = Sequences(good.tokens.copy(), good.segment_ids.copy(), good.cond.copy())
    bad.segment_ids[0, -1] = 1
    with pytest.raises(LayoutError, match="PAD tokens and segment id 0"):
        validate_sequences(bad, space)
    bad = Sequences(good.tokens.copy(), good.segment_ids.copy(), good.cond.copy())
    bad.tokens[0, 3], bad.segment_ids[0, 3] = space.pad, 0
    with pytest.raises(LayoutError, match="only appear at the end"):
        validate_sequences(bad, space)
    with pytest.raises(LayoutError, match="expected seq_len 12"):
        validate_sequences(good, space, 12)
    with pytest.raises(LayoutError, match="positive integer"):
        TokenSpace(text_vocab=0)
