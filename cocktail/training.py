"""The one GAN training loop: StyleGAN2's objective on whatever a source yields, from 1 CPU to many GPUs.

Rooting, merging, the baselines and source training all set up this loop (initial weights, source,
frozen parts, extra penalties); it knows nothing about them. What it does, per iteration:

* G step: non-saturating logistic loss ``softplus(-D(G(z)))`` with style mixing (+ ``g_penalty(G)``),
  every ``pl_interval`` iterations a separate path-length regularisation step;
* D step: ``softplus(D(G(z))) + softplus(-D(x))`` (+ ``d_penalty(D)``), every ``r1_interval``
  iterations a separate R1 step on the reals, its weight multiplied by the interval (lazy
  regularisation, with Adam's learning rate and betas corrected by ``c = interval / (interval + 1)``);
* G EMA with a half-life in kimg (optional ramp-up), parameters and buffers.

Scale-out: every process samples its own reals (seeded per rank) and keeps the models unwrapped;
gradients are averaged by hand with one all-reduce per step, because R1 and path length need a
double backward that DDP does not support. Everything else random in the loop (latents, mixing
cut-offs, path-length noise) is drawn for the *global* batch from a generator shared by all ranks
and sliced ``[rank::world]``, so N processes x B/N follow the same maths as 1 process x B, and the
minibatch-std groups of D line up too. Only StyleGAN2's per-layer noise comes from each rank's
own RNG.

Mixed precision comes from the Accelerator (bf16, or fp16 with its GradScaler) and from the networks'
float16 blocks (``num_fp16_res``, on CUDA only; a GradScaler of the loop's own when Accelerate has none):
a non-finite fp16 step is skipped and the loss scale lowered. The R1 and path-length steps always run
in float32, blocks included, so their double backward cannot underflow or overflow.
"""

from __future__ import annotations

import copy
import ctypes
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .errors import CocktailError, first_line
from .networks import Discriminator, Generator

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
SAMPLES_DIR = "samples"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
STATE_FILE = "state.json"  # written last: a checkpoint folder without it is not a checkpoint
LOG_EVERY = 10  # iterations between progress-bar / tracker updates
# Skipped float16 steps in a row before a run counts as diverged: by then the loss scale has halved
# from 2^16 to 2^-16, so no overflow is left to blame.
MAX_SKIPPED_STEPS = 32


@dataclass
class TrainingConfig:
    """Hyper-parameters of one training run (defaults: the paper's StyleGAN2 recipe)."""

    kimg: float = 10.0
    batch_size: int = 32  # global batch across processes
    g_lr: float = 0.002
    d_lr: float = 0.002
    betas: tuple = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | str | None = None  # None, a fraction of images seen, or "auto" (see effective_ema_rampup)
    output_dir: str = "outputs/run"
    checkpointing_kimg: float | None = None
    checkpoints_total_limit: int | None = 2
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint path
    sample_every_kimg: float | None = None
    grid_seeds_per_class: int = 8
    report_to: str | None = None  # e.g. "tensorboard"
    seed: int = 0
    progress: bool = True

    def validate(self, world: int = 1) -> None:
        """Refuse, with one line naming the setting, any value training cannot use: a typo or a NaN in a
        recipe must stop a run before a model is loaded, not end it in a traceback (or finish it silently)."""
        apply_rules(self, _SETTING_RULES)
        if self.batch_size % world:
            raise CocktailError(f"batch_size must be a multiple of the number of processes ({world}) "
                                f"(got {self.batch_size})")


AUTO_EMA_RAMPUP = 0.05  # StyleGAN2-ADA's ramp-up: the EMA half-life is at most 5 % of the images seen so far


def effective_ema_rampup(config: TrainingConfig) -> float | None:
    """``ema_rampup="auto"``: the ramp-up wherever it still shapes the final G_ema, i.e. for runs shorter than
    ``ema_kimg / AUTO_EMA_RAMPUP`` (200 kimg at the paper's 10-kimg half-life); none for longer ones.

    Without it a short run hands on a G_ema that is mostly its starting weights: after 8 kimg at a 10-kimg
    half-life, 0.5^0.8 = 57 % of them. Rooting an emoji "food" source from an emoji "smileys" root for 8
    kimg (benchmarks/ema_rooting.py, on this project's earlier example models) left G_ema nearer the root
    than the source (pixel Fréchet distance 5.5 to the root, 8.9 to the source); with the ramp-up it sat
    by the source (20.6 and 6.3), like the raw G.
    """
    if config.ema_rampup != "auto":
        return config.ema_rampup
    return AUTO_EMA_RAMPUP if config.kimg * AUTO_EMA_RAMPUP < config.ema_kimg else None


def apply_rules(settings, rules: dict) -> None:
    """Raise one line naming the first setting of ``settings`` (an object) that breaks its rule."""
    for name, rule in rules.items():
        problem = rule(getattr(settings, name))
        if problem:
            raise CocktailError(f"{name} {problem} (got {getattr(settings, name)!r})")


def number_rule(low=None, high=None, low_open=False, high_open=False, optional=False, integer=False):
    """A rule for one numeric setting: the right type, finite, within [low, high] (or open ends)."""
    def rule(value):
        if value is None and optional:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"must be {'an integer' if integer else 'a number'}{' or null' if optional else ''}"
        if not math.isfinite(value):
            return "must be finite"
        if low == 0 and low_open and value <= 0:
            return "must be positive"
        if low is not None and (value < low or (low_open and value == low)):
            return f"must be {'>' if low_open else '>='} {low}"
        if high is not None and (value > high or (high_open and value == high)):
            return f"must be {'<' if high_open else '<='} {high}"
        return None
    return rule


def _betas(value):
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return "must be two numbers (beta1, beta2)"
    return next(filter(None, map(number_rule(0, 1, high_open=True), value)), None)


def _ema_rampup(value):
    if value == "auto" or not number_rule(0, 1, low_open=True, optional=True)(value):
        return None
    return 'must be "auto", a number in (0, 1] or null'


def _text(optional=True):
    return lambda value: None if isinstance(value, str) or (optional and value is None) else "must be text"


_SETTING_RULES = {
    "kimg": number_rule(0),
    "batch_size": number_rule(1, integer=True),
    "g_lr": number_rule(0, low_open=True),
    "d_lr": number_rule(0, low_open=True),
    "betas": _betas,
    "eps": number_rule(0, low_open=True),
    "r1_gamma": number_rule(0),
    "r1_interval": number_rule(1, integer=True),
    "pl_weight": number_rule(0),
    "pl_interval": number_rule(1, integer=True),
    "pl_decay": number_rule(0, 1),
    "pl_batch_shrink": number_rule(1, integer=True),
    "style_mixing_prob": number_rule(0, 1),
    "ema_kimg": number_rule(0),
    "ema_rampup": _ema_rampup,
    "output_dir": _text(optional=False),
    "checkpointing_kimg": number_rule(0, low_open=True, optional=True),
    "checkpoints_total_limit": number_rule(1, integer=True, optional=True),
    "resume_from_checkpoint": _text(),
    "sample_every_kimg": number_rule(0, low_open=True, optional=True),
    "grid_seeds_per_class": number_rule(1, integer=True),
    "report_to": _text(),
    "seed": number_rule(0, integer=True),
    "progress": lambda value: None if isinstance(value, bool) else "must be true or false",
}


@dataclass
class TrainResult:
    G: Generator
    G_ema: Generator
    D: Discriminator
    kimg: float
    images_seen: int
    stats: dict = field(default_factory=dict)


def train(G: Generator, D: Discriminator, source, config: TrainingConfig, *, accelerator=None,
          G_ema: Generator | None = None, class_names: Sequence[str] | None = None,
          frozen_d_prefixes: Sequence[str] = (), g_penalty: Callable[[Generator], torch.Tensor] | None = None,
          d_penalty: Callable[[Discriminator], torch.Tensor] | None = None,
          description: str = "train") -> TrainResult:
    """Train ``G`` and ``D`` on ``source`` for ``config.kimg`` thousand images (global count).

    G parameters with ``requires_grad=False`` stay fixed, and so do D parameters whose names start
    with one of ``frozen_d_prefixes`` (Freeze-D). ``g_penalty(G)`` / ``d_penalty(D)`` are added to
    every main G / D loss (EWC). Returns the models unwrapped on the accelerator's device; saving
    them is the caller's job (checkpoints under ``output_dir/checkpoints`` are for resuming).
    """
    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator(log_with=config.report_to, project_dir=config.output_dir)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        # e.g. `accelerate launch --multi_gpu` without GPUs: N processes that each think they are alone.
        raise CocktailError(f"{launched} processes were launched (WORLD_SIZE) but Accelerate set up "
                            f"{accelerator.num_processes}; on CPUs launch with `ACCELERATE_USE_CPU=true "
                            "accelerate launch --multi_gpu --num_processes N ...`")
    loop = _Loop(G, D, G_ema, source, config, accelerator, class_names, tuple(frozen_d_prefixes),
                 g_penalty, d_penalty, description)
    return loop.run()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the most images seen under ``output_dir/checkpoints``, if any."""
    found = _checkpoints(Path(output_dir) / CHECKPOINTS_DIR)
    return found[-1] if found else None


class _Loop:
    """State of one run: networks, optimizers, RNGs, counters; ``run()`` trains it to the end."""

    def __init__(self, G, D, G_ema, source, config: TrainingConfig, accelerator, class_names, frozen_prefixes,
                 g_penalty, d_penalty, description):
        self.cfg, self.acc, self.description = config, accelerator, description
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.main = accelerator.is_main_process
        self.output_dir = Path(config.output_dir)
        self.g_penalty, self.d_penalty = g_penalty, d_penalty
        _check_setup(G, D, source, config, self.world, class_names)
        self.class_names = list(class_names) if class_names is not None else None
        self.batch = config.batch_size // self.world
        self.pl_batch = max(self.batch // config.pl_batch_shrink, 1)

        # Channels-last convolutions train ~20% faster on CPU (benchmarks/train_step.py); the models go
        # back to the default layout when training ends, so callers save ordinary contiguous tensors.
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.preserve_format
        if self.device.type == "cpu":
            _keep_freed_memory_for_reuse()
        self.G = G.to(self.device, memory_format=self.memory_format).train()
        self.D = D.to(self.device, memory_format=self.memory_format).train()
        G_ema = copy.deepcopy(self.G) if G_ema is None else G_ema
        self.G_ema = G_ema.to(self.device, memory_format=self.memory_format).eval()
        if list(self.G_ema.state_dict()) != list(self.G.state_dict()):
            raise CocktailError("G_ema does not have the generator's architecture")
        self.ema_params = list(self.G_ema.parameters()), list(self.G.parameters())
        self.ema_buffers = list(self.G_ema.buffers()), list(self.G.buffers())
        self.ema_rampup = effective_ema_rampup(config)
        self.source = source.to(self.device)

        self.g_params = [p for p in self.G.parameters() if p.requires_grad]
        if not self.g_params:
            raise CocktailError("the generator has no trainable parameters (all have requires_grad=False)")
        self.d_params = _unfrozen(self.D, frozen_prefixes)
        self.use_r1 = config.r1_gamma > 0
        self.use_pl = config.pl_weight > 0
        self.opt_g = _adam(self.g_params, config.g_lr, config, config.pl_interval if self.use_pl else None)
        self.opt_d = _adam(self.d_params, config.d_lr, config, config.r1_interval if self.use_r1 else None)
        self.scaler = getattr(accelerator, "scaler", None) or _float16_scaler(self.G, self.D, self.device)
        self.skipped_steps = {}  # consecutive non-finite (skipped) scaled updates, by what they update
        self.pl_mean = torch.zeros([], device=self.device)

        self.images_seen = 0
        self.step = 0
        self.stop_signal = None
        self.sample_generator = torch.Generator()  # reals: a CPU generator draws the same on every device
        self.shared_generator = torch.Generator(self.device)  # identical on every rank
        self._seed_rngs()
        if self.world > 1:
            self._broadcast_weights()
        resume = config.resume_from_checkpoint
        if resume is not None:
            self._load_checkpoint(resume)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg = self.cfg
        total = cfg.kimg * 1000
        next_checkpoint = _next_multiple(self.images_seen, cfg.checkpointing_kimg)
        next_grid = _next_multiple(self.images_seen, cfg.sample_every_kimg)
        if cfg.sample_every_kimg and self.images_seen == 0:
            self._write_grid()
        bar = tqdm(total=math.ceil(total), initial=min(self.images_seen, math.ceil(total)), unit="img",
                   desc=self.description, disable=not (cfg.progress and self.main), dynamic_ncols=True)
        trackers = self._start_trackers()
        window, stats = {}, {}
        started, start_images = time.perf_counter(), self.images_seen
        previous_handlers = self._catch_signals()
        try:
            while self.images_seen < total:
                for name, value in self._iteration().items():
                    window.setdefault(name, []).append(value)
                bar.update(self.cfg.batch_size)
                stopping = self._agree_to_stop()
                last = stopping or self.images_seen >= total
                if self.step % LOG_EVERY == 0 or last:
                    # Lazy regularisers may not have run in this window: keep their last values.
                    stats = {**stats, **{name: sum(values) / len(values) for name, values in window.items()}}
                    window = {}
                    bar.set_postfix({"kimg": f"{self.images_seen / 1000:.2f}",
                                     **{k.split("/")[-1]: f"{v:.3f}" for k, v in stats.items()
                                        if k in ("loss/D", "loss/G")}})
                    self.acc.log({**stats, "progress/kimg": self.images_seen / 1000}, step=self.images_seen)
                if next_grid is not None and self.images_seen >= next_grid:
                    self._write_grid()
                    next_grid = _next_multiple(self.images_seen, cfg.sample_every_kimg)
                if stopping:
                    path = self._save_checkpoint()
                    self._raise_stop(path)
                if next_checkpoint is not None and self.images_seen >= next_checkpoint:
                    self._save_checkpoint()
                    next_checkpoint = _next_multiple(self.images_seen, cfg.checkpointing_kimg)
            if cfg.checkpointing_kimg:
                self._save_checkpoint()  # so a longer run can go on from here
        finally:
            self._restore_signals(previous_handlers)
            bar.close()
            self._end_trackers(trackers)
            for module in (self.G, self.G_ema, self.D):
                module.to(memory_format=torch.contiguous_format).eval()
        elapsed = time.perf_counter() - started
        stats = {**stats, "images_per_second": (self.images_seen - start_images) / max(elapsed, 1e-9),
                 "seconds": elapsed, "steps": self.step, "pl_mean": float(self.pl_mean)}
        return TrainResult(G=self.G, G_ema=self.G_ema, D=self.D,
                           kimg=self.images_seen / 1000, images_seen=self.images_seen, stats=stats)

    def _iteration(self) -> dict[str, float]:
        """One G step, one D step, their lazy regularisation steps when due, then the EMA."""
        cfg = self.cfg
        with torch.no_grad():
            reals, labels = self.source.sample(self.batch, self.device, self.sample_generator)
        stats = self._g_main(labels)
        if self.use_pl and self.step % cfg.pl_interval == 0:
            stats.update(self._g_path_length(labels))
        stats.update(self._d_main(reals, labels))
        if self.use_r1 and self.step % cfg.r1_interval == 0:
            stats.update(self._d_r1(reals, labels))
        self._update_ema()
        self.images_seen += self.cfg.batch_size
        self.step += 1
        return stats

    def _g_main(self, labels) -> dict[str, float]:
        self._set_d_trainable(False)  # D is only a function here: no graph for its weights
        try:
            with self.acc.autocast():
                images, _ = self._generate(labels, update_emas=True)
                logits = self.D(images, self._c(labels, self.D.c_dim))
        finally:
            self._set_d_trainable(True)
        loss = F.softplus(-logits.float()).mean()
        extra = [self.g_penalty(self.G)] if self.g_penalty is not None else []
        total = loss + extra[0] if extra else loss
        values = self._update("G loss", self.opt_g, self.g_params, total, [loss, *extra], scaled=True)
        if self.world > 1:  # each rank moved w_avg towards its own batch mean: average = global batch mean
            _all_reduce_mean(self.G.mapping.w_avg, self.world)
        names = ["loss/G", "loss/G_penalty"][: len(values)]
        return dict(zip(names, values, strict=True))

    def _g_path_length(self, labels) -> dict[str, float]:
        """Path-length regularisation: |J_w^T y| for image-space noise y should stay near its running mean."""
        cfg = self.cfg
        images, ws = self._generate(labels[: self.pl_batch], update_emas=False, force_fp32=True)
        height, width = images.shape[2:]
        noise = self._shared_draw(torch.randn, self.pl_batch, images.shape[1:]) / math.sqrt(height * width)
        (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
        batch_mean = lengths.mean().detach()
        if self.world > 1:
            _all_reduce_mean(batch_mean, self.world)
        # Detached and global, so every rank keeps the same running mean.
        self.pl_mean = self.pl_mean.lerp(batch_mean, cfg.pl_decay)
        penalty = (lengths - self.pl_mean).square().mean()
        values = self._update("G path-length penalty", self.opt_g, self.g_params,
                              penalty * (cfg.pl_weight * cfg.pl_interval), [penalty], scaled=False)
        return {"loss/pl_penalty": values[0], "pl_mean": float(self.pl_mean)}

    def _d_main(self, reals, labels) -> dict[str, float]:
        c = self._c(labels, self.D.c_dim)
        with self.acc.autocast():
            with torch.no_grad():
                fakes, _ = self._generate(labels, update_emas=False)
            fake_logits = self.D(fakes, c)
            real_logits = self.D(reals, c)
        loss = F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()
        extra = [self.d_penalty(self.D)] if self.d_penalty is not None else []
        total = loss + extra[0] if extra else loss
        scores = [real_logits.float().mean(), fake_logits.float().mean()]
        values = self._update("D loss", self.opt_d, self.d_params, total, [loss, *scores, *extra],
                              scaled=True)
        names = ["loss/D", "scores/real", "scores/fake", "loss/D_penalty"][: len(values)]
        return dict(zip(names, values, strict=True))

    def _d_r1(self, reals, labels) -> dict[str, float]:
        """R1: squared gradient norm of D's real logits w.r.t. the real images."""
        cfg = self.cfg
        reals = reals.detach().requires_grad_(True)
        logits = self.D(reals, self._c(labels, self.D.c_dim), force_fp32=True)
        (grads,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
        penalty = grads.square().sum(dim=[1, 2, 3]).mean()
        values = self._update("D R1 penalty", self.opt_d, self.d_params,
                              penalty * (cfg.r1_gamma / 2 * cfg.r1_interval), [penalty], scaled=False)
        return {"loss/r1_penalty": values[0]}

    def _generate(self, labels, update_emas: bool, force_fp32: bool = False):
        """G's images and ws for ``len(labels)`` fresh latents, with per-sample style mixing."""
        n, G = len(labels), self.G
        z = self._shared_draw(torch.randn, n, [G.z_dim])
        c = self._c(labels, G.c_dim)
        with torch.autocast(self.device.type, enabled=False):  # w and w_avg stay float32 (cheap anyway)
            ws = G.mapping(z, c, update_emas=update_emas)
            if self.cfg.style_mixing_prob > 0 and G.num_ws > 1:
                mixed = self._shared_draw(torch.rand, n, []) < self.cfg.style_mixing_prob
                cutoff = self._shared_draw(torch.randint, n, [], low=1, high=G.num_ws)
                cutoff = torch.where(mixed, cutoff, G.num_ws)
                ws2 = G.mapping(self._shared_draw(torch.randn, n, [G.z_dim]), c)
                later = torch.arange(G.num_ws, device=self.device)[None, :] >= cutoff[:, None]
                ws = torch.where(later[:, :, None], ws2, ws)
        return G.synthesis(ws, noise_mode="random", force_fp32=force_fp32), ws

    def _shared_draw(self, fn, n, shape, **kwargs) -> torch.Tensor:
        """Draw for the global batch from the generator all ranks share; keep this rank's rows."""
        size = [n * self.world, *shape]
        values = fn(size=size, generator=self.shared_generator, device=self.device, **kwargs)
        return values[self.rank :: self.world]

    def _c(self, labels, c_dim):
        return F.one_hot(labels, c_dim).float() if c_dim > 0 else None

    def _set_d_trainable(self, trainable: bool) -> None:
        for p in self.d_params:
            p.requires_grad_(trainable)

    def _update(self, what, optimizer, params, loss, reported, scaled) -> list[float]:
        """Backward, average the gradients over processes (one all-reduce), check all is finite, step.

        ``reported`` scalars ride along in the same all-reduce and come back as global means.
        """
        scaler = self.scaler if scaled else None
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        scalars = torch.stack([loss.detach().float(), *[r.detach().float() for r in reported]])
        flat = torch.cat([g.reshape(-1) for g in grads] + [scalars])
        if self.world > 1:
            _all_reduce_mean(flat, self.world)
        checks = torch.cat([flat[-len(scalars):], torch.isfinite(flat[: -len(scalars)]).all().float()[None]])
        checks = checks.tolist()
        finite = math.isfinite(checks[0]) and checks[-1]
        if not finite and scaler is None:
            self._diverged(f"{what} is {checks[0]}" if not math.isfinite(checks[0]) else
                           f"{what} gradients are not finite")
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        if scaler is None:
            optimizer.step()
        elif finite:
            self.skipped_steps[what] = 0
            scaler.step(optimizer)
            scaler.update()
        else:  # float16 overflowed: skip this step and lower the loss scale, as mixed precision expects
            self._skip_step(what, scaler)
        return checks[1:-1]

    def _skip_step(self, what, scaler) -> None:
        """A float16 overflow costs one step; one that no loss scale cures is divergence."""
        skipped = self.skipped_steps[what] = self.skipped_steps.get(what, 0) + 1
        if skipped > MAX_SKIPPED_STEPS:
            self._diverged(f"{what} stayed non-finite for {skipped} steps in a row (loss scale "
                           f"{scaler.get_scale():g})")
        scaler.update(new_scale=scaler.get_scale() * scaler.get_backoff_factor())

    def _diverged(self, what: str):
        last = latest_checkpoint(self.output_dir)
        raise CocktailError(f"training diverged at kimg {self.images_seen / 1000:g}: {what}; "
                            f"last good checkpoint: {last if last is not None else 'none'}")

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.cfg
        ema_images = cfg.ema_kimg * 1000
        if self.ema_rampup is not None:
            ema_images = min(ema_images, self.images_seen * self.ema_rampup)
        beta = 0.5 ** (self.cfg.batch_size / ema_images) if ema_images > 0 else 0.0
        torch._foreach_lerp_(self.ema_params[0], self.ema_params[1], 1.0 - beta)
        for ema_buffer, buffer in zip(*self.ema_buffers, strict=True):
            ema_buffer.copy_(buffer)

    # -- processes, RNGs, signals ----------------------------------------------------------

    def _seed_rngs(self) -> None:
        """Reals and network noise differ per rank; the shared generator is the same everywhere."""
        seed, rank = self.cfg.seed, self.rank
        torch.manual_seed(_derive_seed(seed, rank, "torch"))
        np.random.seed(_derive_seed(seed, rank, "numpy") % 2**32)
        random.seed(_derive_seed(seed, rank, "python"))
        self.sample_generator.manual_seed(_derive_seed(seed, rank, "source"))
        self.shared_generator.manual_seed(_derive_seed(seed, "shared"))

    def _broadcast_weights(self) -> None:
        """Every rank starts from rank 0's weights, whatever each was given."""
        for module in (self.G, self.G_ema, self.D):
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def _agree_to_stop(self) -> bool:
        """A signal seen by any rank stops all of them after the same iteration."""
        if self.world > 1:
            flag = torch.tensor([float(self.stop_signal or 0)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.stop_signal = self.stop_signal or int(flag.item()) or None
        return self.stop_signal is not None

    def _catch_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the checkpoint
        self.stop_signal = signum

    def _restore_signals(self, previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _raise_stop(self, path: Path):
        name = signal.Signals(self.stop_signal).name
        self.acc.print(f"{name} received at kimg {self.images_seen / 1000:g}: checkpoint saved to {path}; "
                       "resume with --resume_from_checkpoint latest")
        if self.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + self.stop_signal)

    # -- checkpoints ---------------------------------------------------------------------

    def _rng_state(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "source": self.sample_generator.get_state(),
            "numpy": _numpy_state_to_json(np.random.get_state()),
            "python": _python_state_to_json(random.getstate()),
        }
        if self.device.type != "cpu":
            state["device"] = torch.get_device_module(self.device.type).get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        self.sample_generator.set_state(state["source"])
        np.random.set_state(_numpy_state_from_json(state["numpy"]))
        random.setstate(_python_state_from_json(state["python"]))
        if "device" in state and self.device.type != "cpu":
            torch.get_device_module(self.device.type).set_rng_state(state["device"], self.device)

    def _save_checkpoint(self) -> Path:
        """Write models, optimizers, RNG states of every rank and progress into a temp folder, then rename."""
        states = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(states, self._rng_state())
        else:
            states[0] = self._rng_state()
        root = self.output_dir / CHECKPOINTS_DIR
        final = root / f"checkpoint-{self.images_seen:010d}"
        if self.main and not final.exists():
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-checkpoint-", dir=root))
            for name, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
                weights = {k: v.contiguous() for k, v in module.state_dict().items()}
                _write(tmp / f"{name}.safetensors", lambda p, w=weights: save_file(w, p))
            optimizers = {"G": self.opt_g.state_dict(), "D": self.opt_d.state_dict(),
                          "scaler": self.scaler.state_dict() if self.scaler is not None else None}
            _write(tmp / "optimizers.pt", lambda p: torch.save(optimizers, p))
            tensors = {"pl_mean": self.pl_mean.detach().cpu().reshape(1),
                       "shared_generator": self.shared_generator.get_state()}
            for rank, state in enumerate(states):
                for key in ("torch", "source", "device"):
                    if key in state:
                        tensors[f"rank{rank}.{key}"] = state[key].cpu()
            _write(tmp / "rng.safetensors", lambda p: save_file(tensors, p))
            progress = {"images_seen": self.images_seen, "kimg": self.images_seen / 1000, "step": self.step,
                        "world_size": self.world, "device_type": self.device.type,
                        "description": self.description,
                        "rng": [{"numpy": s["numpy"], "python": s["python"]} for s in states],
                        "config": _jsonable(asdict(self.cfg))}
            _write(tmp / STATE_FILE, lambda p: Path(p).write_text(json.dumps(progress, indent=1) + "\n"))
            _fsync(tmp)
            os.rename(tmp, final)
            _fsync(root)
            self._prune_checkpoints(root)
        self.acc.wait_for_everyone()
        return final

    def _prune_checkpoints(self, root: Path) -> None:
        limit = self.cfg.checkpoints_total_limit
        if limit is None:
            return
        for old in _checkpoints(root)[:-limit]:
            doomed = old.with_name(f".tmp-delete-{old.name}")
            os.rename(old, doomed)  # first out of sight, so a half-deleted folder never looks complete
            shutil.rmtree(doomed, ignore_errors=True)

    def _load_checkpoint(self, spec: str) -> None:
        if spec == "latest":
            path = latest_checkpoint(self.output_dir)
            if path is None:
                self.acc.print(f"no checkpoint under {self.output_dir / CHECKPOINTS_DIR}: starting a new run")
                return
        else:
            path = Path(spec)
            if not (path / STATE_FILE).is_file():
                raise CocktailError(f"{path}: not a training checkpoint (no {STATE_FILE})")
        try:
            progress = json.loads((path / STATE_FILE).read_text())
            for name, module in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
                module.load_state_dict(load_file(path / f"{name}.safetensors", device=str(self.device)))
            optimizers = torch.load(path / "optimizers.pt", map_location=self.device, weights_only=True)
            tensors = load_file(path / "rng.safetensors")
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            message = first_line(err)
            raise CocktailError(f"{path}: cannot resume from this checkpoint ({message})") from None
        self.opt_g.load_state_dict(optimizers["G"])
        self.opt_d.load_state_dict(optimizers["D"])
        if self.scaler is not None and optimizers.get("scaler"):
            self.scaler.load_state_dict(optimizers["scaler"])
        self.pl_mean = tensors["pl_mean"].to(self.device).reshape([])
        self.shared_generator.set_state(tensors["shared_generator"])
        self.images_seen, self.step = int(progress["images_seen"]), int(progress["step"])
        same_layout = progress["world_size"] == self.world and progress["device_type"] == self.device.type
        if same_layout:
            state = {key: tensors[f"rank{self.rank}.{key}"] for key in ("torch", "source", "device")
                     if f"rank{self.rank}.{key}" in tensors}
            self._set_rng_state({**state, **progress["rng"][self.rank]})
        else:  # the run goes on, but cannot replay the same random draws on a different layout
            logger.warning("%s was written by %d %s process(es); reseeding the per-process RNGs for %d %s "
                           "process(es)", path, progress["world_size"], progress["device_type"], self.world,
                           self.device.type)
            seed, rank, seen = self.cfg.seed, self.rank, self.images_seen
            torch.manual_seed(_derive_seed(seed, rank, "torch", seen))
            self.sample_generator.manual_seed(_derive_seed(seed, rank, "source", seen))
        self.acc.print(f"resumed from {path} at kimg {self.images_seen / 1000:g}")

    # -- what a user sees ----------------------------------------------------------------

    def _write_grid(self) -> None:
        """G_ema's samples for fixed seeds, one row per class, into output_dir/samples/."""
        if not self.main:
            return
        from .union import UnionModel

        folder = self.output_dir / SAMPLES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        grid = UnionModel(self.G_ema, class_names=self.class_names).sample_grid(self.cfg.grid_seeds_per_class)
        grid.save(folder / f"kimg{self.images_seen / 1000:010.3f}.png")

    def _start_trackers(self) -> list:
        if not self.acc.log_with:
            if self.cfg.report_to:
                logger.warning("report_to=%r is ignored: the accelerator given to train() has no trackers "
                               "(create it with Accelerator(log_with=...))", self.cfg.report_to)
            return []
        before = list(self.acc.trackers)
        self.acc.init_trackers(self.description, config=_jsonable(asdict(self.cfg), hparams=True))
        return self.acc.trackers[len(before) :]

    def _end_trackers(self, trackers) -> None:
        """Finish this run's trackers, so the next run on the same accelerator starts its own."""
        for tracker in trackers:
            tracker.finish()
            self.acc.trackers.remove(tracker)


# -- helpers --------------------------------------------------------------------------------


def _check_setup(G, D, source, config: TrainingConfig, world: int, class_names) -> None:
    """Fail before any training on what can be checked up front, with messages naming the thing."""
    config.validate(world)
    if G.img_resolution != D.img_resolution or G.c_dim != D.c_dim or G.img_channels != D.img_channels:
        raise CocktailError(f"generator ({G.img_resolution} px, {G.img_channels} ch, c_dim={G.c_dim}) and "
                            f"discriminator ({D.img_resolution} px, {D.img_channels} ch, c_dim={D.c_dim}) "
                            "do not match")
    channels = getattr(source, "channels", 3)
    if source.resolution != G.img_resolution or channels != G.img_channels:
        raise CocktailError(f"source gives {source.resolution} px x {channels} channels but the generator "
                            f"makes {G.img_resolution} px x {G.img_channels}")
    num_classes = max(G.c_dim, 1)
    if source.num_classes > num_classes:
        raise CocktailError(f"source has {source.num_classes} classes but the generator has {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
        raise CocktailError(f"{len(class_names)} class names for a generator with {num_classes} class(es)")
    check_minibatch_groups(D, config.batch_size, world)


def check_minibatch_groups(D: Discriminator, batch_size: int, world: int) -> None:
    """Each process's batch must split into D's minibatch-std groups (merges check it before loading more)."""
    group = D.b4.mbstd.group_size if D.b4.mbstd is not None else None
    per_process = batch_size // world
    if group is not None and per_process % min(group, per_process):
        raise CocktailError(f"batch per process ({per_process}) must be a multiple of the discriminator's "
                            f"minibatch-std group size ({group})")


def _unfrozen(D, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """D's trainable parameters; the frozen ones get requires_grad=False and no optimizer state."""
    names = [name for name, _ in D.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise CocktailError(f"frozen_d_prefixes: {prefix!r} matches no discriminator parameter")
    trainable = []
    for name, p in D.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
        elif p.requires_grad:
            trainable.append(p)
    if not trainable:
        raise CocktailError("the discriminator has no trainable parameters left")
    return trainable


def _keep_freed_memory_for_reuse() -> None:
    """Make glibc keep freed activation buffers in the heap instead of handing them back to the OS.

    By default a freed multi-megabyte tensor goes back to the kernel (munmap, or a heap trim), so the
    next step's tensor of the same size page-faults in fresh memory: on CPU that costs a sixth or more
    of a training step (benchmarks/train_step.py, BENCHMARKS.md). The price is a process that keeps its
    peak memory after training. A no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameters from <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum: allocations up to 32 MiB use the heap
    libc.mallopt(m_trim_threshold, 1 << 30)  # and up to 1 GiB of free heap stays mapped


def _float16_scaler(G: Generator, D: Discriminator, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler when float16 blocks (``num_fp16_res``) run on this device and Accelerate brought none
    (``mixed_precision="no"``): their small gradients would underflow unscaled, and an overflow would end
    the run instead of costing one step."""
    if G.runs_float16(device) or D.runs_float16(device):
        return torch.amp.GradScaler(device.type)
    return None


def _adam(params, lr: float, config: TrainingConfig, reg_interval: int | None) -> torch.optim.Adam:
    """Adam, with lr and betas corrected for the extra lazy-regularisation step every ``reg_interval``."""
    c = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    betas = tuple(float(b) ** c for b in config.betas)
    return torch.optim.Adam(params, lr=lr * c, betas=betas, eps=config.eps)


def _all_reduce_mean(tensor: torch.Tensor, world: int) -> None:
    dist.all_reduce(tensor)
    tensor.div_(world)


def _next_multiple(images_seen: int, every_kimg: float | None) -> float | None:
    if not every_kimg:
        return None
    every = every_kimg * 1000
    return (math.floor(images_seen / every + 1e-9) + 1) * every


def _derive_seed(*keys) -> int:
    """A 63-bit seed from the run seed and names/numbers, stable across processes and platforms."""
    words = [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def _checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := CHECKPOINT_NAME.fullmatch(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def _write(path: Path, writer) -> None:
    """Write with ``writer(path)`` and force it to disk before the folder is renamed into place."""
    writer(str(path))
    _fsync(path)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries (a rename), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _numpy_state_to_json(state) -> dict:
    kind, keys, pos, has_gauss, cached = state
    return {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}


def _numpy_state_from_json(state: dict):
    return (state["kind"], np.array(state["keys"], dtype=np.uint32), state["pos"], state["has_gauss"],
            state["cached_gaussian"])


def _python_state_to_json(state) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _python_state_from_json(state: list):
    version, internal, gauss_next = state
    return version, tuple(internal), gauss_next


def _jsonable(values: dict, hparams: bool = False) -> dict:
    """Config values as JSON (or TensorBoard hparams, which take no None and no tuples)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, tuple):
            value = list(value) if not hparams else str(value)
        if hparams and value is None:
            continue
        out[key] = value
    return out


