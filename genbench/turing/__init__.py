"""The visual Turing test as a tool: a blinded reader-study kit and its scoring.

- ``genbench.turing.study``: ``make_study`` writes ``index.html`` (the reader's page) and
  ``key.json`` (the truth, kept by the organiser);
- ``genbench.turing.score``: scores the readers' answer files against the key(s);
- ``genbench.turing.stats``: the statistics (exact binomial intervals and test, Fleiss' kappa,
  AUC with DeLong's interval), shared with the machine Turing test (``genbench.metrics.c2st``).
"""
