"""The metric registry is the one list of metrics: every command, format and check reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from report_fixtures import metrics_json, results_json

from genbench.cli import app, main
from genbench.errors import UsageError
from genbench.metrics.registry import FAMILIES, REGISTRY, MetricRegistry, MetricSpec
from genbench.report.check import derive_thresholds, load_thresholds, check_results
from genbench.report.tables import build_table, metric_label

ROOT = Path(__file__).resolve().parents[1]


def _every_metric_results() -> list[dict]:
    values = {spec.name: (1.0 + i / 10, 0.01) for i, spec in enumerate(REGISTRY)}
    floor = metrics_json(**{k: (v[0] / 2, None) for k, v in values.items()})
    return [results_json("pelvic", {"ddpm": metrics_json(**values),
                                    "wgan-gp": metrics_json(**{k: v[0] * 2 for k, v in values.items()})},
                         floor=floor),
            results_json("chest", {"ddpm": metrics_json(**values)})]


def test_every_registered_metric_appears_in_every_table_format():
    results = _every_metric_results()
    for fmt in ("csv", "md", "latex", "json"):
        text = build_table(results, fmt)
        for spec in REGISTRY:
            needle = spec.name if fmt in ("csv", "json") else spec.title
            assert needle in text, f"{spec.name} missing from the {fmt} table"
    # The single-dataset layout (models x metrics) too.
    single = build_table(results[:1], "md")
    header = next(line for line in single.splitlines() if line.startswith("| Model"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == [metric_label(s.name) for s in REGISTRY]


def test_every_registered_metric_is_a_check_bound_and_direction_is_respected(tmp_path):
    results = _every_metric_results()[:1]
    toml = tmp_path / "t.toml"
    toml.write_text(derive_thresholds(results, margin=0.1))
    thresholds = load_thresholds(toml)
    assert {r.metric for r in thresholds.rules} == set(REGISTRY.names())
    assert check_results(results, thresholds).passed
    # Make every metric 50% worse in its own direction: every bound is violated.
    worse = _every_metric_results()[:1]
    for entry in worse[0]["models"].values():
        for name, m in entry["metrics"]["metrics"].items():
            m["value"] *= 1.5 if REGISTRY.direction(name) < 0 else 0.5
    outcome = check_results(worse, thresholds)
    assert {v.metric for v in outcome.violations} == set(REGISTRY.names())


def test_every_selector_resolves_and_is_documented_in_help(capsys):
    for selector, names in REGISTRY.selectors().items():
        assert REGISTRY.parse(selector) == tuple(n for n in REGISTRY.names() if n in names)
    assert REGISTRY.parse("prc") == ("precision", "recall")
    assert REGISTRY.parse("all") == REGISTRY.default_names()
    with pytest.raises(UsageError, match=r"did you mean 'fid'"):
        REGISTRY.parse("fidd")


@pytest.mark.parametrize("selector", sorted(REGISTRY.selectors()))
def test_run_and_metrics_accept_the_same_metric_names(selector, monkeypatch, tmp_path):
    seen = {}

    def fake_run(cfg, reporter):
        seen["run"] = cfg.metrics
        raise SystemExit(0)

    monkeypatch.setattr("genbench.runner.run_benchmark", fake_run)
    with pytest.raises(SystemExit):
        main(["run", "--dataset", "pelvic", "--metrics", selector, "--out", str(tmp_path)])
    assert seen["run"] == REGISTRY.parse(selector)

    def fake_evaluate(real, synth, options, progress=None, **_kw):
        seen["metrics"] = options.metrics
        raise SystemExit(0)

    monkeypatch.setattr("genbench.metrics.pipeline.evaluate", fake_evaluate)
    monkeypatch.setattr("genbench.io.read_image_folder", lambda *a, **k: __import__(
        "genbench.imageset", fromlist=["ImageSet"]).ImageSet(__import__("torch").zeros(2, 1, 8, 8)))
    with pytest.raises(SystemExit):
        main(["metrics", str(tmp_path), str(tmp_path), "--metrics", selector, "-q"])
    assert seen["metrics"] == seen["run"]


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group)
    stack = [(prefix, click_group)]
    while stack:
        path, cmd = stack.pop()
        subs = getattr(cmd, "commands", None)
        if subs:
            stack.extend(((*path, name), sub) for name, sub in subs.items())
        else:
            yield path, cmd


@pytest.mark.parametrize("path", [p for p, _ in _commands(app)], ids=lambda p: " ".join(p))
def test_unknown_option_is_a_one_line_usage_error_on_every_command(path, capsys):
    rc = main([*path, "--no-such-optoin"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "No such option: --no-such-optoin" in err, err
    assert "internal error" not in err


def test_mistyped_option_suggests_the_closest(capsys):
    assert main(["run", "--modelz", "x", "--dataset", "pelvic"]) == 2
    assert "did you mean --models" in capsys.readouterr().err.replace("\n", " ")
    assert main(["metrics", "a", "b", "--metrix", "fid"]) == 2
    assert "--metrics" in capsys.readouterr().err


def test_registry_rejects_clashes_and_bad_specs():
    reg = MetricRegistry()
    reg.register(MetricSpec(name="x", title="X", direction=-1, family="pixels", compute="m:f", description=""))
    with pytest.raises(ValueError):
        reg.register(MetricSpec(name="y", title="Y", direction=-1, family="pixels", compute="m:f",
                                description="", aliases=("x",)))
    with pytest.raises(ValueError):
        MetricSpec(name="z", title="Z", direction=0, family="pixels", compute="m:f", description="")
    with pytest.raises(ValueError):
        MetricSpec(name="z", title="Z", direction=1, family="nope", compute="m:f", description="")


def test_every_spec_loads_and_its_family_is_known():
    for spec in REGISTRY:
        assert callable(spec.load()), spec.name
        assert spec.family in FAMILIES


def test_the_registry_is_the_only_list_of_metric_names():
    """No module keeps its own copy of the metric list (the old constants are gone)."""
    pattern = re.compile(r"\b(METRIC_NAMES|DIRECTION|INCEPTION_METRICS|METRIC_ALIASES|LABELS|DECIMALS)\b")
    offenders = []
    for path in (ROOT / "genbench").rglob("*.py"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_readme_lists_every_metric():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- metrics:start -->"):readme.index("<!-- metrics:end -->")]
    for spec in REGISTRY:
        assert f"`{spec.name}`" in section, f"README's metric list lacks {spec.name}"


def test_readme_metric_table_is_generated_from_the_registry():
    from genbench.metrics.registry import markdown_table

    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- metrics:start -->") + len("<!-- metrics:start -->\n")
    assert readme[start:readme.index("<!-- metrics:end -->")] == markdown_table(), (
        "README's metric table is stale: paste `python -m genbench.metrics.registry` between the markers")
