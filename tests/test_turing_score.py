"""`genbench turing score` and the statistics behind it, against hand-computed cases,
scipy/statsmodels/scikit-learn references and closed forms."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from turing_helpers import answers_file, make_small_study

from genbench.errors import InputError
from genbench.turing.score import render, score_files, to_json
from genbench.turing.stats import Confusion, auc_delong, binomial_p, clopper_pearson, fleiss_kappa

# ----------------------------------------------------------------------------- statistics


def test_clopper_pearson_closed_forms_and_reference():
    # k = 0 and k = n have closed forms: (0, 1 - (a/2)^(1/n)) and ((a/2)^(1/n), 1).
    for n in (1, 5, 20, 75):
        assert clopper_pearson(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n), rel=1e-12))
        assert clopper_pearson(n, n) == (pytest.approx(0.025 ** (1 / n), rel=1e-12), 1.0)
    # n = 1, k = 0 at 90%: (0, 0.95). A value checked by hand from the beta quantiles:
    assert clopper_pearson(0, 1, 0.90)[1] == pytest.approx(0.95)
    # Newcombe (1998), Stat. Med. 17:857, 81/263: exact (method 5) 0.2527 to 0.3676; the
    # Wilson interval (method 3, 0.2553 to 0.3662) is a different method and must not match.
    lo, hi = clopper_pearson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2527, 0.3676)
    sm = pytest.importorskip("statsmodels.stats.proportion")
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 200))
        k = int(rng.integers(0, n + 1))
        for level in (0.9, 0.95, 0.99):
            ref = sm.proportion_confint(k, n, alpha=1 - level, method="beta")
            np.testing.assert_allclose(clopper_pearson(k, n, level), ref, atol=1e-10)


def test_binomial_p_hand_computed():
    # P(X >= 8) for Bin(10, 1/2) = (45 + 10 + 1) / 1024; two-sided doubles it.
    assert binomial_p(8, 10) == pytest.approx(2 * 56 / 1024)
    assert binomial_p(5, 10) == pytest.approx(1.0)
    assert binomial_p(0, 6) == pytest.approx(2 / 64)


def test_confusion_definitions():
    # truth: 3 synthetic, 5 real. Calls: 2 of the synthetic called synthetic, 4 of the real real.
    truth = [1, 1, 1, 0, 0, 0, 0, 0]
    calls = [1, 1, 0, 0, 0, 0, 0, 1]
    c = Confusion.from_labels(truth, calls)
    assert (c.tp, c.fn, c.tn, c.fp) == (2, 1, 4, 1)
    assert c.accuracy().value == pytest.approx(6 / 8)
    assert c.sensitivity().value == pytest.approx(2 / 3)
    assert c.specificity().value == pytest.approx(4 / 5)
    assert c.sensitivity().ci == clopper_pearson(2, 3)
    assert c.specificity().ci == clopper_pearson(4, 5)


def test_fleiss_kappa_hand_cases_and_reference():
    # Fleiss (1971) / the classic worked example: 10 items, 14 raters, 5 categories -> 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    # Two categories, 3 raters, by hand: P_i = 1, 1, 1/3, 1/3 -> P = 2/3; p_j = 1/2 -> Pe = 1/2.
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1], [1, 2]]) == pytest.approx(1 / 3)
    assert fleiss_kappa([[2, 0], [0, 2], [2, 0]]) == pytest.approx(1.0)  # perfect agreement
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # all in one category: undefined
    ir = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(1)
    for _ in range(30):
        raters = int(rng.integers(2, 7))
        cats = int(rng.integers(2, 5))
        t = np.stack([rng.multinomial(raters, rng.dirichlet(np.ones(cats))) for _ in range(25)])
        assert fleiss_kappa(t) == pytest.approx(ir.fleiss_kappa(t, method="fleiss"), abs=1e-12)


def test_auc_delong_hand_case_and_sklearn():
    # pos = [2, 3], neg = [1, 2]: psi = [[1, .5], [1, 1]] -> AUC 0.875; V10 = [.75, 1],
    # V01 = [1, .75]; var = 0.03125 / 2 + 0.03125 / 2.
    auc, ci, se = auc_delong([1, 1, 0, 0], [2, 3, 1, 2])
    assert auc == pytest.approx(0.875)
    assert se == pytest.approx(math.sqrt(0.03125))
    assert ci == (pytest.approx(0.875 - 1.959963985 * se), 1.0)
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    for _ in range(20):
        t = rng.integers(0, 2, 40)
        s = rng.integers(-5, 6, 40)
        if t.min() == t.max():
            continue
        assert auc_delong(t, s)[0] == pytest.approx(roc_auc_score(t, s))


# ----------------------------------------------------------------------------- scoring files


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture()
def study(tmp_path):
    key = make_small_study(tmp_path / "study", n=4, seed=1)  # 8 items
    return key, tmp_path / "study" / "key.json"


def _truth(key):
    return {it["id"]: it["truth"] for it in key["items"]}


def test_score_hand_computed(study, tmp_path):
    key, key_path = study
    truth = _truth(key)
    ids = [it["id"] for it in key["items"]]
    synth = [i for i in ids if truth[i] == "synthetic"]
    real = [i for i in ids if truth[i] == "real"]
    # Reader A: 3 of 4 synthetic called synthetic, 2 of 4 real called real; confidences given.
    a_calls = {**{i: "synthetic" for i in synth[:3]}, synth[3]: "real",
               **{i: "real" for i in real[:2]}, **{i: "synthetic" for i in real[2:]}}
    a_conf = {synth[0]: 5, synth[1]: 4, synth[2]: 2, synth[3]: 1, real[0]: 5, real[1]: 3,
              real[2]: 1, real[3]: 2}
    # Reader B: all "real" (sensitivity 0, specificity 1).
    b_calls = {i: "real" for i in ids}
    fa = _write(tmp_path / "a.json", answers_file(key, "A", a_calls, a_conf))
    fb = _write(tmp_path / "b.json", answers_file(key, "B", b_calls))
    [s] = score_files([key_path, fb, fa])
    doc = to_json([s])["studies"][0]
    a, b = doc["readers"]
    assert (a["reader"], b["reader"]) == ("A", "B")
    assert a["accuracy"]["value"] == pytest.approx(5 / 8)
    assert a["sensitivity"]["value"] == pytest.approx(3 / 4)
    assert a["specificity"]["value"] == pytest.approx(2 / 4)
    assert a["accuracy"]["ci"] == pytest.approx(list(clopper_pearson(5, 8)))
    assert a["p_value"] == pytest.approx(binomial_p(5, 8))
    assert b["sensitivity"]["value"] == 0.0 and b["specificity"]["value"] == 1.0
    # AUC of signed confidence by hand: synthetic scores [5, 4, 2, -1], real [-5, -3, 1, 2].
    # Pairs won (ties 1/2): 5 -> 4, 4 -> 4, 2 -> 3.5, -1 -> 2 => 13.5 / 16.
    assert a["auc"]["value"] == pytest.approx(13.5 / 16)
    assert b["auc"] is None and "without confidence" in b["auc_note"]
    pooled = doc["pooled"]
    assert pooled["accuracy"]["value"] == pytest.approx((5 + 4) / 16)
    assert pooled["sensitivity"]["value"] == pytest.approx(3 / 8)
    assert pooled["specificity"]["value"] == pytest.approx(6 / 8)
    assert pooled["accuracy"]["ci"] == pytest.approx(list(clopper_pearson(9, 16)))
    assert pooled["auc"] is None  # B gave no confidences
    # Kappa for 2 readers over 8 items: agreement on the 4 items A called real.
    votes = [sum(c[i] == "synthetic" for c in (a_calls, b_calls)) for i in ids]
    table = [[2 - v, v] for v in votes]
    assert doc["fleiss_kappa"]["value"] == pytest.approx(fleiss_kappa(table))
    assert doc["fleiss_kappa"]["n_items"] == 8
    # The paper's layout: rows accuracy / sensitivity / specificity, one column per study.
    md = render([s], "md")
    assert md.splitlines()[0] == "| | pelvic |"
    assert [ln.split("|")[1].strip() for ln in md.splitlines()[2:5]] == [
        "Accuracy", "Sensitivity", "Specificity"]
    assert "| Accuracy | 0.56 [" in md
    latex = render([s], "latex")
    assert r"\toprule" in latex and "Accuracy & 0.56 [" in latex and r"Fleiss' $\kappa$" in latex
    csv = render([s], "csv").splitlines()
    assert csv[0] == "metric,reader,pelvic,pelvic ci_low,pelvic ci_high"
    assert csv[1].startswith("accuracy,pooled,0.5625,")
    assert json.loads(render([s], "json"))["studies"][0]["pooled"]["n_judgments"] == 16


def test_two_studies_give_two_columns(tmp_path):
    k1 = make_small_study(tmp_path / "chest", n=2, seed=1, title="chest")
    k2 = make_small_study(tmp_path / "heart", n=2, seed=2, title="heart")
    files = [tmp_path / "chest" / "key.json", tmp_path / "heart" / "key.json"]
    for k, name in ((k1, "c"), (k2, "h")):
        calls = {i: "synthetic" for i in _truth(k)}
        files.append(_write(tmp_path / f"{name}.json", answers_file(k, "A", calls)))
    studies = score_files(files)
    md = render(studies, "md")
    assert md.splitlines()[0] == "| | chest | heart |"
    assert "| chest | A |" in md and "| heart | A |" in md
    # All called synthetic: sensitivity 2/2 (lower bound 0.025^(1/2) = 0.16), specificity 0/2.
    assert "| Sensitivity | 1.00 [0.16, 1.00] | 1.00 [0.16, 1.00] |" in md
    assert "| Specificity | 0.00 [0.00, 0.84] | 0.00 [0.00, 0.84] |" in md


@pytest.mark.parametrize("case, message", [
    ("other_study", "answers are for study gt-000000000000"),
    ("duplicate", "is answered twice"),
    ("missing", "answered 7 of 8 items"),
    ("unknown", "not in the study's key"),
    ("bad_answer", "answer must be 'real' or 'synthetic'"),
    ("bad_confidence", "confidence must be 1-5"),
    ("same_reader", "answered study"),
    ("not_ours", "is neither a study key"),
])
def test_bad_answers_are_one_line_errors_naming_the_file(study, tmp_path, capsys, case, message):
    from genbench.cli import main

    key, key_path = study
    ids = [it["id"] for it in key["items"]]
    calls = {i: "real" for i in ids}
    doc = answers_file(key, "A", calls)
    extra = []
    if case == "other_study":
        doc["study_id"] = "gt-000000000000"
    elif case == "duplicate":
        doc["answers"].append(dict(doc["answers"][0]))
    elif case == "missing":
        doc["answers"].pop(3)
    elif case == "unknown":
        doc["answers"][0]["id"] = "ffffffffff"
    elif case == "bad_answer":
        doc["answers"][0]["answer"] = "fake"
    elif case == "bad_confidence":
        doc["answers"][0]["confidence"] = 7
    elif case == "same_reader":
        extra = [_write(tmp_path / "again.json", answers_file(key, "A", calls))]
    elif case == "not_ours":
        doc = {"hello": 1}
    bad = _write(tmp_path / "answers.json", doc)
    rc = main(["turing", "score", str(key_path), str(bad), *map(str, extra)])
    _, err = capsys.readouterr()
    assert rc == 2, err
    assert message in err and str(tmp_path / ("again.json" if extra else "answers.json")) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_allow_incomplete_reports_what_is_missing(study, tmp_path):
    key, key_path = study
    ids = [it["id"] for it in key["items"]]
    a = _write(tmp_path / "a.json", answers_file(key, "A", {i: "real" for i in ids[:5]}))
    b = _write(tmp_path / "b.json", answers_file(key, "B", {i: "synthetic" for i in ids}))
    with pytest.raises(InputError, match="answered 5 of 8"):
        score_files([key_path, a, b])
    [s] = score_files([key_path, a, b], allow_incomplete=True)
    doc = to_json([s])["studies"][0]
    ra = doc["readers"][0]
    assert ra["missing"] == ids[5:] and ra["n_answered"] == 5
    assert ra["accuracy"]["ci"] == pytest.approx(list(clopper_pearson(
        sum(_truth(key)[i] == "real" for i in ids[:5]), 5)))
    assert doc["fleiss_kappa"]["n_items"] == 5  # only items both readers answered
    assert "3 of 8 items not answered" in render([s], "md")
    assert doc["pooled"]["n_judgments"] == 13


def test_key_and_input_errors(study, tmp_path):
    key, key_path = study
    a = _write(tmp_path / "a.json", answers_file(key, "A", {i: "real" for i in _truth(key)}))
    with pytest.raises(Exception, match="no study key"):
        score_files([a])
    with pytest.raises(InputError, match="given twice"):
        score_files([key_path, a, a])
    with pytest.raises(InputError, match="no answers file given"):
        other = make_small_study(tmp_path / "other", n=2, seed=9)
        assert other["study_id"] != key["study_id"]
        score_files([key_path, tmp_path / "other" / "key.json", a])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        score_files([key_path, tmp_path / "broken.json"])


def test_cli_writes_json_and_table_without_clobbering(study, tmp_path, capsys):
    from genbench.cli import main

    key, key_path = study
    a = _write(tmp_path / "a.json", answers_file(key, "A", {i: "synthetic" for i in _truth(key)}))
    rc = main(["turing", "score", str(key_path), str(a), "--format", "latex", "--out",
               str(tmp_path / "t.tex"), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    assert (tmp_path / "t.tex").read_text().startswith(r"\begin{table}")
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "genbench.turing.score/1"
    capsys.readouterr()
    rc = main(["turing", "score", str(key_path), str(a), "--out", str(tmp_path / "t.tex")])
    assert rc == 2 and "--force" in capsys.readouterr().err


def test_clustered_proportion_hand_cases():
    from scipy.stats import beta

    from genbench.turing.stats import clustered_proportion

    # One trial per cluster: exactly the exact binomial interval.
    c = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    p = clustered_proportion(c, np.arange(10))
    assert p.n_eff == pytest.approx(10) and p.ci == pytest.approx(clopper_pearson(6, 10))
    # 5 clusters of 10 identical trials (1, 0, 1, 0, 1): p = 0.6; var_c = 5/4 * (3 * 16 + 2 * 36)
    # / 50^2 = 0.06; srs variance 0.24 / 49; deff = 12.25; n_eff = 50 / 12.25.
    p = clustered_proportion(np.repeat([1, 0, 1, 0, 1], 10), np.repeat(np.arange(5), 10))
    n_eff = 50 / 12.25
    assert p.n_eff == pytest.approx(n_eff)
    k = 0.6 * n_eff
    assert p.ci == pytest.approx((beta.ppf(0.025, k, n_eff - k + 1), beta.ppf(0.975, k + 1, n_eff - k)))
    # Clusters that agree less than chance would say are not rewarded: deff is at least 1.
    alt = clustered_proportion(np.tile([1, 0], 25), np.repeat(np.arange(25), 2))
    assert alt.n_eff == pytest.approx(50)
