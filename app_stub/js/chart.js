/*
 * chart.js: a small SVG line chart for one block's voltage or temperature (no library).
 *
 * Owns: drawing one series against time with its threshold levels as horizontal lines: warning
 * levels orange and dashed, alarm levels red and solid (the colours of the Excel export, and a
 * line style plus a labelled marker so colour is never the only signal), and the exceedances of
 * the analysis as shaded spans. Long series are reduced to a min/max pair per pixel column so
 * every peak stays visible. Builds DOM nodes only (no inline script or style: CSP-friendly).
 */
(function (root) {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";
  var W = 360, H = 220; // viewBox units; the SVG scales to the container width
  var M = { l: 46, r: 70, t: 12, b: 30 }; // margins: y tick labels left, threshold labels right
  var COLOURS = { warning: "#d35400", alarm: "#c0392b", series: "#1f4e79" }; // orange, red, blue

  function el(name, attrs, text) {
    var n = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text !== undefined) n.textContent = text;
    return n;
  }

  /** "Nice" tick values covering [lo, hi] (1-2-5 steps, about ``n`` of them). */
  function ticks(lo, hi, n) {
    var span = hi - lo || 1;
    var step = Math.pow(10, Math.floor(Math.log10(span / n)));
    [1, 2, 5, 10].some(function (m) { if (span / (step * m) <= n) { step *= m; return true; } return false; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
    return out;
  }

  /** Reduce (x, y) to at most 2 points per pixel column: the min and the max, in time order. */
  function reduce(x, y, x0, x1, columns) {
    var px = [], py = [];
    var bucket = -1, iMin = -1, iMax = -1;
    function flush() {
      if (iMin < 0) return;
      var a = Math.min(iMin, iMax), b = Math.max(iMin, iMax);
      px.push(x[a]); py.push(y[a]);
      if (b !== a) { px.push(x[b]); py.push(y[b]); }
    }
    for (var i = 0; i < x.length; i++) {
      if (x[i] < x0 || x[i] > x1 || !isFinite(y[i])) continue;
      var k = Math.floor((x[i] - x0) / (x1 - x0 || 1) * columns);
      if (k !== bucket) { flush(); bucket = k; iMin = iMax = i; continue; }
      if (y[i] < y[iMin]) iMin = i;
      if (y[i] > y[iMax]) iMax = i;
    }
    flush();
    return { x: px, y: py };
  }

  /**
   * Draw into ``container`` (emptied first). ``opts``:
   *   title, unit ("V"), digits (label decimals), x: Float64Array (minutes), y: Float64Array,
   *   xLabel, thresholds: [{value, kind: "warning"|"alarm", side: "low"|"high"}],
   *   spans: [{x0, x1, severity: "yellow"|"red"}] (minutes).
   * Returns the <svg>.
   */
  function render(container, opts) {
    container.textContent = "";
    var x = opts.x, y = opts.y;
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (var i = 0; i < x.length; i++) {
      if (!isFinite(y[i])) continue;
      if (x[i] < x0) x0 = x[i];
      if (x[i] > x1) x1 = x[i];
      if (y[i] < y0) y0 = y[i];
      if (y[i] > y1) y1 = y[i];
    }
    if (opts.xRange) { x0 = opts.xRange[0]; x1 = opts.xRange[1]; }
    var th = opts.thresholds || [];
    th.forEach(function (t) { y0 = Math.min(y0, t.value); y1 = Math.max(y1, t.value); });
    if (!isFinite(x0)) { x0 = 0; x1 = 1; }
    if (!isFinite(y0)) { y0 = 0; y1 = 1; }
    if (x1 === x0) x1 = x0 + 1;
    var pad = (y1 - y0 || 1) * 0.06;
    y0 -= pad;
    y1 += pad;
    var pw = W - M.l - M.r, ph = H - M.t - M.b;
    function sx(v) { return M.l + (v - x0) / (x1 - x0) * pw; }
    function sy(v) { return M.t + (1 - (v - y0) / (y1 - y0)) * ph; }

    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img",
                          "aria-label": opts.title + ": " + x.length + " samples; " + th.length + " threshold lines" });
    svg.appendChild(el("title", {}, opts.title));
    var frame = el("g", { class: "frame" });
    ticks(y0, y1, 5).forEach(function (v) {
      frame.appendChild(el("line", { x1: M.l, x2: M.l + pw, y1: sy(v), y2: sy(v), class: "gridline" }));
      frame.appendChild(el("text", { x: M.l - 4, y: sy(v) + 3, "text-anchor": "end", class: "tick" }, v.toFixed(opts.digits)));
    });
    ticks(x0, x1, 5).forEach(function (v) {
      frame.appendChild(el("line", { x1: sx(v), x2: sx(v), y1: M.t, y2: M.t + ph, class: "gridline" }));
      frame.appendChild(el("text", { x: sx(v), y: H - M.b + 13, "text-anchor": "middle", class: "tick" }, String(v)));
    });
    frame.appendChild(el("text", { x: M.l + pw / 2, y: H - 3, "text-anchor": "middle", class: "axis-label" }, opts.xLabel || ""));
    frame.appendChild(el("text", { x: 4, y: M.t + 2, class: "axis-label" }, opts.unit));
    frame.appendChild(el("rect", { x: M.l, y: M.t, width: pw, height: ph, class: "plot-border", fill: "none" }));
    svg.appendChild(frame);

    (opts.spans || []).forEach(function (s) {
      var a = Math.max(x0, s.x0), b = Math.min(x1, s.x1);
      if (b <= a) return;
      svg.appendChild(el("rect", { x: sx(a), y: M.t, width: Math.max(1, sx(b) - sx(a)), height: ph,
                                   class: "span span-" + s.severity, "data-severity": s.severity }));
    });

    var r = reduce(x, y, x0, x1, pw * 2);
    var pts = [];
    for (var j = 0; j < r.x.length; j++) pts.push(sx(r.x[j]).toFixed(1) + "," + sy(r.y[j]).toFixed(1));
    svg.appendChild(el("polyline", { points: pts.join(" "), class: "series", fill: "none", stroke: COLOURS.series,
                                     "stroke-width": "1.5", "data-points": String(r.x.length) }));

    th.forEach(function (t) {
      var yy = sy(t.value);
      var line = el("line", { x1: M.l, x2: M.l + pw, y1: yy, y2: yy, stroke: COLOURS[t.kind],
                              "stroke-width": t.kind === "alarm" ? "2" : "1.5",
                              "stroke-dasharray": t.kind === "alarm" ? "none" : "6 4",
                              class: "threshold threshold-" + t.kind, "data-kind": t.kind, "data-side": t.side,
                              "data-value": t.value.toFixed(opts.digits) });
      line.appendChild(el("title", {}, t.side + " " + t.kind + " " + t.value.toFixed(opts.digits) + " " + opts.unit));
      svg.appendChild(line);
      // Marker glyph plus text: the level is readable without seeing the colour.
      svg.appendChild(el("text", { x: M.l + pw + 4, y: yy + 3, fill: COLOURS[t.kind],
                                   class: "threshold-label threshold-label-" + t.kind },
                         (t.kind === "alarm" ? "\u2716 " : "\u26a0 ") + t.value.toFixed(opts.digits)));
    });
    container.appendChild(svg);
    return svg;
  }

  root.SLChart = { render: render, reduce: reduce, ticks: ticks, COLOURS: COLOURS };
})(typeof self !== "undefined" ? self : this);
