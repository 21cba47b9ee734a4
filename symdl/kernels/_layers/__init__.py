"""The hand-written runtime of the generated layer kernels (NumPy only), one module per kind of layer.

Two halves in each module:

* **plans** (``*_plan``): check the arrays and hyper-parameters of one call
  and resolve them (padding 'same', output sizes, groups) into a small frozen
  record. Every rule broken raises :class:`~symdl.errors.OpInputError` or
  :class:`~symdl.errors.OpParameterError` (both ``ValueError``) naming the op,
  the shapes and the rule. Plans that depend only on shapes and options are
  remembered (:func:`~symdl.kernels._layers.common.remembered`).
* **closed forms** (``*_forward``, ``*_backward``): the array programs the
  kernels run, given a plan. They use only NumPy operations that are exact on
  object arrays too, so :mod:`symdl.proofs.layers` runs *this code* on arrays
  of SymPy symbols and proves its output equal to SymPy's derivative of the
  layer's index-level definition.

:mod:`symdl.kernels._layers_runtime` gathers the names the generated kernels call.
:mod:`~symdl.kernels._layers.batch_last` is no kernel's: :class:`symdl.nn.Sequential` runs
``Conv2d - ReLU - MaxPool2d`` blocks through it, fused, on float arrays (the same values).
"""
