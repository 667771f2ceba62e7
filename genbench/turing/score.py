"""Score a reader study: the key(s) from ``genbench turing make`` plus the readers' answer files.

Per reader and pooled over readers (every judgment counted once; positive = synthetic):
accuracy, sensitivity (synthetic images called synthetic) and specificity (real images called
real), each with an exact binomial (Clopper-Pearson) interval; the two-sided exact binomial test
of the accuracy against 0.5; the AUC of the signed confidence (``+c`` for "synthetic", ``-c``
for "real", so 1..5 becomes a 10-step rating scale) with DeLong's interval when every answer
carries a confidence; Fleiss' kappa between readers over the items all of them answered.

The pooled interval and test treat the readers' judgments as independent, as the paper's pooled
table does; readers who share a bias make them too narrow. Per-reader rows are exact.

Several keys may be scored together (one per modality); each answers file is matched to its
key by the study id, and the table gets one column per study.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genbench.errors import InputError, UsageError
from genbench.turing.page import ANSWERS_SCHEMA
from genbench.turing.stats import Confusion, auc_delong, fleiss_kappa
from genbench.turing.study import KEY_SCHEMA

__all__ = ["SCORE_SCHEMA", "Answers", "Key", "load_inputs", "render", "score_files", "score_study"]

SCORE_SCHEMA = "genbench.turing.score/1"
CONFIDENCES = (1, 2, 3, 4, 5)


@dataclass
class Key:
    path: str
    study_id: str
    title: str
    truth: dict[str, bool]  # item id -> is synthetic
    order: list[str]


@dataclass
class Answers:
    path: str
    study_id: str
    reader: str
    calls: dict[str, bool]  # item id -> called synthetic
    confidence: dict[str, int | None]
    time_ms: dict[str, float | None]


@dataclass
class ReaderScore:
    reader: str
    path: str
    confusion: Confusion
    n_answered: int
    missing: list[str]
    auc: tuple[float, tuple[float, float], float] | None
    auc_note: str | None
    median_time_s: float | None
    scores: np.ndarray | None = None  # signed confidences in key order of answered items
    truths: np.ndarray | None = None


@dataclass
class StudyScore:
    key: Key
    readers: list[ReaderScore]
    pooled: Confusion
    pooled_auc: tuple[float, tuple[float, float], float] | None
    kappa: float | None
    kappa_items: int
    level: float
    notes: list[str] = field(default_factory=list)


def _read(path: Path) -> dict[str, Any]:
    from genbench.report.results import read_json

    return read_json(path)


def _parse_key(obj: dict[str, Any], path: str) -> Key:
    try:
        sid, title, items = str(obj["study_id"]), str(obj.get("title", "")), obj["items"]
        truth: dict[str, bool] = {}
        order: list[str] = []
        for it in items:
            item_id, t = str(it["id"]), it["truth"]
            if t not in ("real", "synthetic"):
                raise ValueError(f"item {item_id}: truth must be 'real' or 'synthetic', got {t!r}")
            if item_id in truth:
                raise ValueError(f"item {item_id} appears twice")
            truth[item_id] = t == "synthetic"
            order.append(item_id)
    except (KeyError, TypeError) as exc:
        raise InputError(f"malformed study key (missing or bad field {exc})", path) from None
    except ValueError as exc:
        raise InputError(f"malformed study key: {exc}", path) from None
    if not truth:
        raise InputError("study key lists no items", path)
    return Key(path, sid, title or sid, truth, order)


def _parse_answers(obj: dict[str, Any], path: str) -> Answers:
    sid, reader, entries = obj.get("study_id"), obj.get("reader"), obj.get("answers")
    if not isinstance(sid, str) or not isinstance(entries, list):
        raise InputError("malformed answers file (needs 'study_id' and an 'answers' list)", path)
    if not isinstance(reader, str) or not reader.strip():
        raise InputError("answers file names no reader", path)
    calls: dict[str, bool] = {}
    conf: dict[str, int | None] = {}
    times: dict[str, float | None] = {}
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            raise InputError(f"answer #{k + 1} has no item id", path)
        item_id = e["id"]
        if item_id in calls:
            raise InputError(f"item {item_id} is answered twice", path)
        a = e.get("answer")
        if a not in ("real", "synthetic"):
            raise InputError(f"item {item_id}: answer must be 'real' or 'synthetic', got {a!r}", path)
        c = e.get("confidence")
        if c is not None and (isinstance(c, bool) or c not in CONFIDENCES):
            raise InputError(f"item {item_id}: confidence must be 1-5 or null, got {c!r}", path)
        t = e.get("time_ms")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float))
                              or not math.isfinite(t) or t < 0):
            raise InputError(f"item {item_id}: time_ms must be a non-negative number, got {t!r}",
                             path)
        calls[item_id] = a == "synthetic"
        conf[item_id] = None if c is None else int(c)
        times[item_id] = None if t is None else float(t)
    return Answers(path, sid, reader.strip(), calls, conf, times)


def load_inputs(paths: list[str | Path]) -> tuple[list[Key], list[Answers]]:
    """Sort the files into study keys and answer files (by their ``schema``) and check them."""
    if not paths:
        raise UsageError("give the study's key.json and at least one answers file")
    keys: list[Key] = []
    answers: list[Answers] = []
    seen: dict[str, str] = {}
    for p in paths:
        path = Path(p)
        resolved = str(path.resolve())
        if resolved in seen:
            raise InputError(f"given twice (also as {seen[resolved]})", str(path))
        seen[resolved] = str(path)
        obj = _read(path)
        schema = obj.get("schema")
        if schema == KEY_SCHEMA:
            keys.append(_parse_key(obj, str(path)))
        elif schema == ANSWERS_SCHEMA:
            answers.append(_parse_answers(obj, str(path)))
        else:
            raise InputError(f"is neither a study key ({KEY_SCHEMA}) nor a reader's answers "
                             f"({ANSWERS_SCHEMA}); its schema is {schema!r}", str(path))
    if not keys:
        raise UsageError("no study key among the inputs: give the key.json written by "
                         "`genbench turing make` (it stays with the organiser)")
    if not answers:
        raise UsageError("no answers file among the inputs")
    by_id: dict[str, Key] = {}
    for k in keys:
        if k.study_id in by_id:
            raise InputError(f"is the key of study {k.study_id} again (also {by_id[k.study_id].path})",
                             k.path)
        by_id[k.study_id] = k
    readers: dict[tuple[str, str], str] = {}
    for a in answers:
        key = by_id.get(a.study_id)
        if key is None:
            have = ", ".join(f"{k.study_id} ({k.path})" for k in keys)
            raise InputError(f"answers are for study {a.study_id}, not the study of the key(s) "
                             f"given: {have}", a.path)
        unknown = [i for i in a.calls if i not in key.truth]
        if unknown:
            raise InputError(f"{len(unknown)} answered item id(s) are not in the study's key "
                             f"{key.path}, e.g. {unknown[0]}", a.path)
        other = readers.get((a.study_id, a.reader))
        if other is not None:
            raise InputError(f"reader {a.reader!r} answered study {a.study_id} twice (also in "
                             f"{other})", a.path)
        readers[(a.study_id, a.reader)] = a.path
    for k in keys:
        if not any(a.study_id == k.study_id for a in answers):
            raise InputError("no answers file given for this study", k.path)
    return keys, answers


def _signed(a: Answers, item_ids: list[str]) -> np.ndarray | None:
    vals = []
    for i in item_ids:
        c = a.confidence[i]
        if c is None:
            return None
        vals.append(c if a.calls[i] else -c)
    return np.asarray(vals, dtype=np.float64)


def score_study(key: Key, answers: list[Answers], *, level: float = 0.95,
                allow_incomplete: bool = False) -> StudyScore:
    rows: list[ReaderScore] = []
    notes: list[str] = []
    for a in sorted(answers, key=lambda x: x.reader):
        answered = [i for i in key.order if i in a.calls]
        missing = [i for i in key.order if i not in a.calls]
        if missing and not allow_incomplete:
            raise InputError(f"reader {a.reader!r} answered {len(answered)} of {len(key.order)} "
                             f"items ({len(missing)} missing, e.g. {missing[0]}); pass "
                             "--allow-incomplete to score what is there", a.path)
        if not answered:
            raise InputError(f"reader {a.reader!r} answered none of the items", a.path)
        truth = np.array([key.truth[i] for i in answered])
        calls = np.array([a.calls[i] for i in answered])
        conf = Confusion.from_labels(truth, calls)
        signed = _signed(a, answered)
        auc = note = None
        if signed is not None:
            auc = auc_delong(truth, signed, level)
        else:
            n_without = sum(a.confidence[i] is None for i in answered)
            note = f"no AUC: {n_without} of {len(answered)} answers without confidence"
        times = [a.time_ms[i] for i in answered if a.time_ms[i] is not None]
        rows.append(ReaderScore(a.reader, a.path, conf, len(answered), missing, auc, note,
                                statistics.median(times) / 1000.0 if times else None,
                                signed, truth))
        if missing:
            notes.append(f"{a.reader}: {len(missing)} of {len(key.order)} items not answered "
                         f"(scored without them): {', '.join(missing)}")
    pooled = rows[0].confusion
    for r in rows[1:]:
        pooled = pooled + r.confusion
    pooled_auc = None
    if all(r.auc is not None for r in rows):
        pooled_auc = auc_delong(np.concatenate([r.truths for r in rows]),
                                np.concatenate([r.scores for r in rows]), level)
    kappa, kappa_items = None, 0
    if len(answers) >= 2:
        common = [i for i in key.order if all(i in a.calls for a in answers)]
        kappa_items = len(common)
        if common:
            synth_votes = np.array([sum(a.calls[i] for a in answers) for i in common])
            table = np.stack([len(answers) - synth_votes, synth_votes], axis=1)
            kappa = fleiss_kappa(table)
    return StudyScore(key, rows, pooled, pooled_auc, kappa, kappa_items, level, notes)


def score_files(paths: list[str | Path], *, level: float = 0.95,
                allow_incomplete: bool = False) -> list[StudyScore]:
    if not 0.5 <= level < 1.0:
        raise UsageError(f"--level must be in [0.5, 1), got {level}")
    keys, answers = load_inputs(paths)
    titles = [k.title for k in keys]
    for k in keys:
        if titles.count(k.title) > 1:  # columns must be told apart
            k.title = f"{k.title} ({k.study_id})"
    return [score_study(k, [a for a in answers if a.study_id == k.study_id], level=level,
                        allow_incomplete=allow_incomplete) for k in keys]


# ----------------------------------------------------------------------------- output


def _auc_json(auc: tuple[float, tuple[float, float], float] | None) -> dict[str, Any] | None:
    if auc is None:
        return None
    value, ci, se = auc
    fin = lambda x: None if not math.isfinite(x) else float(x)
    return {"value": fin(value), "ci": [fin(ci[0]), fin(ci[1])], "se": fin(se),
            "method": "Mann-Whitney AUC of the signed confidence, DeLong variance, Wald interval"}


def to_json(studies: list[StudyScore]) -> dict[str, Any]:
    import genbench

    out = []
    for s in studies:
        readers = []
        for r in s.readers:
            readers.append({"reader": r.reader, "file": r.path, "n_answered": r.n_answered,
                            "missing": r.missing, **r.confusion.summary(s.level),
                            "auc": _auc_json(r.auc), "auc_note": r.auc_note,
                            "median_time_s": r.median_time_s})
        out.append({
            "study_id": s.key.study_id, "title": s.key.title, "key": s.key.path,
            "n_items": len(s.key.order),
            "n_real": sum(not v for v in s.key.truth.values()),
            "n_synthetic": sum(s.key.truth.values()),
            "readers": readers,
            "pooled": {"n_readers": len(s.readers), "n_judgments": s.pooled.n,
                       **s.pooled.summary(s.level), "auc": _auc_json(s.pooled_auc)},
            "fleiss_kappa": {"value": None if s.kappa is None or not math.isfinite(s.kappa)
                             else s.kappa, "n_items": s.kappa_items,
                             "n_readers": len(s.readers)},
            "notes": s.notes,
        })
    return {
        "schema": SCORE_SCHEMA,
        "genbench_version": genbench.__version__,
        "level": studies[0].level if studies else None,
        "positive": "synthetic",
        "methods": {
            "ci": "exact binomial (Clopper-Pearson)",
            "p_value": "two-sided exact binomial test of accuracy against 0.5",
            "pooled": "every judgment of every reader counted once (treated as independent)",
            "kappa": "Fleiss' kappa over the items every reader answered",
            "auc": "signed confidence (+c synthetic, -c real); DeLong interval",
        },
        "studies": out,
    }


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _cell(value: float, ci: tuple[float, float], digits: int) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


ROWS = ("Accuracy", "Sensitivity", "Specificity")


def _pooled_rows(s: StudyScore, digits: int) -> dict[str, str]:
    c, lvl = s.pooled, s.level
    rows = {
        "Accuracy": _cell(c.accuracy(lvl).value, c.accuracy(lvl).ci, digits),
        "Sensitivity": _cell(c.sensitivity(lvl).value, c.sensitivity(lvl).ci, digits),
        "Specificity": _cell(c.specificity(lvl).value, c.specificity(lvl).ci, digits),
        "p (accuracy = 0.5)": _p(c.p_value()),
        "AUC": "—" if s.pooled_auc is None else _cell(s.pooled_auc[0], s.pooled_auc[1], digits),
        "Fleiss' κ": _f(s.kappa, digits),
        "Readers × images": f"{len(s.readers)} × {len(s.key.order)}",
    }
    return rows


def _reader_cells(s: StudyScore, r: ReaderScore, digits: int) -> list[str]:
    c, lvl = r.confusion, s.level
    return [_cell(c.accuracy(lvl).value, c.accuracy(lvl).ci, digits),
            _cell(c.sensitivity(lvl).value, c.sensitivity(lvl).ci, digits),
            _cell(c.specificity(lvl).value, c.specificity(lvl).ci, digits),
            _p(c.p_value()),
            "—" if r.auc is None else _cell(r.auc[0], r.auc[1], digits),
            f"{r.n_answered}/{len(s.key.order)}"]


READER_COLUMNS = ("Accuracy", "Sensitivity", "Specificity", "p (acc. = 0.5)", "AUC", "Answered")


def _legend(studies: list[StudyScore]) -> str:
    pct = f"{100 * studies[0].level:g}%"
    return (f"Positive = synthetic. Value [{pct} exact binomial (Clopper-Pearson) CI]; p: two-sided "
            "exact binomial test of accuracy against 0.5; pooled rows count every judgment of "
            "every reader once (treated as independent); AUC of the signed confidence with "
            "DeLong's interval; Fleiss' κ over the items every reader answered.")


def _md(studies: list[StudyScore], digits: int) -> str:
    def esc(t: str) -> str:
        return t.replace("|", "\\|")

    pooled = [_pooled_rows(s, digits) for s in studies]
    lines = ["| | " + " | ".join(esc(s.key.title) for s in studies) + " |",
             "|---|" + "---|" * len(studies)]
    for row in pooled[0]:
        lines.append(f"| {row} | " + " | ".join(p[row] for p in pooled) + " |")
    lines += ["", "Per reader:", "",
              "| Study | Reader | " + " | ".join(READER_COLUMNS) + " |",
              "|---|---|" + "---|" * len(READER_COLUMNS)]
    for s in studies:
        for r in s.readers:
            lines.append(f"| {esc(s.key.title)} | {esc(r.reader)} | "
                         + " | ".join(_reader_cells(s, r, digits)) + " |")
    lines += ["", _legend(studies)]
    notes = [n for s in studies for n in s.notes]
    if notes:
        lines += [""] + [f"- {esc(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _latex(studies: list[StudyScore], digits: int) -> str:
    from genbench.report.tables import latex_escape

    def tex(t: str) -> str:
        return latex_escape(t).replace("κ", r"$\kappa$").replace("×", r"$\times$").replace(
            "—", "---").replace("<", r"$<$")

    pooled = [_pooled_rows(s, digits) for s in studies]
    n = len(studies)
    out = [r"\begin{table}[t]", r"\centering",
           rf"\caption{{Visual Turing test. {tex(_legend(studies))}}}",
           r"\begin{tabular}{l" + "c" * n + "}", r"\toprule",
           " & " + " & ".join(tex(s.key.title) for s in studies) + r" \\", r"\midrule"]
    for row in pooled[0]:
        out.append(tex(row) + " & " + " & ".join(tex(p[row]) for p in pooled) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", "",
            r"\vspace{1em}",
            r"\begin{tabular}{ll" + "c" * len(READER_COLUMNS) + "}", r"\toprule",
            "Study & Reader & " + " & ".join(tex(c) for c in READER_COLUMNS) + r" \\", r"\midrule"]
    for s in studies:
        for r in s.readers:
            out.append(f"{tex(s.key.title)} & {tex(r.reader)} & "
                       + " & ".join(tex(c) for c in _reader_cells(s, r, digits)) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def _csv(studies: list[StudyScore]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    header = ["metric", "reader"]
    for s in studies:
        header += [s.key.title, f"{s.key.title} ci_low", f"{s.key.title} ci_high"]
    w.writerow(header)

    def num(x: float | None) -> str:
        return "" if x is None or not math.isfinite(x) else repr(float(x))

    def triple(c: Confusion | None, what: str, lvl: float) -> list[str]:
        if c is None:
            return ["", "", ""]
        p = getattr(c, what)(lvl)
        return [num(p.value), num(p.ci[0]), num(p.ci[1])]

    def auc_triple(a: Any) -> list[str]:
        return ["", "", ""] if a is None else [num(a[0]), num(a[1][0]), num(a[1][1])]

    readers = sorted({r.reader for s in studies for r in s.readers})
    for who in ["pooled", *readers]:
        confs: list[Confusion | None] = []
        aucs: list[Any] = []
        for s in studies:
            if who == "pooled":
                confs.append(s.pooled)
                aucs.append(s.pooled_auc)
            else:
                mine = next((r for r in s.readers if r.reader == who), None)
                confs.append(None if mine is None else mine.confusion)
                aucs.append(None if mine is None else mine.auc)
        for what in ("accuracy", "sensitivity", "specificity"):
            row = [what, who]
            for s, c in zip(studies, confs, strict=True):
                row += triple(c, what, s.level)
            w.writerow(row)
        row = ["p_value", who]
        for c in confs:
            row += [num(None if c is None else c.p_value()), "", ""]
        w.writerow(row)
        row = ["auc", who]
        for a in aucs:
            row += auc_triple(a)
        w.writerow(row)
        if who == "pooled":
            row = ["fleiss_kappa", "all"]
            for s in studies:
                row += [num(s.kappa), "", ""]
            w.writerow(row)
    return buf.getvalue()


def render(studies: list[StudyScore], fmt: str, *, digits: int = 2) -> str:
    """The paper's table (rows accuracy / sensitivity / specificity, one column per study) plus
    the per-reader rows, as ``md``, ``latex``, ``csv`` or ``json``."""
    import json

    from genbench.io.atomic import _json_ready

    if fmt == "md":
        return _md(studies, digits)
    if fmt == "latex":
        return _latex(studies, digits)
    if fmt == "csv":
        return _csv(studies)
    if fmt == "json":
        return json.dumps(_json_ready(to_json(studies)), indent=2, allow_nan=False) + "\n"
    raise UsageError(f"--format must be md, latex, csv or json, got {fmt!r}")
