"""experiments/sweep.py (typed arguments, product / zip) and launch/sweeps.py (overrides, expansion): the sweep errors."""
import pytest

from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product, zip_
from launch.sweeps import apply_overrides, expand, load_module


def test_parse_arg_types_and_errors():
    d = dict(size="s2", tokens=2e8, steps=10, on=False, sizes=("s0",), xs=(1.0,))
    a = parse_arg("size=s3,tokens=1e+5,steps=20,on=true,sizes=s0+s1,xs=1e+5+2", d)
    assert a == dict(size="s3", tokens=1e5, steps=20, on=True, sizes=("s0", "s1"),
                     xs=(1e5, 2.0))
    assert a.size == "s3" and parse_arg(None, d) == d
    assert parse_arg("isoflop,steps=3", dict(kind="grid", steps=1), positional="kind").kind == \
        "isoflop"
    with pytest.raises(SweepError, match="unknown key 'sise'; known keys: on, size"):
        parse_arg("sise=s1", dict(size="s1", on=True))
    with pytest.raises(SweepError, match="tokens='lots' is not a valid float"):
        parse_arg("tokens=lots", d)
    with pytest.raises(SweepError, match="steps='2.5' is not a valid int"):
        parse_arg("steps=2.5", d)


def test_format_round_trips_exactly():
    for v in (2e8, 0.25, 3, 1 / 3, 323485696.0, 1e-4, 5e9):
        text = format_arg(x=v)
        assert parse_arg(text, dict(x=float(v)))["x"] == v
    assert fmt(2e8) == "2e8" and fmt(2.5e4) == "2.5e4" and fmt(0.25) == "0.25" and fmt(3) == "3"
    with pytest.raises(SweepError):
        format_arg(path="a,b")


def test_product_and_zip():
    assert product(a=[1, 2], b="xy") == [dict(a=1, b="x"), dict(a=1, b="y"),
                                         dict(a=2, b="x"), dict(a=2, b="y")]
    assert zip_(a=[1, 2], b=[3, 4]) == [dict(a=1, b=3), dict(a=2, b=4)]
    with pytest.raises(SweepError, match="different lengths"):
        zip_(a=[1, 2], b=[3])


def test_overrides_are_typed_and_unknown_fields_rejected():
    from experiments.base import get_config
    c = get_config("tiny")
    apply_overrides(c, {"train.total_tokens": "2e6", "objective.complementary": "true",
                        "data.seq_len": "32"}, from_strings=True)
    assert c.train.total_tokens == 2e6 and c.objective.complementary is True
    assert c.data.seq_len == 32
    with pytest.raises(SweepError, match="unknown config field config.model.no_such"):
        apply_overrides(c, {"model.no_such": 1})
    with pytest.raises(SweepError, match="unknown config field config.nope"):
        apply_overrides(c, {"nope.x": 1})
    with pytest.raises(SweepError, match="config.data.seq_len"):
        apply_overrides(c, {"data.seq_len": "long"}, from_strings=True)
    with pytest.raises(SweepError, match="is a section"):
        apply_overrides(c, {"model": 1})


def _study(tmp_path, body):
    p = tmp_path / "study.py"
    p.write_text("from experiments.base import get_config as base\n"
                 "from experiments.sweep import Point, Sweep\n"
                 "def get_config(arg=None):\n"
                 "    c = base('tiny')\n"
                 "    if arg: c.train.total_tokens = float(arg)\n"
                 "    return c\n" + body)
    return load_module(str(p))


def test_duplicate_runs_are_errors(tmp_path):
    mod = _study(tmp_path, "def sweep(arg=None):\n"
                           "    return Sweep('s', [Point('a', '2e5'), Point('a', '2e5')])\n")
    with pytest.raises(SweepError, match="duplicate run id 'a-[0-9a-f]{8}'"):
        expand(mod, mod.sweep())
    sw = Sweep("s", [Point("a", "2e5"), Point("b", "2e5")])
    with pytest.raises(SweepError, match="points 'a' and 'b' resolve to the same config"):
        expand(mod, sw)
    sw = Sweep("s", [Point("a", "2e5"), Point("a", "3e5")])
    with pytest.raises(SweepError, match="two points are named 'a'"):
        expand(mod, sw)
    sw = Sweep("s", [Point("a", "2e5", {"model.nope": 1})])
    with pytest.raises(SweepError, match="point 'a': unknown config field config.model.nope"):
        expand(mod, sw)
    assert len(expand(mod, Sweep("s", [Point("a", "2e5"), Point("b", "3e5")]))) == 2


def test_split_list_keeps_exponents_and_splits_words_ending_in_e():
    from experiments.sweep import split_list
    assert split_list("1e+5+2.5e+4") == ["1e+5", "2.5e+4"]
    assert split_list("image+audio") == ["image", "audio"]
    assert split_list("confidence+ancestral+margin") == ["confidence", "ancestral", "margin"]
