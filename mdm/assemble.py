"""Config -> the parts of a run, and the one way to build its training step.

    b = build(cfg)                                  token space, model, data source, objective,
                                                    resolved optimizer values (SDE), step counts
    lr_fn, tx = make_lr_and_optimizer(cfg, b)       from the resolved (post-SDE) values
    st = setup_train_step(cfg, b, mesh, rules)      abstract state + shardings + the jitted step
                                                    (batch sharded over data x fsdp, state
                                                    donated), and its abstract inputs
    measures = model_measures(b.model_cfg, L)       parameter counts and FLOPs per token

The trainer, the memory planner (mdm.plan) and the benchmarks all build their step here, so
what is planned or benchmarked is what trains.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mdm.config_validation import check_resolved_optimizer, validate_config
from mdm.data.synthetic import SyntheticSource
from mdm.evaluation import evaluate, make_eval_step
from mdm.model import ModelConfig, Transformer
from mdm.objective import Batch, ObjectiveConfig
from mdm.optim import SDE_RULES, lr_schedule, make_optimizer, sde_reparameterize
from mdm.schedules import ModalitySchedules
from mdm.sharding import batch_sharding, mesh_context
from mdm.token_space import TokenSpace
from mdm.train_state import TrainState, state_shardings
from mdm.train_step import make_train_step


@dataclasses.dataclass
class Built:
    space: TokenSpace
    model_cfg: ModelConfig
    model: Transformer
    source: Any
    objective: ObjectiveConfig
    tokens_per_step: int        # tokens processed per step (both masks of a pair count)
    total_steps: int
    rows_per_step: int          # distinct rows the data source provides per step
    num_micro: int
    opt: dict[str, float]       # resolved lr, betas, eps, weight decay, clip, EMA, kappa
    logical_batch: float

    @property
    def data_tokens_per_step(self) -> int:
        """Distinct data tokens per step: with complementary pairs each row is processed twice
        (once per mask), so half the processed tokens are distinct data."""
        return self.tokens_per_step // self.copies

    @property
    def copies(self) -> int:
        return 2 if self.objective.complementary else 1


def model_config(cfg: mlc.ConfigDict, space: TokenSpace) -> ModelConfig:
    m = cfg.model
    return ModelConfig(vocab_size=space.vocab_size, **{f.name: m[f.name] for f in
                       dataclasses.fields(ModelConfig) if f.name != "vocab_size" and f.name in m})


def make_source(cfg: mlc.ConfigDict, space: TokenSpace) -> Any:
    if cfg.data.source == "synthetic":
        return SyntheticSource.from_config(cfg, space)
    from mdm.data.source import ShardSource  # token shards (tensorstore + grain)
    return ShardSource.from_config(cfg, space)


def build(cfg: mlc.ConfigDict) -> Built:
    validate_config(cfg)
    space = TokenSpace.from_config(cfg.token_space)
    mcfg = model_config(cfg, space)
    t, o = cfg.train, cfg.optimizer
    tokens_per_step = t.physical_batch * cfg.data.seq_len
    total_steps = max(1, math.ceil(t.total_tokens / tokens_per_step))
    num_micro = t.physical_batch // t.micro_batch if t.micro_batch else 1
    rows = t.physical_batch // 2 if cfg.objective.complementary else t.physical_batch
    opt = {"lr": o.lr, "beta1": o.beta1, "beta2": o.beta2, "eps": o.eps,
           "weight_decay": o.weight_decay, "grad_clip": o.grad_clip, "ema_decay": o.ema_decay,
           "kappa": 1.0}
    logical_batch = float(t.physical_batch)
    if cfg.sde.enabled:
        sde = cfg.sde
        r = sde_reparameterize(o.lr, o.beta1, o.beta2, o.eps, t.physical_batch, t.total_tokens,
                               sde.ref_batch, sde.ref_tokens or t.total_tokens, sde.gamma,
                               o.weight_decay, o.grad_clip, o.ema_decay,
                               **{k: sde[k] for k in SDE_RULES if k in sde})
        opt = dataclasses.asdict(r)
        logical_batch = opt.pop("logical_batch")
        check_resolved_optimizer(opt)
    sch = cfg.objective.schedule
    obj = ObjectiveConfig(ModalitySchedules.from_specs(sch.text, sch.image, sch.audio),
                          antithetic=cfg.objective.antithetic,
                          complementary=cfg.objective.complementary,
                          cond_dropout=cfg.objective.cond_dropout, t_min=cfg.objective.t_min)
    return Built(space, mcfg, Transformer(mcfg), make_source(cfg, space), obj, tokens_per_step,
                 total_steps, rows, num_micro, opt, logical_batch)


def make_evaluator(cfg: mlc.ConfigDict, b: Built, put: Callable[[np.ndarray], Any] = np.asarray,
                   dp: int = 1, out_shardings: Any = None) -> Callable[[Any], dict[str, Any]]:
    """params -> the eval.jsonl fields: the run's fixed eval set (cfg.eval.num_examples split
    over the data set's modalities, whatever the mixture) under the reference parameterization
    of mdm.evaluation (whatever the training schedule)."""
    apply_fn = lambda p, x, s: b.model.apply({"params": p}, x, s)
    jit_kw = {"out_shardings": out_shardings} if out_shardings is not None else {}
    step = jax.jit(make_eval_step(apply_fn, b.space, cfg.eval.seed), **jit_kw)
    examples = b.source.eval_examples(cfg.eval.num_examples)
    batch_size = math.lcm(cfg.eval.batch_size, dp)  # a multiple of the data-parallel size
    return lambda params: evaluate(step, params, examples, cfg.eval.num_t, batch_size, put=put)


def make_lr_and_optimizer(cfg: mlc.ConfigDict, b: Built) -> tuple[Callable[[Any], Any], Any]:
    """(step -> learning rate, the optax transformation) from the resolved optimizer values."""
    o = cfg.optimizer
    lr_fn = lr_schedule(b.opt["lr"], cfg.train.total_tokens, b.tokens_per_step, o.warmup,
                        o.decay, o.decay_fraction, o.min_lr_ratio)
    tx = make_optimizer(b.model_cfg, lr_fn, b.opt["beta1"], b.opt["beta2"], b.opt["eps"],
                        b.opt["weight_decay"], b.opt["grad_clip"])
    return lr_fn, tx


class MeshStep:
    """A jitted function that is traced, lowered and called inside its mesh context, so the
    model's logical activation constraints resolve against the mesh and the rules (outside
    that context flax drops them)."""

    def __init__(self, jitted: Any, mesh: Any, rules: Any) -> None:
        self.jitted, self.mesh, self.rules = jitted, mesh, rules

    def __call__(self, *args: Any) -> Any:
        with mesh_context(self.mesh, self.rules):
            return self.jitted(*args)

    def lower(self, *args: Any) -> Any:
        with mesh_context(self.mesh, self.rules):
            return self.jitted.lower(*args)


@dataclasses.dataclass
class StepSetup:
    """Everything a loop needs to run the training step on a mesh."""
    lr_fn: Callable[[Any], Any]
    tx: Any                     # optax.GradientTransformation
    abstract: TrainState        # unboxed ShapeDtypeStructs
    shardings: TrainState       # NamedShardings of the same structure
    batch_sharding: NamedSharding
    replicated: NamedSharding
    step: "MeshStep"            # (state, batch) -> (state, metrics), jitted, state donated
    ema: bool

    def abstract_state(self) -> TrainState:
        """The state as sharded ShapeDtypeStructs (for lowering without allocating)."""
        return jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), self.abstract,
            self.shardings)

    def abstract_batch(self, rows: int, seq_len: int) -> Batch:
        sh = self.batch_sharding
        shape = (rows, seq_len)
        return Batch(jax.ShapeDtypeStruct(shape, jnp.int32, sharding=sh),
                     jax.ShapeDtypeStruct(shape, jnp.int32, sharding=sh),
                     jax.ShapeDtypeStruct(shape, jnp.bool_, sharding=sh))


def setup_train_step(cfg: mlc.ConfigDict, b: Built, mesh: Any, rules: Any,
                     grad_noise: bool | None = None) -> StepSetup:
    """Optimizer -> abstract state -> shardings -> the jitted step (state donated).

    The step's randomness is keyed by (cfg.seed, 1) folded with the step number, so a resumed
    run draws the same times and masks as an uninterrupted one.
    """
    lr_fn, tx = make_lr_and_optimizer(cfg, b)
    ema = b.opt["ema_decay"] > 0
    abstract, shardings = state_shardings(b.model, tx, mesh, rules, cfg.data.seq_len, ema)
    base_rng = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
    if grad_noise is None:
        grad_noise = bool(cfg.logging.grad_noise_scale)
    step_fn = make_train_step(b.model, tx, b.space, b.objective, b.num_micro, lr_fn, base_rng,
                              b.opt["ema_decay"], grad_noise)
    bsh = batch_sharding(mesh)
    rep = NamedSharding(mesh, PartitionSpec())
    jitted = jax.jit(step_fn, in_shardings=(shardings, Batch(bsh, bsh, bsh)),
                     out_shardings=(shardings, rep), donate_argnums=(0,))
    return StepSetup(lr_fn, tx, abstract, shardings, bsh, rep, MeshStep(jitted, mesh, rules), ema)
