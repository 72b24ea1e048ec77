"""Every experiment config and every sweep expansion: builds (mdm.trainer.build), validates, and
expands to unique run ids that are stable across processes; the ladder rule; IsoFLOP budgets."""
import json
import os
import re
import subprocess
import sys

import pytest

from experiments import ladder, scaling
from launch.sweeps import config_hash, expand, get_sweep, load_module
from mdm.flops import flops_per_token
from mdm.model import count_params
from mdm.train_state import abstract_params
from mdm.assemble import build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ID = re.compile(r"^[A-Za-z0-9._-]+-[0-9a-f]{8}$")

# (experiment file, sweep arguments to expand); None = the default sweep
SWEEPS = {
    "experiments/demo.py": [None, "smoke", "mh", "grid,mix=text,sizes=w16+s0", "heldout"],
    "experiments/ladder.py": [None],
    "experiments/scaling.py": [None, "isoflop"],
    "experiments/mixing.py": [None, "n=5,interior=true", "cpu_quick"],
    "experiments/noise_schedule.py": [None, "shared", "product", "cpu_quick"],
    "experiments/batch_size.py": [None, "cpu_quick"],
    "experiments/antimasking.py": [None, "cpu_quick"],
    "experiments/sampling.py": [None],
}
CASES = [(f, a) for f, args in SWEEPS.items() for a in args]


def _ids(path, arg):
    mod = load_module(os.path.join(REPO, path))
    return [e.run_id for e in expand(mod, get_sweep(mod, arg))]


@pytest.mark.parametrize("path", sorted(SWEEPS))
def test_default_config_builds(path):
    mod = load_module(os.path.join(REPO, path))
    b = build(mod.get_config(None))
    assert b.total_steps >= 1


@pytest.mark.parametrize("path,arg", CASES)
def test_sweep_builds_and_has_unique_stable_ids(path, arg):
    mod = load_module(os.path.join(REPO, path))
    sw = get_sweep(mod, arg)
    assert sw.points and re.fullmatch(r"[A-Za-z0-9._-]+", sw.name)
    ex = expand(mod, sw)
    for e in ex:
        build(e.config)  # validates, and resolves everything a run needs
        assert ID.match(e.run_id), e.run_id
        assert e.run_id.endswith(config_hash(e.config))
        # the point's argument is what the trainer's --config FILE:ARG receives
        assert mod.get_config(e.point.arg).to_dict() == e.config.to_dict() or e.point.overrides
    ids = [e.run_id for e in ex]
    assert len(ids) == len(set(ids))
    assert ids == _ids(path, arg)  # same ids on a second expansion


def test_run_ids_are_the_same_in_another_process():
    script = ("import json, os\n"
              "from launch.sweeps import expand, get_sweep, load_module\n"
              "out = {}\n"
              "for p, a in [('experiments/demo.py', None), ('experiments/scaling.py', "
              "'isoflop,mix=text'), ('experiments/batch_size.py', None)]:\n"
              "    m = load_module(p)\n"
              "    out[p] = [e.run_id for e in expand(m, get_sweep(m, a))]\n"
              "print(json.dumps(out))\n")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    p = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    other = json.loads(p.stdout.strip().splitlines()[-1])
    assert other["experiments/demo.py"] == _ids("experiments/demo.py", None)
    assert other["experiments/scaling.py"] == _ids("experiments/scaling.py", "isoflop,mix=text")
    assert other["experiments/batch_size.py"] == _ids("experiments/batch_size.py", None)


def test_hash_ignores_placement_but_not_science():
    from experiments.demo import get_config
    c = get_config("size=s0,tokens=1e4")
    h = config_hash(c)
    for field, value in (("run_id", "x"), ("sweep", "y"), ("study", "isoflop"),
                         ("multihost.num_processes", 4),
                         ("train.max_steps", 3), ("logging.progress", True)):
        d = c.copy_and_resolve_references()
        node = d
        *path, last = field.split(".")
        for k in path:
            node = node[k]
        node[last] = value
        assert config_hash(d) == h, field
    d = c.copy_and_resolve_references()
    d.optimizer.lr = 1e-4
    assert config_hash(d) != h


@pytest.mark.parametrize("path", sorted(SWEEPS))
def test_experiment_files_record_their_study(path):
    """Each experiment file declares its study and its configs carry it (config.study, written
    by the trainer to config.json's "study"): the analysis groups runs by it."""
    from mdm.run_contract import STUDIES
    mod = load_module(os.path.join(REPO, path))
    assert mod.STUDY in STUDIES
    assert mod.get_config(None).study == mod.STUDY
    sw = get_sweep(mod, None if path != "experiments/scaling.py" else "grid,mix=text,sizes=s4")
    assert {e.config.study for e in expand(mod, sw)} == {mod.STUDY}


def test_isoflop_points_record_the_isoflop_study():
    ex = expand(scaling, get_sweep(scaling, "isoflop,mix=text"))
    assert {e.config.study for e in ex} == {"isoflop"}
    assert {e.config.study for e in expand(scaling, get_sweep(scaling, "grid,mix=text,sizes=s4"))} \
        == {"scaling"}


def test_ladder_rule():
    sizes = ladder.ladder()
    assert [s.name for s in sizes] == [f"s{i}" for i in range(len(sizes))]
    assert sizes[0].width == 64 and sizes[-1].width == 3072
    for s in sizes:
        assert s.depth == max(2, round(s.width / 128))
        assert s.heads * s.head_dim == s.width and s.head_dim in (32, 64, 128)
        assert s.head_dim == (32 if s.width < 256 else 64 if s.width < 2048 else 128)
    counts = [ladder.param_counts(ladder.get_config(f"size={s.name},scale=paper"))
              for s in sizes]
    ne = [c["params_non_embedding"] for c in counts]
    assert ne == sorted(ne) and len(set(ne)) == len(ne)
    # the top rung is the paper's ~3B model (with a 32k-token text vocabulary)
    c = ladder.get_config("size=s11,scale=paper")
    c.token_space.text_vocab = 32000
    assert 2.8e9 < ladder.param_counts(c)["params_total"] < 3.2e9
    # one CompleteP base shape for every rung, so hyperparameters transfer
    for s in sizes:
        m = ladder.get_config(s.name).model
        assert (m.parameterization, m.base_width, m.base_depth) == ("completep", 128, 2)


def test_ladder_counts_are_the_trainers():
    c = ladder.get_config("size=s3,scale=cpu")
    b = build(c)
    counts = count_params(abstract_params(b.model, c.data.seq_len))
    assert ladder.param_counts(c) == counts
    assert ladder.flops_per_token(c) == flops_per_token(
        counts["params_non_embedding"], c.model.depth, c.data.seq_len, c.model.width)


def test_isoflop_points_spend_their_budget():
    mod = load_module(os.path.join(REPO, "experiments/scaling.py"))
    ex = expand(mod, get_sweep(mod, "isoflop,mix=text+tri"))
    budgets = {}
    for e in ex:
        C = float(e.point.name.split("-")[0][1:])
        b = build(e.config)
        fpt = ladder.flops_per_token(e.config)
        flops = b.total_steps * b.tokens_per_step * fpt  # what the trainer will log
        assert abs(flops / C - 1) <= scaling.SWEEP_ARGS["tol"], e.point.name
        budgets.setdefault((C, e.config.data.mixture.text), []).append(e.config.model.width)
    assert len(budgets) == 2 * len(scaling.SWEEP_ARGS["budgets"])
    assert all(len(w) >= 3 for w in budgets.values())


def test_isoflop_without_enough_sizes_is_an_error():
    from experiments.sweep import SweepError
    with pytest.raises(SweepError, match="budget 1e\\+18 .* has 1 sizes"):
        scaling.sweep("isoflop,mix=text,sizes=s8,budgets=1e18")


def test_study_sweeps_cover_their_axes():
    from experiments import batch_size, mixing, noise_schedule, sampling
    bs = expand(load_module(os.path.join(REPO, "experiments/batch_size.py")), batch_size.sweep())
    sde = {(e.config.train.physical_batch, e.config.train.total_tokens, e.config.sde.enabled)
           for e in bs}
    assert {b for b, _, _ in sde} == {32, 64, 128, 256, 512, 1024}
    assert {t for _, t, _ in sde} == {5e8, 1e9, 2e9} and {s for *_, s in sde} == {False, True}
    on = [e for e in bs if e.config.sde.enabled]
    assert all(e.config.sde.ref_batch == 256 and e.config.sde.ref_tokens == 1e9 for e in on)
    assert all(e.config.train.micro_batch < e.config.train.physical_batch for e in bs)
    mix = [e.config.data.mixture for e in
           expand(load_module(os.path.join(REPO, "experiments/mixing.py")), mixing.sweep())]
    assert all(abs(m.text + m.image + m.audio - 1) < 1e-9 for m in mix)
    assert len({(m.text, m.image, m.audio) for m in mix}) == 15
    sch = noise_schedule.sweep("per_modality")
    cfgs = [noise_schedule.get_config(p.arg).objective.schedule for p in sch.points]
    assert sum(all(s[m] == "linear" for m in ("text", "image", "audio")) for s in cfgs) == 1
    assert sum(s.image == "cosine" and s.text == "linear" for s in cfgs) == 1
    sa = sampling.sweep()
    assert sa.entrypoint == "mdm.eval_samples"
    g = {(p.name.split("-")[0]) for p in sa.points}
    assert g == {"text", "image", "audio"}
    c = sampling.get_config("modality=audio,steps=64,guidance=5,sampler=confidence")
    assert (c.sampling.audio.steps, c.sampling.audio.guidance, c.sampling.audio.sampler) == \
        (64, 5.0, "confidence")


def test_demo_grid_is_an_isoflop_design_of_micro_sizes_with_cooldown_branches():
    """One WSD run per size; with its branches a size reaches every compute budget at which its
    tokens per parameter lie in the band (to a step), and no other; every budget sees at least
    3 sizes; transformer parameters span more than 10x; `tokens=` adds common token counts."""
    from experiments import ladder
    from mdm.cooldown import plan_branches
    mod = load_module(os.path.join(REPO, "experiments/demo.py"))
    ex = expand(mod, get_sweep(mod, None))
    assert [e.config.model.width for e in ex] == [8, 16, 32, 48, 64]
    budgets = mod.KINDS["grid"]["budgets"]
    lo, hi = mod.BAND
    trans = []
    sizes_at = {C: 0 for C in budgets}
    for e in ex:
        c = e.config
        b = build(c)
        assert c.optimizer.decay == "wsd" and c.study == "isoflop"
        assert min(c.data.mixture.values()) > 0  # all three modalities
        ends = [br.tokens for br in plan_branches(c, "/x/run", "run", b.tokens_per_step)]
        ends.append(float(c.train.total_tokens))
        fpt = ladder.flops_per_token(c)
        pc = ladder.param_counts(c)
        n = pc["params_non_embedding"]
        for C in budgets:     # a budget in the band is hit to within one step of tokens
            hit = min(abs(d * fpt / C - 1) for d in ends) < b.tokens_per_step / min(ends) + 1e-9
            assert hit == (lo <= C / fpt / n <= hi), (c.model.width, C)
            sizes_at[C] += hit
        assert all(lo <= d / n <= hi for d in ends)
        trans.append(pc["params_non_embedding"] - pc["params_head"])
        assert b.total_steps <= 8000
    assert min(sizes_at.values()) >= 3, sizes_at
    assert max(trans) / min(trans) >= 10
    ex = expand(mod, get_sweep(mod, "grid,sizes=w16+w64,tokens=5e5+1e6"))
    for e in ex:
        b = build(e.config)
        ends = [br.tokens for br in plan_branches(e.config, "/x/r", "r", b.tokens_per_step)]
        ends.append(float(e.config.train.total_tokens))
        assert sorted(round(x, -4) for x in ends) == [5e5, 1e6]
    sh = mod.get_config("size=w16,source=shards,path=/data/demo_shards")
    assert (sh.data.source, sh.data.path) == ("shards", "/data/demo_shards")
