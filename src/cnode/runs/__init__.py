"""How results are made and kept: ``store`` (the only module that writes results), ``plans`` (a chapter's plan),
``grid`` and ``sweeps`` (the runners), ``benchmark`` (the benchmark JSONs), ``reproduction``, ``nbclean``."""
