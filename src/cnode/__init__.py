"""cnode: contractive convolutional neural ODEs, the executable companion to Zakwan, Xu and
Ferrari-Trecate, "Robust Convolution Neural ODEs via Contractivity-promoting regularization" (CDC 2025).

Three layers, imports pointing down only (book -> runs -> core):
- ``cnode.core``: what a researcher imports to build, train and test a contractive CNODE (data, models, the
  contraction algebra, regularizers, perturbations, Lipschitz bounds, training, evaluation, statistics, the
  mechanism measurements and the masking audit); no files but the data, no chapters.
- ``cnode.runs``: how results are made and kept (the store, the chapters' plans, the runners, reproduction).
- ``cnode.book``: one module per chapter (``c01_contraction`` ... ``c08_rho_search``: its plan, frames, rules,
  sentences and figures), the registry that finds them, and the shared glue, style and tables.
``python -m cnode`` (``__main__``) composes them on the command line.
"""

__version__ = "0.1.0"
