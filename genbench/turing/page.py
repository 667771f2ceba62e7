"""The reader's page: one self-contained HTML file (images embedded as PNG data URIs).

The page holds only what a reader may see: the study id and title, the reader names the
organiser listed, and per item an opaque id and its image, in the (already shuffled) display
order. A Content-Security-Policy forbids every fetch except the embedded ``data:`` images, so
the page works offline and cannot call out. Answers live in the browser's local storage under
``genbench-turing:<study id>:reader:<name>``; "Download answers" writes them as JSON
(``genbench.turing.answers/1``, see ``genbench.turing.score``).

Keys: R = real, S = synthetic, 1-5 = confidence (before or after answering), arrows = previous /
next image.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

ANSWERS_SCHEMA = "genbench.turing.answers/1"
STORAGE_PREFIX = "genbench-turing:"

_TEMPLATE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'none'; base-uri 'none'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="genbench __VERSION__">
<title>Reader study: __TITLE__</title>
<style>
  :root { color-scheme: dark; }
  body { margin: 0; font: 16px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: #111; color: #ddd; }
  header { display: flex; align-items: center; gap: 1em; padding: .6em 1em; background: #1c1c1c; border-bottom: 1px solid #333; flex-wrap: wrap; }
  header h1 { font-size: 1.05em; margin: 0; font-weight: 600; }
  #progress { flex: 1; min-width: 8em; height: .8em; }
  main { max-width: 60em; margin: 0 auto; padding: 1em; text-align: center; }
  button { font: inherit; padding: .45em 1em; border-radius: .3em; border: 1px solid #555; background: #2a2a2a; color: #eee; cursor: pointer; }
  button:hover { background: #383838; }
  button:disabled { opacity: .4; cursor: default; }
  button.chosen { border-color: #e0b040; background: #4a3c10; }
  .answer button { font-size: 1.15em; min-width: 9em; margin: .3em .6em; }
  .confidence button { min-width: 2.6em; margin: .15em; }
  .frame { width: min(512px, 90vw); height: min(512px, 90vw); margin: .6em auto; background: #000; display: flex; align-items: center; justify-content: center; }
  .frame img { width: 100%; height: 100%; object-fit: contain; image-rendering: __RENDERING__; user-select: none; -webkit-user-drag: none; }
  .muted { color: #999; font-size: .9em; }
  #warning { color: #f0a040; }
  input, select { font: inherit; padding: .3em; background: #222; color: #eee; border: 1px solid #555; }
  kbd { border: 1px solid #666; border-radius: .2em; padding: 0 .3em; font-size: .9em; }
</style>
</head>
<body>
<header>
  <h1>Reader study: __TITLE__</h1>
  <span id="progress-text">0 / __N__ answered</span>
  <progress id="progress" max="__N__" value="0"></progress>
  <span id="reader-label" class="muted"></span>
  <button id="download" type="button" disabled>Download answers</button>
</header>
<main>
  <p id="warning" hidden></p>
  <section id="start">
    <p>You will see __N__ images, one at a time. Some are real, some were made by a generative model.
       For each image answer <b>Real</b> (<kbd>R</kbd>) or <b>Synthetic</b> (<kbd>S</kbd>).
       Optionally give your confidence from 1 (a guess) to 5 (certain) with the buttons or the keys
       <kbd>1</kbd>&ndash;<kbd>5</kbd>, before or after answering. <kbd>&larr;</kbd>/<kbd>&rarr;</kbd>
       move between images; you can change an answer at any time.</p>
    <p>Your answers are kept in this browser as you go, so closing or reloading the page loses nothing.
       When you are done (or whenever you like) press <b>Download answers</b> and send the file to the
       study organiser.</p>
    <p><label for="reader-name">Your name</label>
       <select id="reader-select" hidden></select>
       <input id="reader-name" type="text" autocomplete="off" spellcheck="false" size="24">
       <button id="start-button" type="button">Start</button></p>
    <p class="muted">Study __STUDY_ID__</p>
  </section>
  <section id="task" hidden>
    <div class="muted">Image <span id="position">1</span> of __N__ &middot; <span id="current-answer">not answered yet</span></div>
    <div class="frame"><img id="image" alt="study image" draggable="false"></div>
    <div class="confidence" role="group" aria-label="confidence">Confidence (optional):
      <button type="button" data-confidence="1">1</button><button type="button" data-confidence="2">2</button><button type="button" data-confidence="3">3</button><button type="button" data-confidence="4">4</button><button type="button" data-confidence="5">5</button>
    </div>
    <div class="answer">
      <button id="answer-real" type="button">Real (R)</button>
      <button id="answer-synthetic" type="button">Synthetic (S)</button>
    </div>
    <div class="nav">
      <button id="prev" type="button">&larr; Previous</button>
      <button id="next" type="button">Next &rarr;</button>
      <button id="switch-reader" type="button">Change reader</button>
    </div>
  </section>
  <section id="done" hidden>
    <p><b>All __N__ images are answered. Thank you.</b></p>
    <p>Press <b>Download answers</b> and send the file to the study organiser.
       <button id="review" type="button">Review answers</button></p>
  </section>
</main>
<script type="application/json" id="study-data">__DATA__</script>
<script>
(function () {
  "use strict";
  var STUDY = JSON.parse(document.getElementById("study-data").textContent);
  var ITEMS = STUDY.items, N = ITEMS.length;
  var PREFIX = "__PREFIX__" + STUDY.study_id + ":";
  var LAST = PREFIX + "last-reader";
  var state = null, shownAt = null, pending = null, storageOk = true;
  var $ = function (id) { return document.getElementById(id); };

  function warn(text) { var w = $("warning"); w.textContent = text; w.hidden = false; }
  function keyFor(reader) { return PREFIX + "reader:" + reader; }
  function fresh(reader) { return {reader: reader, answers: {}, viewed_ms: {}, pos: 0, started_at: new Date().toISOString()}; }
  function load(reader) {
    try {
      var raw = window.localStorage.getItem(keyFor(reader));
      if (raw) {
        var s = JSON.parse(raw);
        if (s && s.reader === reader && s.answers && typeof s.answers === "object") {
          s.viewed_ms = s.viewed_ms || {};
          s.pos = Math.min(Math.max(0, s.pos | 0), N - 1);
          return s;
        }
      }
    } catch (e) { /* unreadable storage: start afresh, the warning below tells the reader */ }
    return fresh(reader);
  }
  function save() {
    try {
      window.localStorage.setItem(keyFor(state.reader), JSON.stringify(state));
      window.localStorage.setItem(LAST, state.reader);
    } catch (e) {
      if (storageOk) warn("This browser does not let the page keep your answers (" + e.name + "). " +
                          "Do not reload; press Download answers regularly.");
      storageOk = false;
    }
  }
  function answeredCount() { var k = 0; for (var i = 0; i < N; i++) if (state.answers[ITEMS[i].id]) k++; return k; }
  function firstOpen(from) {
    for (var d = 0; d < N; d++) { var i = (from + d) % N; if (!state.answers[ITEMS[i].id]) return i; }
    return -1;
  }
  // Time on screen is added to the item being left, so revisiting an item adds to its time.
  function leaveItem() {
    if (state && shownAt !== null) {
      var id = ITEMS[state.pos].id;
      state.viewed_ms[id] = (state.viewed_ms[id] || 0) + Math.round(performance.now() - shownAt);
      shownAt = null;
    }
  }
  function updateProgress() {
    var k = answeredCount();
    $("progress").value = k;
    $("progress-text").textContent = k + " / " + N + " answered";
  }
  function show(i) {
    state.pos = i; pending = null;
    var item = ITEMS[i], a = state.answers[item.id];
    $("image").src = item.src;
    $("position").textContent = String(i + 1);
    $("current-answer").textContent = a ? ("your answer: " + a.answer + (a.confidence ? ", confidence " + a.confidence : ""))
                                        : "not answered yet";
    $("answer-real").classList.toggle("chosen", !!a && a.answer === "real");
    $("answer-synthetic").classList.toggle("chosen", !!a && a.answer === "synthetic");
    markConfidence(a ? a.confidence : null);
    $("prev").disabled = i === 0; $("next").disabled = i === N - 1;
    $("task").hidden = false; $("done").hidden = true; $("start").hidden = true;
    shownAt = performance.now();
    updateProgress();
    save();
  }
  function markConfidence(c) {
    var bs = document.querySelectorAll("[data-confidence]");
    for (var j = 0; j < bs.length; j++) bs[j].classList.toggle("chosen", String(c) === bs[j].getAttribute("data-confidence"));
  }
  function finished() {
    leaveItem();
    $("task").hidden = true; $("start").hidden = true; $("done").hidden = false;
    updateProgress(); save();
  }
  function answer(value) {
    var item = ITEMS[state.pos], prev = state.answers[item.id];
    leaveItem();
    var conf = pending !== null ? pending : (prev ? prev.confidence : null);
    state.answers[item.id] = {answer: value, confidence: conf, time_ms: state.viewed_ms[item.id] || 0,
                              answered_at: new Date().toISOString()};
    var next = firstOpen(state.pos + 1);
    if (next < 0) finished(); else show(next);
  }
  function setConfidence(c) {
    var item = ITEMS[state.pos], a = state.answers[item.id];
    if (a) { a.confidence = c; save(); show(state.pos); } else { pending = c; markConfidence(c); }
  }
  function move(delta) {
    var i = state.pos + delta;
    if (i < 0 || i >= N) return;
    leaveItem(); show(i);
  }
  function begin(reader) {
    reader = (reader || "").trim();
    if (!reader) { warn("Please enter your name first."); return; }
    $("warning").hidden = true;
    state = load(reader);
    $("reader-label").textContent = "reader: " + reader;
    $("download").disabled = false;
    save();
    if (firstOpen(0) < 0) finished(); else show(state.answers[ITEMS[state.pos].id] ? firstOpen(state.pos) : state.pos);
  }
  function download() {
    if (!state) return;
    leaveItem();
    var out = {schema: "__ANSWERS_SCHEMA__", study_id: STUDY.study_id, title: STUDY.title, reader: state.reader,
               n_items: N, n_answered: answeredCount(), started_at: state.started_at,
               saved_at: new Date().toISOString(), user_agent: navigator.userAgent, answers: []};
    for (var i = 0; i < N; i++) {
      var a = state.answers[ITEMS[i].id];
      if (a) out.answers.push({id: ITEMS[i].id, answer: a.answer, confidence: a.confidence, time_ms: a.time_ms});
    }
    var blob = new Blob([JSON.stringify(out, null, 1)], {type: "application/json"});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "answers-" + state.reader.replace(/[^A-Za-z0-9._-]+/g, "_") + "-" + STUDY.study_id + ".json";
    document.body.appendChild(link); link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 2000);
    if (!$("task").hidden) shownAt = performance.now();
    save();
  }

  // Start screen: a list of names when the organiser gave one, a free text field otherwise.
  if (STUDY.readers.length) {
    var sel = $("reader-select");
    STUDY.readers.forEach(function (r) { var o = document.createElement("option"); o.value = r; o.textContent = r; sel.appendChild(o); });
    sel.hidden = false; $("reader-name").hidden = true;
  }
  $("start-button").addEventListener("click", function () {
    begin(STUDY.readers.length ? $("reader-select").value : $("reader-name").value);
  });
  $("reader-name").addEventListener("keydown", function (e) { if (e.key === "Enter") begin(this.value); });
  $("answer-real").addEventListener("click", function () { answer("real"); });
  $("answer-synthetic").addEventListener("click", function () { answer("synthetic"); });
  $("prev").addEventListener("click", function () { move(-1); });
  $("next").addEventListener("click", function () { move(1); });
  $("review").addEventListener("click", function () { show(0); });
  $("download").addEventListener("click", download);
  $("switch-reader").addEventListener("click", function () {
    leaveItem(); save(); window.localStorage.removeItem(LAST); state = null;
    $("task").hidden = true; $("done").hidden = true; $("start").hidden = false;
    $("download").disabled = true; $("reader-label").textContent = "";
  });
  var cbs = document.querySelectorAll("[data-confidence]");
  for (var j = 0; j < cbs.length; j++) cbs[j].addEventListener("click", function () {
    setConfidence(parseInt(this.getAttribute("data-confidence"), 10));
  });
  document.addEventListener("keydown", function (e) {
    if (!state || $("task").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "SELECT")) return;
    var k = e.key;
    if (k === "r" || k === "R") answer("real");
    else if (k === "s" || k === "S") answer("synthetic");
    else if (k >= "1" && k <= "5" && k.length === 1) setConfidence(parseInt(k, 10));
    else if (k === "ArrowLeft") move(-1);
    else if (k === "ArrowRight") move(1);
    else return;
    e.preventDefault();
  });
  window.addEventListener("pagehide", function () { if (state) { leaveItem(); save(); } });

  try { window.localStorage.getItem(LAST); } catch (e) { storageOk = false; }
  var last = null;
  try { last = window.localStorage.getItem(LAST); } catch (e) { /* reported on first save */ }
  if (last && (!STUDY.readers.length || STUDY.readers.indexOf(last) >= 0)) begin(last);
})();
</script>
</body>
</html>
"""


def _script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no '</' (ends the element), no '<!--'."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_page(*, study_id: str, title: str, readers: list[str], items: list[dict[str, str]],
                pixelated: bool, version: str) -> str:
    """The page's HTML. ``items``: ``[{"id": ..., "src": "data:image/png;base64,..."}]`` in display
    order, and nothing else (the page must not carry any hint of the truth)."""
    for item in items:
        if set(item) != {"id", "src"}:
            raise ValueError(f"page items carry only 'id' and 'src', got {sorted(item)}")
    data = {"study_id": study_id, "title": title, "readers": list(readers), "items": items}
    values = {
        "VERSION": html.escape(version),
        "TITLE": html.escape(title),
        "STUDY_ID": html.escape(study_id),
        "N": str(len(items)),
        "RENDERING": "pixelated" if pixelated else "auto",
        "PREFIX": STORAGE_PREFIX,
        "ANSWERS_SCHEMA": ANSWERS_SCHEMA,
        "DATA": _script_json(data),
    }
    # One pass, so a title that happens to contain a placeholder is not expanded.
    return re.sub(r"__([A-Z_]+?)__", lambda m: values.get(m.group(1), m.group(0)), _TEMPLATE)
