"""Learning-rate schedulers with ``torch.optim.lr_scheduler``'s names, arguments and semantics.

A scheduler writes ``group["lr"]`` of its optimizer's param groups. As in
torch, constructing one records ``initial_lr`` and takes step 0; call
``step()`` after each ``optimizer.step(...)`` (``ReduceLROnPlateau``:
``step(metric)``). ``step()`` uses torch's *chainable* update (the new lr from
the current ``group["lr"]``), so values agree with torch to float64 rounding
and compose with other writers of ``group["lr"]``; the closed forms in
:mod:`symdl.catalog.schedules` are proven equal to these updates
(:mod:`symdl.catalog.facts`) and the tests compare the two.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from symdl.errors import OpInputError, OpParameterError
from symdl.optim.optimizer import Optimizer

__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
           "ReduceLROnPlateau"]


def _require(ok: bool, scheduler: str, rule: str) -> None:
    if not ok:
        raise OpParameterError(f"{scheduler}: {rule}")


def _per_group(name: str, scheduler: str, optimizer: Optimizer, value: float | Sequence[float]) -> list[float]:
    """One value per param group (a list must have one per group)."""
    if isinstance(value, (list, tuple)):
        _require(len(value) == len(optimizer.param_groups), scheduler,
                 f"{name} needs one value per param group ({len(optimizer.param_groups)}), got {len(value)}")
        return [float(v) for v in value]
    return [float(value)] * len(optimizer.param_groups)


class LRScheduler:
    """Base class: ``last_epoch`` counts ``step()`` calls (0 after construction)."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise OpInputError(f"{type(self).__name__}: optimizer must be a symdl.optim optimizer, "
                               f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for index, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise OpInputError(f"{type(self).__name__}: param_groups[{index}] has no 'initial_lr'; "
                                       "resuming with last_epoch >= 0 needs the optimizer's saved state")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates for ``self.last_epoch`` (chainable: from the current ``group["lr"]``)."""
        raise NotImplementedError

    def _current(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one epoch (or iteration) and write the new learning rates."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._current()

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` wrote."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer (plain data)."""
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "optimizer"})


class StepLR(LRScheduler):
    r"""Decay by ``gamma`` every ``step_size`` epochs: :math:`\eta_t = \eta_0 \gamma^{\lfloor t / s \rfloor}`."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        _require(isinstance(step_size, int) and step_size > 0, "StepLR", f"step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class MultiStepLR(LRScheduler):
    r"""Decay by ``gamma`` at each milestone: :math:`\eta_t = \eta_0 \gamma^{\#\{m \le t\}}`."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return self._current()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current()]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.milestones = Counter(self.milestones)


class ExponentialLR(LRScheduler):
    r"""Decay by ``gamma`` every epoch: :math:`\eta_t = \eta_0 \gamma^t`."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base lr to ``eta_min`` over ``T_max`` epochs.

    Closed form :math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min}) (1 + \cos(\pi t / T)) / 2`;
    ``step()`` uses torch's chainable update, proven equal to it. Past ``T_max``
    the schedule continues as torch's (back up towards the base lr).
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        _require(T_max > 0, "CosineAnnealingLR", f"T_max must be > 0, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, period, low = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current()
        if (t - 1 - period) % (2 * period) == 0:  # the bottom of a cycle, where the ratio below is 0/0
            return [lr + (base - low) * (1 - math.cos(math.pi / period)) / 2
                    for lr, base in zip(self._current(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return [ratio * (lr - low) + low for lr in self._current()]


class LinearLR(LRScheduler):
    r"""Linear ramp of the lr factor from ``start_factor`` to ``end_factor`` over ``total_iters`` (warm-up).

    Closed form :math:`\eta_t = \eta_0 (s + (e - s) \min(t, T) / T)`.
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        _require(0 < start_factor <= 1, "LinearLR", f"start_factor must be in (0, 1], got {start_factor!r}")
        _require(0 <= end_factor <= 1, "LinearLR", f"end_factor must be in [0, 1], got {end_factor!r}")
        _require(isinstance(total_iters, int) and total_iters > 0, "LinearLR",
                 f"total_iters must be a positive int, got {total_iters!r}")
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        s, e, total, t = self.start_factor, self.end_factor, self.total_iters, self.last_epoch
        if t == 0:
            return [lr * s for lr in self._current()]
        if self._is_initial or t > total:
            return self._current()
        factor = 1.0 + (e - s) / (total * s + (t - 1) * (e - s))
        return [lr * factor for lr in self._current()]


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up to ``max_lr``, then anneal far below the start (torch's two or three phases).

    Also cycles ``momentum`` (or ``betas[0]``) inversely when ``cycle_momentum``.
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85, max_momentum: float | Sequence[float] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        name = "OneCycleLR"
        if total_steps is None:
            _require(isinstance(epochs, int) and epochs > 0 and isinstance(steps_per_epoch, int)
                     and steps_per_epoch > 0, name, "needs total_steps, or positive int epochs and steps_per_epoch")
            total_steps = epochs * steps_per_epoch
        _require(isinstance(total_steps, int) and total_steps > 0, name,
                 f"total_steps must be a positive int, got {total_steps!r}")
        _require(isinstance(pct_start, float) and 0 <= pct_start <= 1, name,
                 f"pct_start must be a float in [0, 1], got {pct_start!r}")
        _require(anneal_strategy in ("cos", "linear"), name,
                 f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps = total_steps
        self.anneal_strategy = anneal_strategy
        up = float(pct_start * total_steps) - 1
        if three_phase:
            self.phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                           (float(2 * pct_start * total_steps) - 2, "max_lr", "initial_lr", "base_momentum",
                            "max_momentum"),
                           (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self.phases = [(up, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                           (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        max_lrs = _per_group("max_lr", name, optimizer, max_lr)
        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            _require("momentum" in optimizer.defaults or "betas" in optimizer.defaults, name,
                     "cycle_momentum needs an optimizer with momentum or betas")
            self.use_beta1 = "betas" in optimizer.defaults
            if last_epoch == -1:
                for group, high, low in zip(optimizer.param_groups,
                                            _per_group("max_momentum", name, optimizer, max_momentum),
                                            _per_group("base_momentum", name, optimizer, base_momentum)):
                    self._set_momentum(group, high)
                    group["max_momentum"], group["base_momentum"] = high, low
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict[str, Any], value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        _require(t <= self.total_steps, "OneCycleLR",
                 f"stepped {t} times; total_steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for index, (end, lr_from, lr_to, m_from, m_to) in enumerate(self.phases):
                if t <= end or index == len(self.phases) - 1:
                    pct = (t - start) / (end - start)
                    lrs.append(self._anneal(group[lr_from], group[lr_to], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(group[m_from], group[m_to], pct))
                    break
                start = end
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` once the metric has not improved for ``patience`` epochs.

    ``step(metric)``; ``mode`` ``'min'`` or ``'max'``, improvement relative
    (``threshold_mode='rel'``: better than best * (1 -+ threshold)) or absolute;
    ``cooldown`` epochs ignored after a reduction; never below ``min_lr``, and
    a reduction smaller than ``eps`` is skipped.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | Sequence[float] = 0, eps: float = 1e-8) -> None:
        name = "ReduceLROnPlateau"
        _require(factor < 1.0, name, f"factor must be < 1, got {factor!r}")
        _require(mode in ("min", "max"), name, f"mode must be 'min' or 'max', got {mode!r}")
        _require(threshold_mode in ("rel", "abs"), name, f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if not isinstance(optimizer, Optimizer):
            raise OpInputError(f"{name}: optimizer must be a symdl.optim optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.factor, self.patience, self.cooldown, self.eps = factor, patience, cooldown, eps
        self.min_lrs = _per_group("min_lr", name, optimizer, min_lr)
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._current()
        self.best, self.cooldown_counter, self.num_bad_epochs = self.mode_worse, 0, 0

    def _is_better(self, value: float, best: float) -> bool:
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            return sign * value < sign * best * (1.0 - sign * self.threshold)
        return sign * value < sign * best - self.threshold

    def step(self, metrics: float) -> None:  # type: ignore[override]
        """One epoch with validation metric ``metrics``."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, low in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(group["lr"] * self.factor, low)
                if group["lr"] - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self._current()
