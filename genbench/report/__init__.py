"""Reports of benchmark runs: comparison tables, figures, the HTML page, the CI threshold gate.

- ``genbench.report.results``: reading results.json files and run folders.
- ``genbench.report.tables``: ``build_table(results, fmt)`` (csv, md, latex, json).
- ``genbench.report.figures``: ``make_figures(run_dir, results)`` (PNG + PDF).
- ``genbench.report.html``: ``build_html(run_dir)`` (one self-contained page).
- ``genbench.report.check``: ``load_thresholds(path)``, ``check_results(results, thresholds)``.
"""
