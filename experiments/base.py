"""Base config for every experiment: model, objective, data, optimizer, run length in tokens.

Usage: `python -m mdm.train --config experiments/base.py:tiny --workdir runs/x
        --config.optimizer.lr=1e-3`

The string argument picks a preset: `tiny` (CPU tests, seconds), `small` (CPU, minutes) or
`default` (a 12-layer, 768-wide model). Studies in experiments/ start from `get_config` here
and change only what they study.
"""
from __future__ import annotations

import ml_collections as mlc


def base_config() -> mlc.ConfigDict:
    c = mlc.ConfigDict()
    c.seed = 0
    c.run_id = ""          # default: the basename of --workdir
    c.sweep = ""           # default: the basename of the workdir's parent
    c.study = ""           # the study the run belongs to (mdm.run_contract.STUDIES; each
    #                        experiment file sets its STUDY); "" = none

    c.model = mlc.ConfigDict(dict(
        width=768, depth=12, num_heads=12, head_dim=0, mlp_dim=0, qk_norm=False,
        rope_theta=10000.0, norm_eps=1e-6, dtype="bfloat16", param_dtype="float32",
        init_std=0.02, parameterization="standard", base_width=256, base_depth=4,
        depth_alpha=1.0, attn_scale="auto", base_head_dim=0, scan_layers=False, remat=False,
        # auto | einsum | xla | cudnn | splash; auto = einsum on CPU, cudnn on GPU (bf16/fp16
        # compute, else xla), splash on TPU (mdm/attention.py)
        attention="auto"))
    # dtype is the compute dtype of the products (bf16 operands, float32 accumulation,
    # mdm.matmul); parameters, optimizer state, softmax and loss stay float32. Layers are
    # unrolled (the scan costs 15-24% step time on CPU); experiments/ladder.py scans from 12
    # layers, where unrolled compile time and memory grow.

    # Sizes of each modality's tokenizer vocabulary; offsets follow (mdm.token_space).
    c.token_space = mlc.ConfigDict(dict(text_vocab=4096, image_vocab=1000, audio_vocab=1000,
                                        pad_vocab_to=128))

    c.objective = mlc.ConfigDict(dict(
        schedule=mlc.ConfigDict(dict(text="linear", image="linear", audio="linear")),
        antithetic=True, complementary=False, cond_dropout=0.1, t_min=1e-3))

    c.data = mlc.ConfigDict(dict(
        source="synthetic",        # synthetic | shards
        path="",                   # token-shard directory when source == shards
        seq_len=256,
        mixture=mlc.ConfigDict(dict(text=0.5, image=0.25, audio=0.25)),
        seed=0,
        synthetic=mlc.ConfigDict(dict(states=32, branching=4, seed=1234, caption_len=8))))

    c.train = mlc.ConfigDict(dict(
        total_tokens=1e9,
        physical_batch=256,        # sequences per optimizer step
        micro_batch=0,             # sequences per micro-batch (0 = no accumulation)
        max_steps=0,               # 0 = no cap; else stop after this many steps (debugging)
        cooldowns=(),              # WSD cooldown branches at these token counts (mdm.cooldown)
        init_from="",              # start from this run directory's checkpoint at init_step
        init_step=0))              # (what a cooldown branch does; mdm.cooldown)

    c.optimizer = mlc.ConfigDict(dict(
        lr=3e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1,
        warmup=0.05,               # fraction of the run (<= 1) or tokens (> 1)
        decay="cosine",            # cosine | wsd | constant
        decay_fraction=0.2,        # wsd: final fraction of the run spent decaying
        min_lr_ratio=0.1, grad_clip=1.0, ema_decay=0.0))

    # SDE batch-size reparameterization (mdm.optim docstring): kappa = (D_ref/D)^gamma B/B_ref.
    c.sde = mlc.ConfigDict(dict(enabled=False, ref_batch=256, ref_tokens=0.0, gamma=0.44,
                                weight_decay_rule="sqrt_kappa",  # sqrt_kappa | fixed
                                ema_rule="power",                # power (ema^kappa) | fixed
                                grad_clip_rule="fixed"))         # fixed | noise_scaled | off

    c.mesh = mlc.ConfigDict(dict(data=-1, fsdp=1, tensor=1, dcn_data=1, dcn_fsdp=1,
                                 dcn_tensor=1))
    # Overrides of mdm.sharding.DEFAULT_RULES: "name=axis[+axis],name=none", e.g.
    # "embed=fsdp+tensor,mlp=none" (a string so that --config.sharding.rules=... works).
    c.sharding = mlc.ConfigDict(dict(rules=""))

    c.eval = mlc.ConfigDict(dict(
        every=0.25,                # fraction of the run (<= 1) or tokens (> 1); 0 = end only
        num_t=8,                   # Gauss-Legendre nodes in t
        num_examples=64, batch_size=16, seed=0,
        at_start=True))            # also evaluate the initial model (step 0)

    c.checkpoint = mlc.ConfigDict(dict(
        every=0.25,                # fraction (<= 1) or tokens (> 1); 0 = only at the end
        keep=2, permanent=(0.5,), async_save=True, enabled=True))

    c.logging = mlc.ConfigDict(dict(every_steps=10, progress=True, tensorboard=False,
                                    grad_noise_scale=False))
    c.multihost = mlc.ConfigDict(dict(coordinator="", num_processes=0, process_id=-1))
    return c


def tiny(c: mlc.ConfigDict) -> mlc.ConfigDict:
    c.model.update(width=64, depth=2, num_heads=4, base_width=64, base_depth=2)
    c.token_space.update(text_vocab=64, image_vocab=64, audio_vocab=64, pad_vocab_to=64)
    c.data.seq_len = 64
    c.data.synthetic.update(states=16, branching=3)
    c.train.update(total_tokens=64 * 16 * 300, physical_batch=16)
    c.optimizer.update(lr=3e-3, warmup=0.05, weight_decay=0.0)
    c.eval.update(every=0.5, num_t=6, num_examples=48, batch_size=16)
    c.checkpoint.update(every=0.5)
    c.logging.every_steps = 10
    return c


def small(c: mlc.ConfigDict) -> mlc.ConfigDict:
    c.model.update(width=128, depth=4, num_heads=4, base_width=128, base_depth=4)
    c.token_space.update(text_vocab=256, image_vocab=256, audio_vocab=256, pad_vocab_to=128)
    c.data.seq_len = 128
    c.train.update(total_tokens=128 * 32 * 500, physical_batch=32)
    c.optimizer.update(lr=2e-3)
    c.eval.update(num_examples=64)
    return c


PRESETS = {"tiny": tiny, "small": small, "default": lambda c: c}


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    arg = (arg or "default").strip()
    if arg not in PRESETS:
        raise ValueError(f"experiments/base.py: unknown preset {arg!r}; choose from "
                         f"{sorted(PRESETS)}")
    return PRESETS[arg](base_config())
