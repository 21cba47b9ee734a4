"""Shared test configuration: hypothesis profiles and catalog parametrisation.

Profiles: ``quick`` (default, local runs) and ``ci`` (more examples,
derandomised so CI is reproducible), chosen by ``SYMDL_HYPOTHESIS_PROFILE``;
CI sets it in ``.ci/run``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import symdl.kernels
from symdl.catalog import ACTIVATIONS_AND_LOSSES
from symdl.catalog.spec import Op

settings.register_profile("quick", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("SYMDL_HYPOTHESIS_PROFILE", "quick"))

#: Every (op, variant) of the catalog, as pytest parameters with readable ids.
OP_VARIANTS = [
    pytest.param(op, str(variant), id=f"{op.name}-{variant}" if variant else op.name)
    for op in ACTIVATIONS_AND_LOSSES.values()
    for variant in op.formulas
]


def boundary_params(op: Op, variant: str) -> list[dict]:
    """The defaults, then each real-valued parameter at 0, 1 and -1 in turn where the kernel accepts it:
    where a parameter-range case form (leaky_relu's max(x, slope x)) may stop holding."""
    defaults = {p.name: p.default for p in op.params if p.rule.kind != "array"}
    if op.variant_param:
        defaults[op.variant_param] = variant
    settings = [defaults]
    for p in op.params:
        if p.rule.kind in ("real", "positive", "nonnegative", "interval"):
            for value in (0.0, 1.0, -1.0):
                params = {**defaults, p.name: value}
                try:
                    getattr(symdl.kernels, op.name)(np.zeros(1), **params)
                except ValueError:  # refused, as PyTorch refuses it (OpParameterError is a ValueError)
                    continue
                settings.append(params)
    return settings


def case_settings() -> list:
    """``(name, case index, params)`` for every parameter-range case the exporters print
    (:func:`symdl.export.forms.cases`): parameters where the case's condition holds and no earlier case's
    does, since the exported function tries them in order; the defaults if they do, else a value pinned by
    the condition (``alpha == 1``), else the first of the parameters' sampled values that do."""
    from symdl.export.forms import cases
    from symdl.sampling import draw_params

    settings_ = []
    for op in ACTIVATIONS_AND_LOSSES.values():
        conditions = [case.when for _, case in cases(op)]
        defaults = {p.name: p.default for p in op.params}
        pinned = [{**defaults, str(c.lhs): float(c.rhs)} for c in conditions if getattr(c, "is_Equality", False)]
        drawn = [draw_params(op, np.random.default_rng(seed)) for seed in range(40)]
        for index, when in enumerate(conditions):
            def holds(condition, params) -> bool:  # noqa: ANN001
                return bool(condition.subs({p.symbol: params[p.name] for p in op.params if p.symbol is not None}))

            params = next(p for p in [defaults, *pinned, *drawn]
                          if holds(when, p) and not any(holds(earlier, p) for earlier in conditions[:index]))
            settings_.append(pytest.param(op.name, index, params, id=f"{op.name}-case{index}"))
    return settings_


#: What tests recorded with ``record_property(SUMMARY, text)``, printed after the run.
SUMMARY = "summary"
_summaries: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the summaries tests record. Under pytest-xdist this runs in the controlling process too, on the
    workers' reports (their properties travel with them), where a test's own print would be lost."""
    if report.when == "call":
        _summaries.extend(str(value) for name, value in report.user_properties if name == SUMMARY)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the recorded summaries (the gradient-check corpora's counts) in every run's output."""
    if _summaries:
        terminalreporter.section("summaries")
        for text in _summaries:
            terminalreporter.write_line(text)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject.toml): a worker per CPU this process may run on, at most 4: each worker imports
    SymPy, torch and JAX (about 850 MB each, measured)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(available, 4)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``jax`` run last, in their order. XLA starts its thread pool at JAX's first computation,
    and other tests fork (the CLI fuzz, process pools, notebook kernels): a process forked while those
    threads exist could deadlock on a lock one of them held (JAX warns of it). With pytest-xdist's
    ``--dist loadfile`` files are handed to the workers in this order, so the files of JAX tests alone
    come last."""
    items.sort(key=lambda item: item.get_closest_marker("jax") is not None)
