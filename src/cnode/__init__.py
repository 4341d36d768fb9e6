"""cnode: contractive convolutional neural ODEs, the executable companion to Zakwan, Xu and
Ferrari-Trecate, "Robust Convolution Neural ODEs via Contractivity-promoting regularization" (CDC 2025).

Layers (imports point down only):
1. ``data``, ``models``, ``contraction``, ``stats``  -- pure functions (``data`` also does I/O)
2. ``theory`` (chapter 1 experiments), ``regularizers``, ``perturbations``, ``lipschitz``
3. ``config``, ``train``, ``evaluate``, ``mechanism`` (chapter 6), ``audit`` (chapter 7)
4. ``store``, ``experiments``/``plans``, ``sweeps``, ``tables``, ``horizon``/``trust`` (chapters 6, 7), ``plots``, CLI
"""

__version__ = "0.1.0"
