"""The runtime helpers every exported module defines, written once for every array library.

An exported module reduces a loss as PyTorch does (``reduction='none'|'mean'|'sum'``), spreads
the upstream gradient of a reduced loss back over its elements, turns a class loss's targets
into rows along the class axis and sums a broadcast input's gradient back to its shape. The
logic is the same whatever the framework; PyTorch and JAX share most names too (``torch.sum``
and ``jnp.sum`` both take ``axis=`` and ``keepdims=``; ``where``, ``ones_like``,
``broadcast_to``, ``broadcast_shapes`` and ``moveaxis`` are spelled alike). What they spell
differently is one :class:`ArrayApi` row per framework, and :func:`runtime_source` prints the
helpers with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArrayApi:
    """How one framework spells what the runtime helpers need beyond its NumPy-like namespace.

    Each format's fields are Python expressions; ``input`` is the class loss's input in scope.

    Attributes:
        xp: the array namespace (``torch``, ``jnp``).
        cast: ``{x}`` as an array of ``input``'s dtype.
        scalar: the Python number ``{x}`` as the implementations take a class loss's mask of counted
            rows and its 'mean' denominator (PyTorch: a Python number; JAX: an array of ``input``'s
            dtype, since ``jax.custom_vjp`` takes them at differentiable positions).
        is_float: whether the array ``{x}`` holds floating-point values.
        one_hot: the one-hot rows (classes on the last axis, ``input``'s dtype) of the class indices
            ``{x}`` among ``{n}`` classes.
        expand_dims: ``{x}`` with a new axis of length 1 at ``{axis}``.
        targets: the source of ``_pick`` and ``_add_at_targets``, the gather and the scatter at the target
            classes of a class loss's gather form (:func:`symdl.export.forms.gather_forms`).
    """

    xp: str
    cast: str
    scalar: str
    is_float: str
    one_hot: str
    expand_dims: str
    targets: str


#: The gather and the scatter at the target classes, in PyTorch.
_TORCH_TARGETS = '''\
def _pick(values, index, dim):
    """Each row's value of ``values`` at its target class ``index`` (class indices with a unit class axis
    ``dim``), shaped like ``index``: an input row array, a per-class weight (shaped (C, 1, ...) by
    ``_class_rows``) or an omitted weight's 1.0 (returned as is)."""
    if not torch.is_tensor(values):
        return values
    if values.ndim != index.ndim:  # a per-class weight
        return values.reshape(-1)[index]
    return torch.take_along_dim(values, index, dim)


def _add_at_targets(base, index, values, dim, like, fresh):
    """``base`` (broadcast to ``like``'s shape) plus ``values`` added at each row's target class: a class
    loss's gradient ``base + t * values`` for one-hot rows ``t``. A ``fresh`` full-shape ``base`` (a
    temporary of the backward's own) is updated in place where autograd and torch.compile record nothing."""
    values = torch.broadcast_to(values, index.shape)
    if not torch.is_tensor(base):  # a constant base (0 for nll_loss): no full-row pass to compute it
        return torch.full_like(like, base).scatter_add_(dim, index, values)
    if (fresh and base.shape == like.shape and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()):
        return base.scatter_add_(dim, index, values)
    return torch.scatter_add(torch.broadcast_to(base, like.shape), dim, index, values)
'''

#: The gather and the scatter at the target classes, in JAX (jit- and vmap-able: no data-dependent shapes).
_JAX_TARGETS = '''\
def _pick(values, index, dim):
    """Each row's value of ``values`` at its target class ``index`` (class indices with a unit class axis
    ``dim``), shaped like ``index``: an input row array, a per-class weight (shaped (C, 1, ...) by
    ``_class_rows``) or an omitted weight's 1.0 (returned as is)."""
    if values.ndim == 0:
        return values
    if values.ndim != index.ndim:  # a per-class weight
        return values.reshape(-1)[index]
    return jnp.take_along_axis(values, index, axis=dim)


def _add_at_targets(base, index, values, dim, like, fresh):
    """``base`` (broadcast to ``like``'s shape) plus ``values`` added at each row's target class: a class
    loss's gradient ``base + t * values`` for one-hot rows ``t`` (``fresh`` is PyTorch's in-place hint)."""
    base = jnp.broadcast_to(jnp.asarray(base, like.dtype), like.shape)
    positions = list(jnp.indices(index.shape, sparse=True))
    positions[dim] = index
    return base.at[tuple(positions)].add(jnp.broadcast_to(values, index.shape).astype(like.dtype))
'''


#: One row per framework.
TORCH_API = ArrayApi(xp="torch", cast="{x}.to(input.dtype)", scalar="{x}", is_float="torch.is_floating_point({x})",
                     one_hot="torch.nn.functional.one_hot({x}, {n}).to(input.dtype)",
                     expand_dims="torch.unsqueeze({x}, {axis})", targets=_TORCH_TARGETS)
JAX_API = ArrayApi(xp="jnp", cast="jnp.asarray({x}, input.dtype)", scalar="jnp.asarray({x}, input.dtype)",
                   is_float="jnp.issubdtype({x}.dtype, jnp.floating)",
                   one_hot="jax.nn.one_hot({x}, {n}, dtype=input.dtype)", expand_dims="jnp.expand_dims({x}, {axis})",
                   targets=_JAX_TARGETS)

#: torch.nn.functional.softmax's legacy default axis: the same source in every exported module.
SOFTMAX_DIM_SOURCE = '''\
def _softmax_dim(ndim, dim):
    """torch.nn.functional.softmax's legacy default axis when ``dim`` is None."""
    if dim is not None:
        return dim
    return 0 if ndim in (0, 1, 3) else 1
'''


def runtime_source(api: ArrayApi) -> str:
    """The source of the runtime helpers of an exported module, in ``api``'s spelling."""
    xp = api.xp
    rows = api.one_hot.format(x="safe", n="num_classes")
    signed = api.expand_dims.format(x=api.cast.format(x="target"), axis="dim")
    picked = api.expand_dims.format(x="safe", axis="dim")
    return SOFTMAX_DIM_SOURCE + "\n\n" + api.targets + f'''

def _reduce(out, reduction):
    """PyTorch's loss reduction."""
    if reduction == "none":
        return out
    return {xp}.sum(out) if reduction == "sum" else {xp}.mean(out)


def _spread(grad, shape, reduction, denominator=None, broadcast=True):
    """The upstream gradient of a reduced loss, per element of the unreduced one (``broadcast=False``:
    reduced, the one value every element shares, which the arithmetic it enters broadcasts; multiplying
    by a broadcast view would first write a full tensor of that one value)."""
    if reduction == "none":
        return grad
    count = math.prod(shape) if denominator is None else denominator
    each = grad / count if reduction == "mean" else grad
    return {xp}.broadcast_to(each, shape) if broadcast else each


def _class_reduce(loss, reduction, denominator):
    """A class loss's reduction: 'mean' divides by ``denominator`` (the counted rows' summed weight)."""
    if reduction == "none":
        return loss
    return {xp}.sum(loss) if reduction == "sum" else {xp}.sum(loss) / denominator


def _class_rows(input, target, *, index, weight=None, ignore_index=None, weighted=False, sign=False,
                gather=False):
    """Targets as rows along the class axis, the mask of counted rows and 'mean''s denominator.

    Class indices become one-hot rows, or with ``gather`` (the loss has a gather form) the indices
    themselves with a unit class axis (``_pick`` and ``_add_at_targets`` read them); ignored rows
    point at class 0 and are masked out. 'mean' divides by the counted rows' summed weight
    (``weighted``) or by the number of rows.
    Returns (dim, target rows, keep, denominator, weight shaped to broadcast along the class axis).
    """
    dim = 1 if input.ndim >= 2 else 0
    num_classes = input.shape[dim]
    rows = math.prod(input.shape) // max(num_classes, 1)
    keep, denominator = {api.scalar.format(x="1.0")}, {api.scalar.format(x="rows")}
    if weight is not None:
        weight = {api.cast.format(x="weight")}.reshape((-1,) + (1,) * (input.ndim - dim - 1))
    if index and not {api.is_float.format(x="target")}:
        counted = target != ignore_index if ignore_index is not None else {xp}.ones_like(target, dtype=bool)
        safe = {xp}.where(counted, target, 0)
        if weighted:
            picked = weight.reshape(-1)[safe] if weight is not None else {xp}.ones_like(safe, dtype=input.dtype)
            denominator = {xp}.sum(picked * counted)
        keep = {api.cast.format(x="counted")}
        target = {picked} if gather else {xp}.moveaxis({rows}, -1, dim)
    elif sign:
        target = {signed}
    return dim, target, keep, denominator, weight


def _sum_to(grad, shape):
    """A broadcast input's gradient summed back to the input's shape."""
    grad = {xp}.broadcast_to(grad, {xp}.broadcast_shapes(grad.shape, shape))
    extra = grad.ndim - len(shape)
    grad = {xp}.sum(grad, axis=tuple(range(extra))) if extra else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return {xp}.sum(grad, axis=dims, keepdims=True) if dims else grad
'''
