"""The offline tokenize step on the embedded demo data and on raw files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mdm.data.shards import load_manifest, open_split
from mdm.token_space import TokenSpace


@pytest.mark.slow
def test_demo_shards_decode_back_to_the_inputs(tiny_demo, tiny_demo_shards):
    m = load_manifest(tiny_demo_shards)
    toks = {k: tiny_demo.tokenizer(k) for k in ("text", "image", "audio")}
    ts = m["token_space"]
    space = TokenSpace(ts["text_vocab"], ts["image_vocab"], ts["audio_vocab"], ts["pad_vocab_to"])
    # offsets are derived from the tokenizers' vocabularies and recorded with their ids
    assert space.text_vocab == toks["text"].vocab_size and space.image_vocab == toks["image"].vocab_size
    assert m["tokenizers"]["audio"]["tokenizer_id"] == toks["audio"].tokenizer_id
    assert m["tokenizers"]["audio"]["frame_rate"] == 50.0
    train = open_split(tiny_demo_shards, "train")
    # every training document comes back, in order, from the packed text rows
    tok = train["text"]["tokens"].read().result()
    seg = train["text"]["segment_ids"].read().result()
    eos = space.special("EOS")
    stream = tok[seg > 0]
    docs, cur = [], []
    for t in stream:
        if t == eos:
            docs.append(toks["text"].decode(space.to_local(np.array(cur, np.int64), "text")))
            cur = []
        else:
            cur.append(t)
    assert docs == [d for d in tiny_demo.text("train") if d]
    # each image-text pair: a T2I row whose caption decodes to the caption and whose image
    # codes equal the image tokenizer's encoding
    images, recs = tiny_demo.image_text("train")
    rows = train["image"]["tokens"].read().result()
    t2i = rows[rows[:, 0] == space.special("T2I")]
    i2t = rows[rows[:, 0] == space.special("I2T")]
    assert len(t2i) == len(i2t) == len(images)
    row = t2i[0]
    boi = int(np.flatnonzero(row == space.special("BOI"))[0])
    caption = toks["text"].decode(space.to_local(row[1:boi], "text"))
    assert caption == recs[0]["caption"]
    codes = space.to_local(row[boi + 1:boi + 65], "image")
    np.testing.assert_array_equal(codes, toks["image"].encode(images[:1])[0])


@pytest.mark.slow
def test_cli_on_raw_files_and_resumption(tiny_demo, tmp_path, repo_root):
    import matplotlib.image as mpimg
    (tmp_path / "a.txt").write_text("The quick brown fox jumps over the lazy dog.")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": f"document {i}."})
                                                for i in range(20)))
    images, recs = tiny_demo.image_text()
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    caps = {}
    for i in range(6):
        mpimg.imsave(img_dir / f"{i}.png", images[i])
        caps[f"{i}.png"] = recs[i]["caption"]
    (tmp_path / "caps.json").write_text(json.dumps(caps))
    waves, arecs = tiny_demo.audio_text()
    np.save(tmp_path / "audio.npy", waves[:5])
    (tmp_path / "trans.json").write_text(json.dumps([{"text": r["text"]} for r in arecs[:5]]))
    cmd = [sys.executable, "-m", "mdm.data.tokenize", "--tokenizers",
           str(tiny_demo.root / "tokenizers"), "--text", str(tmp_path / "a.txt"),
           str(tmp_path / "b.jsonl"), "--images", str(img_dir), "--captions",
           str(tmp_path / "caps.json"), "--audio", str(tmp_path / "audio.npy"), "--transcripts",
           str(tmp_path / "trans.json"), "--out", str(tmp_path / "shards"), "--seq_len", "128",
           "--eval_fraction", "0.3"]
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    rows = out["rows"]
    assert rows["train"]["image"] + rows.get("eval", {}).get("image", 0) == 12   # 6 pairs x 2 tasks
    assert rows["train"]["audio"] + rows.get("eval", {}).get("audio", 0) == 10
    # a second run finds the finished data set and does not rewrite it
    before = os.path.getmtime(tmp_path / "shards" / "manifest.json")
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and os.path.getmtime(tmp_path / "shards" / "manifest.json") == before
    # bad input: a missing file is named before anything is written
    bad = cmd[:]
    bad[bad.index(str(tmp_path / "a.txt"))] = str(tmp_path / "missing.txt")
    p = subprocess.run(bad, cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "missing.txt" in p.stderr


@pytest.mark.slow
def test_training_on_demo_shards(tiny_demo_run):
    import json
    s = json.loads(open(os.path.join(tiny_demo_run, "summary.json")).read())
    assert s["status"] == "done" and set(s["final_eval"]) == {"text", "image", "audio"}
    cfg = json.loads(open(os.path.join(tiny_demo_run, "config.json")).read())
    assert cfg["resolved"]["data"]["source"] == "shards"
