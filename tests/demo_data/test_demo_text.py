"""The demo's English text set (mdm.demo_data.text): sources read when installed, dictionary
markup stripped to sentences, cleaning and dedup, sources recorded with their bytes, the one-line
error naming the apt command when the scale needs more prose than is installed, and the stage
key following the sources' content. Fake fortune / dictd directories stand in for the Debian
packages; one test reads the real ones where they are installed."""
import gzip
import re
from pathlib import Path

import pytest

from mdm.demo_data import build as demo_build
from mdm.demo_data import text as demo_text
from mdm.demo_data.build import build_demo_dataset
from mdm.demo_data.scales import get_scale
from mdm.demo_data.text import (
    DICT_MARKUP,
    TextCorpusTooSmallError,
    dictionary_documents,
    fortune_documents,
    make_text_corpus,
    split_paragraphs,
)

REPO = Path(__file__).resolve().parents[2]

# entries in the installed databases' own formats (copied from dict-gcide / -devil / -jargon)
GCIDE = [
    "Apron \\A\"pron\\ ([=a]\"p[u^]rn or [=a]\"pr[u^]n; 277), n. [OE.\n"
    "   napron, OF. naperon, F. napperon, dim. of OF. nape, F. nappe,\n"
    "   cloth, tablecloth, LL. napa, fr. L. mappa, napkin, table\n"
    "   napkin. See {Map}.]\n"
    "   1. An article of dress, worn on the fore part of the body, to\n"
    "      keep the clothes clean.\n"
    "      [1913 Webster]\n\n"
    "   2. A piece of lead covering the vent of a cannon. --Totten.\n"
    "      [1913 Webster]\n",
    "Lapis \\La\"pis\\, n.; pl. {Lapides}. [L.]\n"
    "   A stone.\n"
    "   [1913 Webster] Lapidist\n\n"
    "   {Lapis calaminaris}n. [NL.] (Min.) Calamine.\n\n"
    "   Syn: Syn. --ant bear, anteater, {Orycteropus afer}\n"
    "        [1913 Webster WordNet 1.5]\n",
    "Cafe \\Ca*f['e]\"\\, n. (Cookery)\n"
    "   A coffee house; a restaurant serving caf['e] noir and light\n"
    "   meals; as, the [ae]sthetic caf['e]. [Obs.]\n\n"
    "         A cup of coffee in the morning.         --Sir T.\n"
    "                                                  Browne.\n"
    "   [PJC] Cafeteria\n",
]
DEVIL = [
    "LIAR, n.  A lawyer with a roving commission.\n",
    "BRUTE, n.  See {HUSBAND}.  A _very_ useful word.\n\n"
    "    They stood before the altar and supplied\n"
    "    The fire themselves in which their fat was fried.\n",
]
JARGON = [
    "Cancelmoose[tm]\n n.\n\n"
    "    [Usenet] The archetype and model of all good {\n"
    "    spam-fighters}. _Knowing_ this is important.\n",
    "kahuna\n /k@\u00b7hoo'n@/, n.\n\n"
    "    [IBM: from the Hawaiian title for a shaman] Synonym for {wizard}, {guru}.\n",
]
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(n: int) -> str:
    s = ""
    while True:
        s = B64[n % 64] + s
        n //= 64
        if not n:
            return s


def write_dictd(root: Path, name: str, entries: list[str]) -> None:
    """A dictd database as Debian installs it: NAME.dict.dz (gzip) and NAME.index."""
    root.mkdir(parents=True, exist_ok=True)
    data, index = b"00-database-short\n   header\n\n", []
    index.append(f"00-database-short\t{_b64(0)}\t{_b64(len(data))}")
    for e in entries:
        b = e.encode("utf-8")
        head = e.split("\n", 1)[0].split("\\", 1)[0].split(",")[0].strip()
        index.append(f"{head}\t{_b64(len(data))}\t{_b64(len(b))}")
        index.append(f"{head} alias\t{_b64(len(data))}\t{_b64(len(b))}")   # same entry twice
        data += b + b"\n"
    with gzip.open(root / f"{name}.dict.dz", "wb") as f:
        f.write(data)
    (root / f"{name}.index").write_text("\n".join(sorted(index)) + "\n", encoding="utf-8")


@pytest.fixture
def fake_sources(tmp_path):
    """(fortunes dir, dictd dir) holding a few entries of each source."""
    fort = tmp_path / "fortunes"
    (fort / "off").mkdir(parents=True)
    (fort / "wisdom").write_text("First fortune,\ntwo lines.\n%\nSecond one here.\n%\n"
                                 "  /\\_/\\\n ( o.o )\n  > ^ <\n%\n")      # a cat drawn in characters
    (fort / "people").write_text("Second   one HERE.\n%\n")              # a duplicate of the above
    (fort / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    (fort / "off" / "rude").write_text("Not included at all.\n%\n")
    dictd = tmp_path / "dictd"
    write_dictd(dictd, "gcide", GCIDE)
    write_dictd(dictd, "devil", DEVIL)
    write_dictd(dictd, "jargon", JARGON)
    return fort, dictd


# --- reading and cleaning -----------------------------------------------------------------------
def test_gcide_entries_become_plain_sentences(fake_sources):
    _, dictd = fake_sources
    docs = dictionary_documents("gcide", dictd, max_doc_chars=10_000)
    assert docs == [
        "Apron: 1. An article of dress, worn on the fore part of the body, to keep the clothes "
        "clean.\n2. A piece of lead covering the vent of a cannon.\n"
        "Lapis: A stone.\nLapis calaminaris: Calamine.\n"
        "Cafe: A coffee house; a restaurant serving cafe noir and light meals; as, the "
        "aesthetic cafe.\nA cup of coffee in the morning."]
    short = dictionary_documents("gcide", dictd, max_doc_chars=200)      # grouped to the limit
    assert len(short) > 1 and all(len(d) <= 200 for d in short)
    assert "\n".join(short) == docs[0]


def test_devil_and_jargon_entries_lose_their_markup(fake_sources):
    _, dictd = fake_sources
    assert dictionary_documents("devil", dictd) == [
        "LIAR, n. A lawyer with a roving commission.",
        "BRUTE, n. See HUSBAND. A very useful word.\n\n"
        "    They stood before the altar and supplied\n"
        "    The fire themselves in which their fat was fried."]
    assert dictionary_documents("jargon", dictd, max_doc_chars=10_000) == [
        "Cancelmoose: The archetype and model of all good spam-fighters. Knowing this is "
        "important.\nkahuna: Synonym for wizard, guru."]


def test_fortunes_are_cleaned_and_pictures_dropped(fake_sources, tmp_path):
    fort, _ = fake_sources
    assert fortune_documents(tmp_path / "absent") == []
    assert fortune_documents(fort)[:2] == ["Second   one HERE.", "First fortune,\ntwo lines."]
    _, _, info = make_text_corpus(0, fortunes_dir=fort, dictd_dir=tmp_path / "none",
                                  sources=["fortunes"])
    # the picture goes (not prose), the second copy of "Second one here." goes (dedup)
    assert info["sources"]["fortunes"]["docs"] == 2 and info["sources"]["fortunes"]["found"]


def test_corpus_records_its_sources_and_has_no_markup_left(fake_sources):
    fort, dictd = fake_sources
    train, valid, info = make_text_corpus(0, max_chars_per_source=60_000,
                                          fortunes_dir=fort, dictd_dir=dictd)
    src = info["sources"]
    assert list(src) == ["pydoc_topics", "fortunes", "devil", "jargon", "gcide"]
    assert all(s["found"] and s["docs"] > 0 for s in src.values())
    assert src["gcide"]["package"] == "dict-gcide" and src["pydoc_topics"]["package"]
    docs = train + valid
    assert info["total_bytes"] == sum(s["bytes"] for s in src.values()) == \
        sum(len(d.encode("utf-8")) for d in docs)
    assert 60_000 <= src["pydoc_topics"]["chars"] < 60_000 + 2001      # capped per source
    dict_docs = [d for d in docs if d.startswith(("Apron:", "LIAR", "BRUTE", "Cancelmoose"))]
    assert len(dict_docs) == 4
    for d in dict_docs:
        assert not DICT_MARKUP.search(d), d
    assert len({" ".join(d.lower().split()) for d in docs}) == len(docs)   # deduplicated
    assert all(d == d.strip("\n") and "\r" not in d and "\n\n\n" not in d for d in docs)


def test_text_corpus_is_deterministic_and_split(tmp_path):
    none = tmp_path / "none"
    kw = dict(max_chars=50_000, fortunes_dir=none, dictd_dir=none)
    a, b, c = make_text_corpus(0, **kw), make_text_corpus(0, **kw), make_text_corpus(1, **kw)
    assert a == b
    assert a[0] != c[0]
    train, valid, info = a
    assert len(train) > 10 and len(valid) >= 1
    assert not set(train) & set(valid)
    assert info["sources"]["fortunes"] == {"package": "fortunes", "found": False, "docs": 0,
                                           "chars": 0, "bytes": 0}
    assert 50_000 <= info["train_chars"] + info["valid_chars"] < 50_000 + 2000 + 1
    assert all(d.strip() for d in train + valid)


def test_split_paragraphs_respects_the_limit():
    text = "\n\n".join(f"paragraph {i} " + "x" * 50 for i in range(20))
    chunks = split_paragraphs(text, 200)
    assert all(len(c) <= 200 for c in chunks)
    assert "\n\n".join(chunks) == text


# --- too little prose: one line naming the apt command ---------------------------------------------
def test_too_little_prose_fails_with_one_line_naming_apt(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TextCorpusTooSmallError) as e:
        make_text_corpus(0, min_bytes=2_000_000, fortunes_dir=empty, dictd_dir=empty,
                         scale_name="small")
    msg = str(e.value)
    assert "\n" not in msg
    assert "the small scale needs 2,000,000" in msg
    assert "missing: fortunes, dict-devil, dict-jargon, dict-gcide" in msg
    assert "apt-get install fortunes fortunes-min dict-gcide dict-devil dict-jargon" in msg


def test_small_build_without_text_packages_stops_at_the_text_stage(tmp_path, monkeypatch):
    """The demo scale asks for >= 2 MB; with the source directories empty the build stops at its
    first stage with that line, and leaves no half-written stage."""
    assert get_scale("small").text_min_bytes >= 2_000_000
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(demo_text, "FORTUNES_DIR", empty)
    monkeypatch.setattr(demo_text, "DICTD_DIR", empty)

    def later_stage(*a, **k):                       # never reached (and never built here)
        raise AssertionError("the build went on past the text stage")

    monkeypatch.setattr(demo_build, "_build_image_text", later_stage)
    with pytest.raises(TextCorpusTooSmallError, match=r"sudo apt-get install fortunes"):
        build_demo_dataset(tmp_path / "demo", scale="small", progress=False)
    assert not (tmp_path / "demo" / "text").exists()
    assert not list((tmp_path / "demo").glob(".text.tmp*"))


def test_text_stage_key_follows_the_sources_content(fake_sources, monkeypatch):
    fort, dictd = fake_sources
    monkeypatch.setattr(demo_text, "FORTUNES_DIR", fort)
    monkeypatch.setattr(demo_text, "DICTD_DIR", dictd)
    sc = get_scale("small")
    before = demo_build._stage_keys(sc, 0)
    assert demo_build._stage_keys(sc, 0) == before
    f = fort / "people"
    f.write_text(f.read_text().replace("HERE", "THERE"[:4]))      # same size, new content
    after = demo_build._stage_keys(sc, 0)
    assert after["text"] != before["text"]
    assert after["image_text"] == before["image_text"]
    write_dictd(dictd, "gcide", GCIDE[:2])                          # a changed dictionary
    assert demo_build._stage_keys(sc, 0)["text"] != after["text"]


def test_makefile_installs_the_text_packages():
    mk = (REPO / "Makefile").read_text()
    m = re.search(r"^TEXT_PACKAGES := (.+)$", mk, re.M)
    assert m and tuple(m.group(1).split()) == demo_text.TEXT_PACKAGES
    assert "$(TEXT_PACKAGES)" in mk.split("system-deps:", 2)[-1]


# --- the installed Debian packages, where present --------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not all(demo_text.source_files()[n] for n in ("fortunes", "devil", "jargon",
                                                                   "gcide")),
                    reason="the demo's text packages are not installed (make system-deps)")
def test_installed_sources_give_the_small_scale_its_prose(monkeypatch):
    sc = get_scale("small")
    # the dictionaries' documents as the corpus read them, checked below (parsed once: GCIDE
    # alone takes seconds)
    read = {}
    real = demo_text.dictionary_documents

    def reading(name, *args, **kwargs):
        read[name] = real(name, *args, **kwargs)
        return read[name]

    monkeypatch.setattr(demo_text, "dictionary_documents", reading)
    train, valid, info = make_text_corpus(
        0, min_bytes=sc.text_min_bytes, max_chars_per_source=sc.text_max_chars_per_source,
        sources=sc.text_sources)
    assert info["total_bytes"] >= 2_000_000
    assert all(s["found"] and s["bytes"] > 100_000 for s in info["sources"].values())
    for name in ("devil", "jargon", "gcide"):
        for d in read[name]:
            prose = "\n".join(ln for ln in d.split("\n") if not ln.startswith(" "))  # not verse / code
            assert not DICT_MARKUP.search(prose), (name, d[:300])


def test_make_demo_ends_with_the_one_line(tmp_path, monkeypatch, capsys):
    """`make demo` (launch.demo) without the text packages: exit 2 and the line, no traceback."""
    from launch import demo
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(demo_text, "FORTUNES_DIR", empty)
    monkeypatch.setattr(demo_text, "DICTD_DIR", empty)
    monkeypatch.setattr(demo_build, "_build_image_text", lambda *a, **k: 1 / 0)
    assert demo.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: demo text: ") and "apt-get install fortunes" in err[-1]
