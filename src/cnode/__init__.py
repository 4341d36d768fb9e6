"""cnode: contractive convolutional neural ODEs, the executable companion to Zakwan, Xu and
Ferrari-Trecate, "Robust Convolution Neural ODEs via Contractivity-promoting regularization" (CDC 2025).

Layers (imports point down only):
1. ``data``, ``models``, ``contraction``  -- pure tensor functions (``data`` also does I/O)
2. ``theory`` (chapter 1 experiments), later ``regularizers``, ``perturbations``
3. ``config``, ``train``, ``evaluate``
4. ``store``, ``plots``, CLI
"""

__version__ = "0.1.0"
