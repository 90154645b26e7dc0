"""``proctrace view --html``: one self-contained page with a waterfall, like Jaeger's.

A row per span, indented by depth, a bar on a shared time axis coloured by
status, and the span's attributes and events on click. The spans are embedded
as JSON; the page loads nothing from the network.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Mapping

from .spans import ViewSpan

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>proctrace: __TITLE__</title>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header { padding: 8px 14px; background: #1f2937; color: #fff; }
h2 { font-size: 14px; margin: 14px 14px 4px; }
.trace { margin-bottom: 18px; }
.row { display: flex; align-items: center; height: 22px; cursor: pointer;
       border-bottom: 1px solid #f0f0f0; }
.row:hover, .row.selected { background: #eef4ff; }
.label { width: 38%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
         padding-left: 8px; box-sizing: border-box; }
.label .meta { color: #888; margin-left: 6px; }
.lane { position: relative; flex: 1; height: 14px; margin-right: 14px; }
.bar { position: absolute; height: 100%; min-width: 2px; border-radius: 2px; }
.bar.UNSET, .bar.OK { background: #4f8fd6; }
.bar.ERROR { background: #d64f4f; }
.dur { position: absolute; font-size: 11px; color: #555; white-space: nowrap; }
.details { margin: 4px 14px 10px 14px; padding: 8px; background: #fafafa;
           border: 1px solid #ddd; display: none; }
.details.open { display: block; }
.details table { border-collapse: collapse; }
.details td { padding: 1px 10px 1px 0; vertical-align: top; font-family: monospace; }
.error { color: #b00; }
</style></head>
<body>
<header>proctrace &middot; __TITLE__</header>
<main id="traces"></main>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const traces = JSON.parse(document.getElementById("data").textContent);
const root = document.getElementById("traces");
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function table(obj) {
  const t = el("table");
  for (const [k, v] of Object.entries(obj)) {
    const tr = el("tr");
    tr.append(el("td", "", k), el("td", "", typeof v === "string" ? v : JSON.stringify(v)));
    t.append(tr);
  }
  return t;
}
for (const trace of traces) {
  const box = el("section", "trace");
  box.dataset.traceId = trace.id;
  box.append(el("h2", "", "trace " + trace.id + " \\u00b7 " + trace.spans.length + " spans"));
  let t0 = Infinity, t1 = -Infinity;  // no spread: it fails on very large traces
  for (const s of trace.spans) { t0 = Math.min(t0, s.start); t1 = Math.max(t1, s.end); }
  const total = Math.max(t1 - t0, 1);
  for (const s of trace.spans) {
    const row = el("div", "row");
    row.dataset.spanId = s.id;
    row.dataset.status = s.status;
    const a = s.attributes;
    const label = el("div", "label");
    label.style.paddingLeft = (8 + 16 * s.depth) + "px";
    label.append(el("span", s.status === "ERROR" ? "error" : "", s.name));
    let meta = "";
    if (a["process.pid"] !== undefined) meta += "pid " + a["process.pid"];
    if (a["proctrace.start_method"]) meta += " " + a["proctrace.start_method"];
    if (a["process.exit.code"] !== undefined) meta += " exit " + a["process.exit.code"];
    label.append(el("span", "meta", meta));
    const lane = el("div", "lane");
    const bar = el("div", "bar " + s.status);
    const left = 100 * (s.start - t0) / total, width = 100 * (s.end - s.start) / total;
    bar.style.left = left + "%";
    bar.style.width = width + "%";
    const dur = el("span", "dur", ((s.end - s.start) / 1e6).toFixed(1) + " ms");
    dur.style.left = Math.min(left + width, 92) + "%";
    lane.append(bar, dur);
    row.append(label, lane);
    const details = el("div", "details");
    if (s.message) details.append(el("div", "error", s.status + ": " + s.message));
    details.append(el("strong", "", "attributes"), table(a));
    if (s.events.length) {
      details.append(el("strong", "", "events"));
      for (const e of s.events) {
        details.append(el("div", "", ((e.time - t0) / 1e6).toFixed(2) + " ms  " + e.name));
        details.append(table(e.attributes));
      }
    }
    row.addEventListener("click", () => {
      details.classList.toggle("open");
      row.classList.toggle("selected");
    });
    box.append(row, details);
  }
  root.append(box);
}
document.body.dataset.rendered = String(traces.length);
</script>
</body></html>
"""


def page(roots: Mapping[str, list[ViewSpan]], title: str) -> str:
    """The whole HTML document for the traces in ``roots``."""
    traces = []
    for trace_id, top in roots.items():
        rows = []
        for span, depth in _with_depth(top, 0):
            entry = span.to_json()
            entry["depth"] = depth
            rows.append(entry)
        traces.append({"id": trace_id, "spans": rows})
    # No "<" at all inside the script element: "</script>" or "<!--" would end or hide it.
    data = json.dumps(traces).replace("<", "\\u003c")
    return _PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def _with_depth(spans: list[ViewSpan], depth: int) -> Iterator[tuple[ViewSpan, int]]:
    for span in spans:
        yield span, depth
        yield from _with_depth(span.children, depth + 1)
