/*
 * app.js: the companion web app's views and router (hash routes, no build step, no framework).
 *
 * Owns what the technician sees and does on the phone:
 *   #/signin              sign in with a bearer token (checked against GET /api/me)
 *   #/                    sites (and tests not hung under a string)
 *   #/sites/<id>          the site's battery systems and their strings
 *   #/strings/<id>        the string's capacity tests
 *   #/tests/<id>          the block grid (worst exceedance class + capacity %, sortable) and the
 *                         Excel report (request, progress, download)
 *   #/tests/<id>/blocks/<serial>   one block: figures, exceedances, voltage and temperature charts
 *                         with the logger's warning (orange) and alarm (red) levels
 *   #/uploads             file picker, shared files and the offline upload queue with its states
 *   #/account             who is signed in; sign out
 * Data comes from the API only (js/api.js); logfiles are decoded in the browser (js/slog.js) for
 * the charts; the upload queue lives in IndexedDB (js/store.js) and is drained by the service
 * worker (sw.js). Every severity is shown as icon + word + colour, never colour alone.
 */
/* global SLApi, SLStore, SLog, SLChart */
(function () {
  "use strict";

  var view = document.getElementById("view");
  var crumbs = document.getElementById("crumbs");
  var badge = document.getElementById("upload-badge");
  var net = document.getElementById("net");
  var registration = null;
  var installPrompt = null;
  var renderToken = 0; // a newer route cancels the DOM updates of an older one

  // Severity classes of the analysis (BlockResult.yellow/red): icon, word and CSS class.
  var SEVERITY = {
    green: { icon: "\u2714", word: "OK", title: "no threshold exceeded" },
    yellow: { icon: "\u26a0", word: "Warning", title: "slight or brief exceedance" },
    red: { icon: "\u2716", word: "Alarm", title: "massive or long exceedance" },
    none: { icon: "\u2013", word: "No logger", title: "no logfile for this position" }
  };
  var STATES = { // upload queue states
    queued: { icon: "\u25f7", word: "Waiting to upload" },
    uploading: { icon: "\u2b06", word: "Uploading" },
    done: { icon: "\u2714", word: "Uploaded" },
    rejected: { icon: "\u2716", word: "Rejected" }
  };

  // ------------------------------------------------------------------ small DOM helpers

  /** Element with attributes (``on*`` functions become listeners) and children (strings or nodes). */
  function h(tag, attrs) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k.indexOf("on") === 0 && typeof v === "function") n.addEventListener(k.slice(2), v);
      else if (k === "text") n.textContent = v;
      else n.setAttribute(k, v === true ? "" : v);
    });
    for (var i = 2; i < arguments.length; i++) append(n, arguments[i]);
    return n;
  }
  function append(n, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(n, x); }); return; }
    n.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  function show() {
    view.textContent = "";
    for (var i = 0; i < arguments.length; i++) append(view, arguments[i]);
  }
  function fmtNum(v, digits, unit) { return v === null || v === undefined ? "\u2013" : v.toFixed(digits) + (unit ? "\u00a0" + unit : ""); }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "\u2013";
    s = Math.round(s);
    if (s < 120) return s + " s";
    if (s < 600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 7200) return Math.round(s / 60) + " min"; // seconds do not matter at this length
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }
  function fmtBytes(n) { return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " kB" : (n / 1048576).toFixed(1) + " MB"; }
  function fmtTime(iso) { try { return new Date(iso).toLocaleString(); } catch (e) { return String(iso); } }

  function setCrumbs(items) {
    crumbs.textContent = "";
    items.forEach(function (it, i) {
      if (i) crumbs.appendChild(h("span", { class: "sep", "aria-hidden": "true" }, "\u203a"));
      crumbs.appendChild(it.href ? h("a", { href: it.href }, it.text) : h("span", { "aria-current": "page" }, it.text));
    });
  }

  function errorBox(err) {
    var offline = err && err.status === 0 || err && err.code === "offline";
    return h("div", { class: "notice notice-error", role: "alert" },
      h("strong", {}, offline ? "\u26a0 Offline. " : "\u2716 Error. "), err && err.message ? err.message : String(err));
  }

  function savedNotice(savedAt) {
    if (!savedAt) return null;
    return h("p", { class: "notice notice-saved", role: "status" },
      "\u26a0 Offline: showing what was saved on " + new Date(savedAt).toLocaleString() + ".");
  }

  function loading(text) { show(h("p", { class: "loading", role: "status" }, text || "Loading\u2026")); }

  /** Fetch several API paths; resolves {data: [...], savedAt: oldest offline copy or null}. */
  function fetchAll(paths) {
    return Promise.all(paths.map(function (p) { return SLApi.json(p); })).then(function (rs) {
      var saved = rs.map(function (r) { return r.savedAt; }).filter(Boolean);
      return { data: rs.map(function (r) { return r.data; }), savedAt: saved.length ? Math.min.apply(null, saved) : null };
    });
  }

  // ------------------------------------------------------------------ severity of a block

  /** Worst exceedance class of a block of the analysis result: "red", "yellow" or "green". */
  function severityOf(block) {
    if (block.red > 0) return "red";
    if (block.yellow > 0) return "yellow";
    return "green";
  }

  function severityTag(sev) {
    var s = SEVERITY[sev];
    return h("span", { class: "sev sev-" + sev, title: s.title }, h("span", { class: "sev-icon", "aria-hidden": "true" }, s.icon), " " + s.word);
  }

  // ------------------------------------------------------------------ views

  function viewSignIn() {
    setCrumbs([{ text: "Sign in" }]);
    var msg = h("div", { role: "alert", class: "form-error" });
    var token = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true,
                             placeholder: "slt_\u2026", spellcheck: "false" });
    var api = h("input", { id: "api", name: "api", type: "url", value: SLApi.state.api || location.origin });
    var form = h("form", { class: "card form", onsubmit: function (e) {
      e.preventDefault();
      msg.textContent = "";
      SLApi.signIn(api.value, token.value.trim()).then(function () {
        requestFlush();
        location.hash = "#/";
      }, function (err) { msg.textContent = "\u2716 " + err.message; });
    } },
      h("h1", {}, "Sign in"),
      h("p", {}, "Paste the API token your administrator gave you (smartlogger admin issue-token)."),
      h("label", { for: "token" }, "Token"), token,
      h("details", {}, h("summary", {}, "Server"), h("label", { for: "api" }, "API address"), api),
      msg,
      h("button", { type: "submit", class: "primary", id: "signin" }, "Sign in"));
    show(form);
    token.focus();
  }

  function listRow(href, title, sub, extra) {
    return h("li", {}, h("a", { href: href, class: "row" },
      h("span", { class: "row-main" }, h("span", { class: "row-title" }, title), sub ? h("span", { class: "row-sub" }, sub) : null),
      extra || null, h("span", { class: "chev", "aria-hidden": "true" }, "\u203a")));
  }

  function statusTag(status) {
    var icons = { collecting: "\u25f7", analysing: "\u2699", analysed: "\u2714", failed: "\u2716" };
    return h("span", { class: "status status-" + status }, (icons[status] || "") + " " + status);
  }

  function testRows(tests) {
    return h("ul", { class: "list" }, tests.map(function (t) {
      return listRow("#/tests/" + t.id, t.name || "Test " + t.id,
        t.load + " \u00b7 " + t.logfiles + "/" + t.blocks + " logfiles \u00b7 " + fmtTime(t.created_at), statusTag(t.status));
    }));
  }

  function viewSites(tok) {
    setCrumbs([{ text: "Sites" }]);
    loading();
    return fetchAll(["/api/sites?limit=1000", "/api/tests?limit=1000"]).then(function (r) {
      if (tok !== renderToken) return;
      var sites = r.data[0], loose = r.data[1].filter(function (t) { return t.string_id === null; });
      show(savedNotice(r.savedAt), h("h1", {}, "Sites"),
        sites.length ? h("ul", { class: "list", id: "sites" }, sites.map(function (s) {
          return listRow("#/sites/" + s.id, s.name, s.address || null);
        })) : h("p", { class: "empty" }, "No sites yet."),
        loose.length ? [h("h2", {}, "Tests without a string"), testRows(loose)] : null);
    });
  }

  function viewSite(tok, siteId) {
    loading();
    return fetchAll(["/api/sites/" + siteId, "/api/systems?limit=1000&site_id=" + siteId]).then(function (r) {
      var site = r.data[0], systems = r.data[1];
      setCrumbs([{ text: "Sites", href: "#/" }, { text: site.name }]);
      return fetchAll(systems.map(function (s) { return "/api/strings?limit=1000&system_id=" + s.id; })).then(function (sr) {
        if (tok !== renderToken) return;
        show(savedNotice(r.savedAt || sr.savedAt), h("h1", {}, site.name), site.address ? h("p", { class: "muted" }, site.address) : null,
          systems.length ? systems.map(function (sys, i) {
            var strings = sr.data[i];
            return h("section", { class: "group" }, h("h2", {}, sys.name + " ", h("span", { class: "muted" }, "(" + sys.kind + ")")),
              strings.length ? h("ul", { class: "list" }, strings.map(function (st) {
                return listRow("#/strings/" + st.id, st.name, st.blocks + " blocks \u00b7 " + st.block_voltage_v + " V " + st.chemistry + " \u00b7 " + st.rated_ah + " Ah");
              })) : h("p", { class: "empty" }, "No strings."));
          }) : h("p", { class: "empty" }, "No battery systems at this site."));
      });
    });
  }

  function stringCrumbs(st) {
    return SLApi.get("/api/systems/" + st.system_id).then(function (sys) {
      return SLApi.get("/api/sites/" + sys.site_id).then(function (site) {
        return [{ text: "Sites", href: "#/" }, { text: site.name, href: "#/sites/" + site.id }];
      });
    }).catch(function () { return [{ text: "Sites", href: "#/" }]; });
  }

  function viewString(tok, stringId) {
    loading();
    var sid = encodeURIComponent(stringId);
    return fetchAll(["/api/strings/" + sid, "/api/tests?string_id=" + sid + "&limit=1000"]).then(function (r) {
      var st = r.data[0], tests = r.data[1];
      return stringCrumbs(st).then(function (cr) {
        if (tok !== renderToken) return;
        setCrumbs(cr.concat([{ text: st.name }]));
        show(savedNotice(r.savedAt), h("h1", {}, st.name),
          h("p", { class: "muted" }, st.blocks + " blocks \u00b7 " + st.block_voltage_v + " V " + st.chemistry + " \u00b7 " + st.rated_ah + " Ah"),
          h("h2", {}, "Capacity tests"), tests.length ? testRows(tests) : h("p", { class: "empty" }, "No tests on this string yet."));
      });
    });
  }

  var HOW_FOUND = { voltage_step: "load step", load_profile: "load file", firmware_event: "logger events",
                    threshold: "threshold", end_voltage: "end voltage", data_end: "end of logs" };

  function sortBlocks(cells, mode) {
    var rank = { red: 0, yellow: 1, green: 2, none: 3 };
    var cap = function (c) { return c.block && c.block.capacity_pct !== null ? c.block.capacity_pct : Infinity; };
    // "Weakest first" is the analysis' one ranking (block.rank; the rule is shown beside the grid):
    // a lower bound is never compared with a measured capacity by its number.
    var byRank = function (c) { return c.block && c.block.rank !== null && c.block.rank !== undefined ? c.block.rank : Infinity; };
    var out = cells.slice();
    if (mode === "capacity") out.sort(function (a, b) { return byRank(a) - byRank(b) || a.position - b.position; });
    else if (mode === "severity") out.sort(function (a, b) { return rank[a.sev] - rank[b.sev] || cap(a) - cap(b) || a.position - b.position; });
    else out.sort(function (a, b) { return a.position - b.position; });
    return out;
  }

  // The block's internal (DC step) resistance with its uncertainty and the verdict against the
  // test's reference (older results have none of these fields).
  function fmtResistance(block, result) {
    if (block.resistance_mohm === undefined || block.resistance_mohm === null) return "\u2013";
    var text = block.resistance_mohm.toFixed(2) + " m\u03a9";
    if (block.resistance_uncertainty_mohm !== null && block.resistance_uncertainty_mohm !== undefined) {
      text += " \u00b1 " + block.resistance_uncertainty_mohm.toFixed(2);
    }
    if (block.resistance_change_pct !== null && block.resistance_change_pct !== undefined && result.resistance_reference_mohm) {
      text += " (" + (block.resistance_change_pct >= 0 ? "+" : "") + block.resistance_change_pct.toFixed(0) + " % vs " +
        result.resistance_reference.replace("_", " ") + " " + result.resistance_reference_mohm.toFixed(2) + " m\u03a9: " +
        block.resistance_status + ")";
    }
    return text;
  }

  function blockCell(testId, c) {
    var b = c.block;
    var capText = !b ? "no data" : b.capacity_pct === null ? "\u2013 %" : (b.lower_bound ? "\u2265 " : "") + b.capacity_pct.toFixed(0) + " %";
    var label = (b ? b.label || "B" + c.position : "B" + c.position);
    var disp = b && b.disposition ? b.disposition : "";
    var s = SEVERITY[c.sev];
    var attrs = { class: "block sev-" + c.sev, "data-severity": c.sev, "data-position": String(c.position),
                  "aria-label": "Block " + label + ", position " + c.position + ": " + s.word + ", capacity " + capText };
    var inner = [h("span", { class: "block-label" }, label),
      h("span", { class: "block-cap" + (disp ? " disp-" + disp : ""), "data-disposition": disp }, capText),
      h("span", { class: "block-sev" }, h("span", { "aria-hidden": "true" }, s.icon), " " + s.word)];
    var ev = b && b.evidence ? b.evidence.status : null;
    if (ev) {
      attrs["data-evidence"] = ev;
      attrs["aria-label"] += ", evidence " + ev;
      // Only hardware evidence goes unmarked: simulated, unsigned or unchecked data says so on the tile.
      if (ev !== "verified") inner.push(h("span", { class: "block-evidence" }, ev));
    }
    if (!b) return h("div", attrs, inner);
    attrs.href = "#/tests/" + testId + "/blocks/" + encodeURIComponent(b.serial);
    attrs["data-serial"] = b.serial;
    return h("a", attrs, inner);
  }

  /** Breadcrumbs down to the test's string (Sites > site > string), or just Sites. */
  function testCrumbs(test) {
    if (!test.string_id) return Promise.resolve([{ text: "Sites", href: "#/" }]);
    return SLApi.get("/api/strings/" + test.string_id).then(function (st) {
      return stringCrumbs(st).then(function (cr) { return cr.concat([{ text: st.name, href: "#/strings/" + st.id }]); });
    }).catch(function () { return [{ text: "Sites", href: "#/" }]; });
  }

  function viewTest(tok, testId) {
    loading();
    var resultP = SLApi.json("/api/tests/" + testId + "/results").catch(function (err) {
      if (err.status === 404) return { data: null, savedAt: null };
      throw err;
    });
    return Promise.all([SLApi.json("/api/tests/" + testId), resultP]).then(function (rs) {
      var test = rs[0].data, res = rs[1].data, savedAt = rs[0].savedAt || rs[1].savedAt;
      return testCrumbs(test).then(function (cr) {
        if (tok !== renderToken) return;
        setCrumbs(cr.concat([{ text: test.name || "Test " + test.id }]));
        var head = [savedNotice(savedAt), h("h1", {}, test.name || "Test " + test.id),
          h("p", { class: "muted" }, "Load " + test.load + (test.rated_time ? " \u00b7 rated " + test.rated_time : "") +
            " \u00b7 " + test.logfiles + "/" + test.blocks + " logfiles \u00b7 ", statusTag(test.status)),
          livePanel(tok, test.id)];
        if (!res) {
          show(head, h("p", { class: "notice", id: "no-result" }, test.status === "collecting"
            ? "\u25f7 Waiting for logfiles: " + test.logfiles + " of " + test.blocks + " received. Add them under Uploads."
            : test.status === "failed" ? "\u2716 The analysis failed; see the API's job." : "\u2699 The analysis is running\u2026"),
            h("a", { href: "#/uploads?test=" + test.id, class: "button" }, "Add logfiles"));
          return;
        }
        renderGrid(test, res.result, head);
      });
    });
  }

  // ------------------------------------------------------------------ live watch (docs/LIVE.md)

  var LIVE_POLL_MS = 3000; // how often the test page asks for the newest live state
  var LIVE_FRESH_S = 60; // older than this: marked stale
  var LIVE_SHOW_S = 3600; // older than this: not shown at all
  var LIVE_LOWEST = 5; // lowest blocks listed

  /** The live panel of a test: hidden until a watcher posted (``smartlogger test watch --post``);
   * polls while this view is the current one. Every server value goes in as text. */
  function livePanel(tok, testId) {
    var panel = h("section", { class: "card live", id: "live", hidden: true, "aria-live": "polite" });
    function tick() {
      if (tok !== renderToken) return; // another view is showing: stop
      SLApi.json("/api/tests/" + testId + "/live").then(function (r) {
        if (tok !== renderToken) return;
        var d = r.data || {};
        // an offline copy of the service worker is older by the time it was saved
        var age = d.age_s === null || d.age_s === undefined ? null
          : d.age_s + (r.savedAt ? Math.max(0, (Date.now() - r.savedAt) / 1000) : 0);
        drawLive(panel, d.snapshot, age, d.received_at);
      }, function () { /* no connection now: keep what is shown, its age says how old it is */ })
        .then(function () { setTimeout(tick, LIVE_POLL_MS); });
    }
    tick();
    return panel;
  }

  function drawLive(panel, snap, age, receivedAt) {
    panel.textContent = "";
    if (!snap || age === null || age > LIVE_SHOW_S) { panel.hidden = true; return; }
    panel.hidden = false;
    var stale = age >= LIVE_FRESH_S;
    panel.className = "card live" + (stale ? " live-stale" : "");
    panel.setAttribute("data-stale", String(stale));
    var atSnap = function (ms) { return ms === null || ms === undefined ? null : Math.max(0, (ms - snap.now_ms) / 1000 - age); };
    var blocks = (snap.blocks || []).slice().sort(function (a, b) { return a.v - b.v || a.position - b.position; });
    var list = function (xs) { return xs && xs.length ? xs.join(", ") : "none"; };
    var endIn = atSnap(snap.predicted_end_ms);
    append(panel, [
      h("h2", {}, stale ? "\u25cb Live watch (stale)" : "\u25cf Live watch"),
      h("p", { class: stale ? "notice live-age" : "muted live-age", id: "live-age" },
        stale ? "\u26a0 Not updated for " + fmtDuration(age) + " (last at " + fmtTime(receivedAt) + ")"
              : "Data " + fmtDuration(age) + " old"),
      snap.alarm ? h("p", { class: "notice notice-error", id: "live-alarm" },
        "\u2716 End alarm: block " + snap.alarm.position + " at " + fmtNum(snap.alarm.v, 3, "V") +
        " (alarm at " + fmtNum(snap.alarm.alarm_v, 3, "V") + ")") : null,
      h("dl", { class: "figures", id: "live-figures" }, [
        ["String voltage", fmtNum(snap.string_v, 2, "V")],
        ["Elapsed", fmtDuration(snap.elapsed_s)],
        ["Ah so far", fmtNum(snap.delivered_ah, 1, "Ah")],
        ["Predicted end", endIn === null ? "\u2013" : "in " + fmtDuration(endIn) +
          (snap.predicted_first_block ? " (block " + snap.predicted_first_block + ")" : "")],
        ["Warning", list(snap.warning_blocks)],
        ["Alarm", list(snap.alarm_blocks)]
      ].map(function (kv) { return h("div", { "data-key": kv[0] }, h("dt", {}, kv[0]), h("dd", {}, kv[1])); })),
      blocks.length ? h("table", { class: "live-lowest", id: "live-lowest" },
        h("caption", {}, "Lowest blocks"),
        h("thead", {}, h("tr", {}, h("th", {}, "Block"), h("th", {}, "V"), h("th", {}, "To end"))),
        h("tbody", {}, blocks.slice(0, LIVE_LOWEST).map(function (b) {
          var toEnd = b.to_end_s === null || b.to_end_s === undefined ? null : Math.max(0, b.to_end_s - age);
          return h("tr", { "data-position": String(b.position), class: b.state === "alarm" ? "live-alarm" : b.warning ? "live-warning" : "" },
            h("td", {}, String(b.position)), h("td", {}, fmtNum(b.v, 3)), h("td", {}, fmtDuration(toEnd)));
        }))) : null,
      h("p", { class: "muted" }, snap.blocks_seen + (snap.blocks_expected ? " of " + snap.blocks_expected : "") +
        " blocks heard" + (snap.stale && snap.stale.length ? " \u00b7 not heard lately: " + list(snap.stale) : "") +
        (snap.missing && snap.missing.length ? " \u00b7 missing: " + list(snap.missing) : ""))
    ]);
  }

  function renderGrid(test, result, head) {
    var cells = result.blocks.map(function (b) { return { position: b.position, block: b, sev: severityOf(b) }; });
    result.missing_positions.forEach(function (p) { cells.push({ position: p, block: null, sev: "none" }); });
    var counts = { red: 0, yellow: 0, green: 0 };
    cells.forEach(function (c) { if (counts[c.sev] !== undefined) counts[c.sev]++; });
    var mode = localStorage.getItem("sl-sort") || "position";
    var grid = h("div", { class: "grid", id: "grid", role: "list" });
    function draw() {
      grid.textContent = "";
      sortBlocks(cells, mode).forEach(function (c) { grid.appendChild(h("div", { role: "listitem" }, blockCell(test.id, c))); });
      sortBar.querySelectorAll("button").forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.sort === mode)); });
    }
    var sortBar = h("div", { class: "segmented", role: "group", "aria-label": "Sort blocks" },
      [["position", "String order"], ["capacity", "Weakest first"], ["severity", "Worst first"]].map(function (m) {
        return h("button", { type: "button", "data-sort": m[0], onclick: function () { mode = m[0]; localStorage.setItem("sl-sort", mode); draw(); } }, m[1]);
      }));
    var cap = result.capacity;
    var d = result.discharge;
    var summary = h("div", { class: "card summary" },
      h("div", { class: "figure" }, h("span", { class: "figure-value", id: "string-capacity" },
        cap.capacity_pct === null ? "\u2013" : (cap.lower_bound ? "\u2265 " : "") + cap.capacity_pct.toFixed(0) + " %"), h("span", { class: "figure-label" }, "string capacity")),
      h("div", { class: "figure" }, h("span", { class: "figure-value" }, fmtDuration(d.duration_s)), h("span", { class: "figure-label" }, "discharge (" + d.end_reason.replace("_", " ") + ")")),
      h("div", { class: "figure" }, h("span", { class: "figure-value" }, fmtNum(d.delivered_ah, 1, "Ah")), h("span", { class: "figure-label" }, "delivered")),
      d.start_method ? h("div", { class: "figure" }, h("span", { class: "figure-value", id: "start-found" }, HOW_FOUND[d.start_method] || d.start_method),
        h("span", { class: "figure-label" }, "start found from (end: " + (HOW_FOUND[d.end_method] || d.end_method) + ")")) : null,
      h("div", { class: "counts" },
        h("span", { class: "count" }, severityTag("red"), " " + counts.red),
        h("span", { class: "count" }, severityTag("yellow"), " " + counts.yellow),
        h("span", { class: "count" }, severityTag("green"), " " + counts.green)));
    var markers = result.markers.length ? h("p", { class: "notice" }, "\u26a0 " + result.markers.join(", ") +
      ": these logs come from simulated or replayed loggers and are not evidence from real hardware.") : null;
    var evidence = evidenceCard(result);
    // What the analysis wants the reader to know (missing loggers, bounds, how the test ended).
    var notes = result.warnings.length ? h("div", { class: "card notes", id: "analysis-notes" },
      h("h2", {}, "Analysis notes"),
      h("ul", { class: "list" }, result.warnings.map(function (w) { return h("li", { class: "note" }, "\u26a0 " + w); }))) : null;
    show(head, verdictCard(result), reportInfo(result), markers, evidence, summary, notes, h("h2", {}, "Blocks"), sortBar, grid,
      h("p", { class: "legend" }, severityTag("green"), " no exceedance \u00b7 ", severityTag("yellow"), " slight or brief \u00b7 ",
        severityTag("red"), " massive or long. \u2265 = lower bound: the block outlasted the test, its capacity is not determined further (never a failure)."),
      result.verdict ? h("p", { class: "legend", id: "ranking-rule" }, result.verdict.ranking_rule) : null,
      reportSection(test));
    draw();
  }

  /** The verdict first: pass / fail / inconclusive against the criterion, and why in one sentence. */
  function verdictCard(result) {
    var v = result.verdict;
    if (!v) return null;
    var word = { pass: "\u2714 PASS", fail: "\u2716 FAIL", inconclusive: "? INCONCLUSIVE" }[v.outcome] || v.outcome;
    return h("div", { class: "card verdict verdict-" + v.outcome, id: "verdict", "data-outcome": v.outcome },
      h("h2", {}, word), h("p", { id: "verdict-sentence" }, v.sentence),
      h("p", { class: "muted" }, "Acceptance: " + v.criterion));
  }

  /** Who tested what, where: the test's metadata as the result carries it. */
  function reportInfo(result) {
    var i = result.report_info || {};
    var rows = [["Site", [i.site, i.site_address, i.customer]], ["System / string", [i.system, i.string]],
      ["Technician", [i.technician, i.company]],
      ["Battery", [i["battery.make"], i["battery.model"], i["battery.chemistry"],
                   i["battery.block_voltage_v"] ? i["battery.block_voltage_v"] + " V" : "",
                   i["battery.rated_ah"] ? i["battery.rated_ah"] + " Ah" : ""]],
      ["Setup", [i.load_setup, i.load_source, i.cutoff, i.ambient_c ? "ambient " + i.ambient_c + " \u00b0C" : ""]]]
      .map(function (r) { return [r[0], r[1].filter(function (x) { return x; }).join(", ")]; })
      .filter(function (r) { return r[1]; });
    if (!rows.length) return null;
    return h("dl", { class: "figures", id: "report-info" }, rows.map(function (kv) {
      return h("div", {}, h("dt", {}, kv[0]), h("dd", {}, kv[1]));
    }));
  }

  /** What the result rests on: verified hardware evidence only, or not; and every logfile not used. */
  function evidenceCard(result) {
    var ev = result.evidence;
    if (!ev) return null;
    var ok = ev.verified_only;
    var excluded = result.excluded || [];
    return h("div", { class: "card evidence " + (ok ? "evidence-verified" : "evidence-weak"), id: "evidence",
                      "data-status": ev.status, "data-verified-only": String(ok) },
      h("h2", {}, ok ? "\u2714 Verified evidence" : "\u26a0 Not verified evidence only"),
      h("p", { id: "evidence-statement" }, ev.statement),
      excluded.length ? h("div", {}, h("h3", {}, "Logfiles excluded from the analysis"),
        h("ul", { class: "list", id: "excluded" }, excluded.map(function (f) {
          return h("li", { class: "excluded", "data-reason": f.reason },
            h("strong", {}, f.file), " \u00b7 " + (f.serial || "unknown logger") + " \u00b7 " + f.reason,
            h("span", { class: "row-sub" }, " " + f.message));
        }))) : null);
  }

  // ------------------------------------------------------------------ report: request, progress, download

  function saveBlob(blob, name) {
    var url = URL.createObjectURL(blob);
    var a = h("a", { href: url, download: name, class: "hidden" });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  /** Fetch a binary with progress (bytes of Content-Length); resolves a Blob. */
  function fetchWithProgress(path, onProgress) {
    return SLApi.raw(path).then(function (resp) {
      var total = Number(resp.headers.get("Content-Length")) || 0;
      if (!resp.body || !resp.body.getReader) return resp.blob();
      var reader = resp.body.getReader(), chunks = [], got = 0;
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) return new Blob(chunks, { type: resp.headers.get("Content-Type") || "" });
          chunks.push(r.value);
          got += r.value.byteLength;
          onProgress(got, total);
          return pump();
        });
      }
      return pump();
    });
  }

  function reportSection(test) {
    var bar = h("progress", { id: "report-progress", max: "100", class: "hidden" });
    var status = h("p", { id: "report-status", role: "status", "aria-live": "polite" });
    var button = h("button", { type: "button", class: "primary", id: "report-button" }, "\u2b07 Excel report");
    var steps = h("ol", { class: "steps", id: "report-steps" });
    function step(n, text, state) {
      var li = steps.children[n] || steps.appendChild(h("li", {}));
      li.className = "step step-" + state;
      li.textContent = (state === "done" ? "\u2714 " : state === "active" ? "\u25b6 " : state === "failed" ? "\u2716 " : "\u25cb ") + text;
    }
    function reset() { button.disabled = false; }
    function poll(state, started) {
      if (state.status === "ready") {
        step(0, "Requested", "done");
        step(1, "Workbook built (" + fmtBytes(state.size) + ")", "done");
        step(2, "Downloading", "active");
        bar.classList.remove("hidden");
        bar.setAttribute("value", "0");
        return fetchWithProgress(state.download, function (got, total) {
          if (total) bar.setAttribute("value", String(Math.round(100 * got / total)));
          status.textContent = "Downloading " + fmtBytes(got) + (total ? " of " + fmtBytes(total) : "");
        }).then(function (blob) {
          saveBlob(blob, "test-" + test.id + "-report.xlsx");
          step(2, "Downloaded", "done");
          bar.setAttribute("value", "100");
          status.textContent = "\u2714 Report saved: test-" + test.id + "-report.xlsx (" + fmtBytes(blob.size) + ")";
          reset();
        });
      }
      if (state.status === "failed") {
        step(1, "Building the workbook failed", "failed");
        status.textContent = "\u2716 " + (state.job && state.job.error ? state.job.error : "the report job failed");
        reset();
        return null;
      }
      step(0, "Requested", "done");
      step(1, state.status === "running" ? "Building the workbook" : "Waiting for a worker", "active");
      step(2, "Download", "todo");
      bar.classList.remove("hidden");
      bar.removeAttribute("value"); // indeterminate: the job reports no percentage
      var secs = Math.round((Date.now() - started) / 1000);
      status.textContent = (state.status === "running" ? "\u2699 Building the workbook\u2026 " : "\u25f7 Queued\u2026 ") + secs + " s";
      return new Promise(function (r) { setTimeout(r, 1000); }).then(function () {
        return SLApi.get("/api/tests/" + test.id + "/report");
      }).then(function (s) { return poll(s, started); });
    }
    button.addEventListener("click", function () {
      button.disabled = true;
      steps.textContent = "";
      step(0, "Requesting", "active");
      status.textContent = "Requesting the report\u2026";
      SLApi.json("/api/tests/" + test.id + "/report", { method: "POST" }).then(function (r) {
        return poll(r.data, Date.now());
      }).catch(function (err) {
        status.textContent = "\u2716 " + err.message;
        reset();
      });
    });
    // The customer report as PDF (verdict first), built by the server on request.
    var pdfStatus = h("p", { id: "pdf-status", role: "status", "aria-live": "polite" });
    var pdfButton = h("button", { type: "button", id: "pdf-button" }, "\u2b07 PDF report");
    pdfButton.addEventListener("click", function () {
      pdfButton.disabled = true;
      pdfStatus.textContent = "\u2699 Building the PDF\u2026";
      fetchWithProgress("/api/tests/" + test.id + "/report.pdf", function () {}).then(function (blob) {
        saveBlob(blob, "test-" + test.id + "-report.pdf");
        pdfStatus.textContent = "\u2714 Report saved: test-" + test.id + "-report.pdf (" + fmtBytes(blob.size) + ")";
      }).catch(function (err) { pdfStatus.textContent = "\u2716 " + err.message; })
        .then(function () { pdfButton.disabled = false; });
    });
    return h("section", { class: "card report" }, h("h2", {}, "Reports"),
      h("p", { class: "muted" }, "Excel: string report with voltage and temperature charts per logger; warning levels orange, alarm levels red. PDF: the customer report, verdict first."),
      button, steps, bar, status, pdfButton, pdfStatus);
  }

  // ------------------------------------------------------------------ block detail with charts

  function viewBlock(tok, testId, serial) {
    loading();
    return fetchAll(["/api/tests/" + testId, "/api/tests/" + testId + "/results", "/api/tests/" + testId + "/logfiles"]).then(function (r) {
      var test = r.data[0], result = r.data[1].result, logfiles = r.data[2];
      var block = result.blocks.filter(function (b) { return b.serial === serial; })[0];
      if (!block) throw new SLApi.ApiError(404, "not_found", "block " + serial + " is not in this test's result");
      testCrumbs(test).then(function (cr) {
        if (tok === renderToken) setCrumbs(cr.concat([{ text: test.name || "Test " + test.id, href: "#/tests/" + test.id }, { text: block.label || serial }]));
      });
      var sev = severityOf(block);
      var charts = h("div", { id: "charts" }, h("p", { class: "loading", role: "status" }, "Loading the series\u2026"));
      var figures = h("dl", { class: "figures" },
        [["Capacity", block.capacity_pct === null ? "\u2013" : (block.lower_bound ? "\u2265 " : "") + block.capacity_pct.toFixed(1) + " %"],
         ["SOH", fmtNum(block.soh_pct, 1, "%")], ["Delivered", fmtNum(block.delivered_ah, 2, "Ah")],
         ["Time to end voltage", block.reached_end_voltage ? fmtDuration(block.time_to_end_s) : "not reached"],
         ["Lowest voltage", fmtNum(block.min_voltage_v, 3, "V")], ["Highest temperature", fmtNum(block.max_temperature_c, 1, "\u00b0C")],
         ["Rank", block.rank === null ? "\u2013" : block.rank + " of " + result.blocks.length + " (1 = weakest)"],
         ["Result", block.disposition ? block.disposition.replace("_", " ") + (block.recommendation ? ": " + block.recommendation : "") : "\u2013"],
         ["Internal resistance", fmtResistance(block, result)],
         ["Logger", block.serial + (block.markers.length ? " (" + block.markers.join(", ") + ")" : "")],
         ["Evidence", block.evidence ? block.evidence.status + " \u2013 " + block.evidence.note : "not recorded"]].map(function (kv) {
          return h("div", {}, h("dt", {}, kv[0]), h("dd", {}, kv[1]));
        }));
      var exc = block.exceedances.length ? h("ul", { class: "list exceedances", id: "exceedances" }, block.exceedances.map(function (e) {
        return h("li", { class: "exceedance sev-" + e.severity, "data-severity": e.severity },
          severityTag(e.severity), " ", e.quantity + " " + e.side + " (" + e.level + "): " + fmtDuration(e.duration_s) +
          (e.alarm_duration_s ? ", " + fmtDuration(e.alarm_duration_s) + " beyond alarm" : "") +
          ", worst " + (e.quantity === "voltage" ? fmtNum(e.worst, 3, "V") : fmtNum(e.worst, 1, "\u00b0C")) +
          ", from " + (e.start_offset_s / 60).toFixed(1) + " min" + (e.reason ? " \u2013 " + e.reason : ""));
      })) : h("p", { class: "empty" }, severityTag("green"), " No threshold exceeded in the analysed window.");
      var evFiles = block.evidence ? block.evidence.files : [];
      // What the server noticed about each stored file (possible clone / replay), by SHA-256.
      function custodyOf(sha) {
        var stored = logfiles.filter(function (l) { return l.sha256 === sha; })[0];
        if (!stored || !stored.custody || !stored.custody.length) return null;
        return h("span", { class: "upload-error custody" }, stored.custody.map(function (c) { return " \u26a0 " + c.kind.replace("_", " "); }).join(""));
      }
      var fileList = evFiles.length ? h("ul", { class: "list", id: "block-files" }, evFiles.map(function (f) {
        return h("li", { class: "evidence-file " + (f.used ? "used" : "excluded"), "data-status": f.status, "data-used": String(f.used) },
          h("strong", {}, f.file), " \u00b7 " + f.status + (f.latest_pull !== null ? " \u00b7 pull #" + f.latest_pull : "") +
          (f.used ? " \u00b7 used" : " \u00b7 NOT used (" + f.reason + ")"), h("span", { class: "row-sub" }, " " + f.message),
          custodyOf(f.sha256));
      })) : null;
      // The block's own notes: its clock (observations that disagreed and how it was placed),
      // gaps, bounds. Shown before the figures they qualify.
      var blockNotes = (block.warnings || []).length ? h("ul", { class: "list notes", id: "block-notes" },
        block.warnings.map(function (w) { return h("li", { class: "note" }, "\u26a0 " + w); })) : null;
      show(savedNotice(r.savedAt), h("h1", {}, "Block " + (block.label || serial) + " ", severityTag(sev)),
        h("p", { class: "muted" }, "Position " + block.position + " \u00b7 " + block.block_type + " \u00b7 " + block.rated_ah + " Ah rated"),
        blockNotes, figures, fileList ? h("h2", {}, "Logfiles") : null, fileList, h("h2", {}, "Exceedances"), exc, h("h2", {}, "Charts"), charts);
      // Chart a logfile the analysis used (never an excluded one), the latest pull if several.
      var used = evFiles.filter(function (f) { return f.used; }).sort(function (a, b) { return (b.latest_pull || 0) - (a.latest_pull || 0); });
      var usedShas = used.map(function (f) { return f.sha256; });
      var mine = logfiles.filter(function (l) { return l.serial === serial; });
      var lf = usedShas.length ? usedShas.map(function (sha) { return mine.filter(function (l) { return l.sha256 === sha; })[0]; })
        .filter(Boolean)[0] : mine[0];
      if (!lf) { charts.textContent = "No logfile of " + serial + " used by the analysis is attached to this test."; return; }
      var offset = block.clock ? block.clock.offset_ms : 0; // true = device + offset (analysis clock fit)
      var pad = 5 * 60000; // 5 minutes of context around the discharge, device ms
      var series = {
        // The server reduces each window to <= SERIES_POINTS min/max points: no whole-logfile download.
        discharge: seriesOf(lf.id, result.discharge.start_ms - offset - pad, result.discharge.end_ms - offset + pad),
        whole: function () { return seriesOf(lf.id); }
      };
      return series.discharge.then(function (win) {
        if (tok !== renderToken) return;
        drawBlockCharts(charts, win, series.whole, block, result);
      }).catch(function (err) { charts.textContent = ""; charts.appendChild(errorBox(err)); });
    });
  }

  var SERIES_POINTS = 2000; // per quantity: a min and a max per ~1.5 px column of a phone chart

  function seriesOf(logfileId, fromMs, toMs) {
    var q = "?max_points=" + SERIES_POINTS;
    if (fromMs !== undefined) q += "&from_ms=" + Math.floor(fromMs) + "&to_ms=" + Math.ceil(toMs);
    return SLApi.get("/api/logfiles/" + logfileId + "/series" + q);
  }

  /** Chart arrays of a series answer: minutes from the discharge start (true time), V, degC. */
  function chartArrays(sr, offset, t0) {
    var n = sr.t_ms.length, x = new Float64Array(n), v = new Float64Array(n), t = new Float64Array(n);
    for (var i = 0; i < n; i++) {
      x[i] = (sr.t_ms[i] + offset - t0) / 60000;
      v[i] = sr.mv[i] / 1000; // mV -> V
      t[i] = sr.dc[i] / 10; // dC -> degC
    }
    return { x: x, v: v, t: t, n: n, samples: sr.samples, reduced: sr.reduced };
  }

  /** The configuration in force at device time ``t_ms`` (the latest one written before it). */
  function configAt(configs, t_ms) {
    var found = configs.length ? configs[0] : null;
    configs.forEach(function (c) { if (c.t_ms <= t_ms) found = c; });
    return found;
  }

  /** A configuration's four levels of one quantity (fields ``<q>low_alarm<unit>`` ...) as chart lines. */
  function levels(cfg, q, unit, scale) {
    if (!cfg) return [];
    return [["low", "alarm"], ["low", "warn"], ["high", "warn"], ["high", "alarm"]].map(function (sk) {
      return { value: cfg[q + sk[0] + "_" + sk[1] + unit] / scale, kind: sk[1] === "warn" ? "warning" : "alarm", side: sk[0] };
    });
  }

  function drawBlockCharts(container, win, loadWhole, block, result) {
    var offset = block.clock ? block.clock.offset_ms : 0; // true = device + offset (analysis clock fit)
    var t0 = result.discharge.start_ms;
    var pad = 5; // minutes of context around the discharge
    var range = [-pad, (result.discharge.end_ms - t0) / 60000 + pad];
    var views = { discharge: chartArrays(win, offset, t0), whole: null };
    var whole = false;
    var cfg = configAt(win.configs, t0 - offset);
    var spans = { voltage: [], temperature: [] };
    block.exceedances.forEach(function (e) {
      var a = (e.start_ms - t0) / 60000;
      spans[e.quantity].push({ x0: a, x1: a + e.duration_s / 60, severity: e.severity });
    });
    var vBox = h("figure", { class: "chart-box", id: "chart-voltage" });
    var tBox = h("figure", { class: "chart-box", id: "chart-temperature" });
    var toggle = h("button", { type: "button", class: "button small", id: "window-toggle" }, "Show the whole log");
    var note = h("p", { class: "legend", id: "series-note" });
    function draw() {
      var d = whole ? views.whole : views.discharge;
      var xr = whole ? (d.n ? [d.x[0], d.x[d.n - 1]] : range) : range;
      var xl = "min from discharge start";
      SLChart.render(vBox, { title: "Voltage of " + (block.label || block.serial), unit: "V", digits: 2, x: d.x, y: d.v, xRange: xr, xLabel: xl,
        thresholds: levels(cfg, "v_", "_mv", 1000), spans: spans.voltage });
      vBox.appendChild(h("figcaption", {}, "Voltage, V"));
      SLChart.render(tBox, { title: "Temperature of " + (block.label || block.serial), unit: "\u00b0C", digits: 1, x: d.x, y: d.t, xRange: xr, xLabel: xl,
        thresholds: levels(cfg, "t_", "_dc", 10), spans: spans.temperature });
      tBox.appendChild(h("figcaption", {}, "Temperature, \u00b0C"));
      toggle.textContent = whole ? "Show the discharge" : "Show the whole log";
      note.textContent = d.samples + " samples" + (d.reduced ? ", drawn as the lowest and highest value of each of " + d.n / 2 +
        " time slices (no peak is lost)." : ".");
    }
    toggle.addEventListener("click", function () {
      whole = !whole;
      if (!whole || views.whole) { draw(); return; }
      toggle.disabled = true;
      loadWhole().then(function (sr) { views.whole = chartArrays(sr, offset, t0); draw(); })
        .catch(function (err) { whole = false; container.appendChild(errorBox(err)); })
        .then(function () { toggle.disabled = false; });
    });
    container.textContent = "";
    append(container, [toggle, vBox, tBox,
      h("p", { class: "legend" }, h("span", { class: "line-key line-warning", "aria-hidden": "true" }), " \u26a0 warning level (orange, dashed) \u00b7 ",
        h("span", { class: "line-key line-alarm", "aria-hidden": "true" }), " \u2716 alarm level (red, solid). Levels from the logger's configuration" +
        (win.configs.length > 1 ? " in force at the discharge start (" + win.configs.length + " configurations in the log)." : ".")),
      note]);
    draw();
  }

  // ------------------------------------------------------------------ uploads

  /** The server's verdict on a logfile: its status, who certified the logger, what it claims. */
  function describeVerification(lf) {
    var who = lf.authority === "production" ? "hardware, production root" : lf.authority === "test" ? "TEST authority" : null;
    var markers = lf.markers && lf.markers.length ? lf.markers.join(", ") : null;
    return "verification: " + lf.verification_status + [who, markers].filter(Boolean).map(function (x) { return " \u00b7 " + x; }).join("");
  }

  function describeEntry(e) {
    var st = STATES[e.state] || { icon: "?", word: e.state };
    var word = st.word;
    if (e.state === "done" && e.result) word = e.result.created ? "Uploaded" : "Already on the server";
    if (e.state === "queued" && e.attempts) word = "Waiting to retry";
    var meta = e.meta ? [e.meta.serial, e.meta.label].filter(Boolean).join(" \u00b7 ") : "";
    var actions = [];
    if (e.state === "rejected") actions.push(h("button", { type: "button", class: "button small", onclick: function () { SLStore.retry(e.id).then(requestFlush); } }, "Retry"));
    if (e.state !== "uploading") actions.push(h("button", { type: "button", class: "button small", onclick: function () { SLStore.remove(e.id); } }, e.state === "done" ? "Hide" : "Remove"));
    return h("li", { class: "upload state-" + e.state, "data-state": e.state, "data-name": e.name },
      h("div", { class: "upload-main" },
        h("span", { class: "upload-state" }, h("span", { "aria-hidden": "true" }, st.icon), " " + word),
        h("span", { class: "upload-name" }, e.name),
        h("span", { class: "row-sub" }, fmtBytes(e.size) + (meta ? " \u00b7 " + meta : "") + (e.test_id ? " \u00b7 test " + e.test_id : "") +
          (e.source === "share" ? " \u00b7 shared to the app" : "") + (e.attempts ? " \u00b7 " + e.attempts + " attempt" + (e.attempts > 1 ? "s" : "") : "")),
        e.error ? h("span", { class: "upload-error" }, e.error) : null,
        e.state === "done" && e.result ? h("span", { class: "row-sub upload-verification" }, describeVerification(e.result)) : null,
        e.state === "done" && e.result && e.result.custody && e.result.custody.length ? h("span", { class: "upload-error upload-custody" },
          e.result.custody.map(function (f) { return "\u26a0 " + f.kind.replace("_", " ") + ": " + f.message; }).join(" ")) : null),
      h("div", { class: "upload-actions" }, actions));
  }

  function viewUploads(tok, query) {
    setCrumbs([{ text: "Uploads" }]);
    var list = h("ul", { class: "list uploads", id: "upload-list", "aria-live": "polite" });
    var msg = h("div", { role: "status", id: "upload-message" });
    var testSel = h("select", { id: "upload-test" }, h("option", { value: "" }, "No test (attach later)"));
    var input = h("input", { type: "file", id: "file-input", multiple: true, accept: ".slog,.SLOG,application/vnd.smartlogger.slog,application/octet-stream",
                             class: "visually-hidden" });
    var picker = h("label", { for: "file-input", class: "button primary big" }, "+ Choose logfiles");
    input.addEventListener("change", function () {
      var files = Array.prototype.slice.call(input.files || []);
      input.value = "";
      addFiles(files, testSel.value ? Number(testSel.value) : null, msg);
    });
    if (query.shared) msg.textContent = "\u2714 " + query.shared + " shared file(s) added to the queue.";
    if (query.share_error) msg.textContent = "\u2716 The shared file could not be queued: " + query.share_error;
    show(h("h1", {}, "Uploads"),
      h("p", { class: "muted" }, "Logfiles are kept on this phone until the server has them. Without network they wait and are sent automatically."),
      h("div", { class: "card form" }, h("label", { for: "upload-test" }, "Attach to test"), testSel, input, picker,
        h("button", { type: "button", class: "button", id: "send-now", onclick: function () { requestFlush(); } }, "\u21bb Send now")),
      msg, h("h2", {}, "Queue"), list);
    SLApi.get("/api/tests?limit=1000").then(function (tests) {
      tests.filter(function (t) { return t.status === "collecting" || String(t.id) === query.test; }).forEach(function (t) {
        testSel.appendChild(h("option", { value: String(t.id), selected: String(t.id) === query.test }, (t.name || "Test " + t.id) + " (" + t.logfiles + "/" + t.blocks + ")"));
      });
    }).catch(function () { /* offline and never listed: uploads still work without a test */ });
    function refresh() {
      if (tok !== renderToken) return;
      SLStore.list().then(function (rows) {
        list.textContent = "";
        if (!rows.length) list.appendChild(h("li", { class: "empty" }, "Nothing queued."));
        rows.forEach(function (e) { list.appendChild(describeEntry(e)); });
      });
    }
    uploadsListener = refresh;
    refresh();
  }
  var uploadsListener = null;

  function addFiles(files, testId, msg) {
    var owner = SLApi.state.me && SLApi.state.me.user ? SLApi.state.me.user.email : null;
    var notes = [];
    return files.reduce(function (p, f) {
      return p.then(function () { return f.slice(0, 64 * 1024 * 1024 + 1).arrayBuffer(); }).then(function (buf) {
        if (!SLog.isLogfile(buf)) { notes.push("\u2716 " + f.name + ": not a smartlogger logfile (wrong magic bytes), not queued"); return null; }
        var meta = null;
        try { var lf = SLog.read(buf, { samples: false }); meta = { serial: lf.serial, label: lf.label, position: lf.position }; }
        catch (err) { notes.push("\u26a0 " + f.name + ": " + err.message + " (queued; the server will decide)"); }
        return SLStore.enqueue(f, { testId: testId, source: "picker", owner: owner, meta: meta }).then(function () {
          notes.push("\u2714 " + f.name + (meta ? " (" + meta.serial + (meta.label ? ", " + meta.label : "") + ")" : "") + " queued");
        });
      });
    }, Promise.resolve()).then(function () {
      msg.textContent = notes.join(" \u00b7 ");
      requestFlush();
    });
  }

  function viewAccount() {
    setCrumbs([{ text: "Account" }]);
    var me = SLApi.state.me || {};
    var user = me.user || {}, org = me.organisation || {};
    var installBtn = installPrompt ? h("button", { type: "button", class: "button", onclick: function () { installPrompt.prompt(); } }, "Install the app") : null;
    var out = h("button", { type: "button", class: "button danger", id: "signout", onclick: function () {
      SLStore.pending().then(function (p) {
        if (p.length && !window.confirm(p.length + " upload(s) are still waiting. They stay on this phone and are sent after you sign in again. Sign out?")) return;
        SLApi.signOut().then(function () { location.hash = "#/signin"; });
      });
    } }, "Sign out");
    show(h("h1", {}, "Account"), h("dl", { class: "figures" },
      h("div", {}, h("dt", {}, "User"), h("dd", { id: "me-email" }, user.email || "\u2013")),
      h("div", {}, h("dt", {}, "Role"), h("dd", {}, user.role || "\u2013")),
      h("div", {}, h("dt", {}, "Organisation"), h("dd", {}, org.name || "\u2013")),
      h("div", {}, h("dt", {}, "Server"), h("dd", {}, SLApi.state.api || location.origin))), installBtn, out);
  }

  // ------------------------------------------------------------------ router, network state, queue triggers

  function parse() {
    var hash = location.hash.replace(/^#/, "") || "/";
    var q = {}, qi = hash.indexOf("?");
    if (qi >= 0) {
      hash.slice(qi + 1).split("&").forEach(function (kv) { var p = kv.split("="); if (p[0]) q[decodeURIComponent(p[0])] = decodeURIComponent(p[1] || ""); });
      hash = hash.slice(0, qi);
    }
    return { parts: hash.split("/").filter(Boolean), query: q };
  }

  function route() {
    var tok = ++renderToken;
    uploadsListener = null;
    var r = parse(), p = r.parts;
    document.querySelectorAll(".tabs a").forEach(function (a) {
      var on = a.dataset.tab === (p[0] === "uploads" ? "uploads" : p[0] === "account" ? "account" : "sites");
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    document.body.classList.toggle("signed-out", !SLApi.state.token);
    if (!SLApi.state.token && p[0] !== "signin") { location.hash = "#/signin"; return; }
    var run;
    if (p[0] === "signin") run = viewSignIn();
    else if (p[0] === "sites" && p[1]) run = viewSite(tok, p[1]);
    else if (p[0] === "strings" && p[1]) run = viewString(tok, p[1]);
    else if (p[0] === "tests" && p[1] && p[2] === "blocks" && p[3]) run = viewBlock(tok, p[1], decodeURIComponent(p[3]));
    else if (p[0] === "tests" && p[1]) run = viewTest(tok, p[1]);
    else if (p[0] === "uploads") run = viewUploads(tok, r.query);
    else if (p[0] === "account") run = viewAccount();
    else run = viewSites(tok);
    Promise.resolve(run).catch(function (err) {
      if (tok !== renderToken) return;
      if (err && err.status === 401) { SLApi.signOut().then(function () { location.hash = "#/signin"; }); return; }
      show(errorBox(err));
    });
    // Move focus to the new view (screen readers announce it) unless the view focused a field itself.
    if (!view.contains(document.activeElement)) view.focus({ preventScroll: true });
  }

  function updateNet() {
    var on = navigator.onLine;
    net.textContent = on ? "\u25cf Online" : "\u25cb Offline";
    net.className = "net " + (on ? "net-on" : "net-off");
    document.body.classList.toggle("offline", !on);
  }

  function updateBadge() {
    SLStore.list().then(function (rows) {
      var waiting = rows.filter(function (r) { return r.state === "queued" || r.state === "uploading"; }).length;
      badge.textContent = waiting ? String(waiting) : "";
      badge.classList.toggle("hidden", !waiting);
      badge.setAttribute("aria-label", waiting + " waiting");
    });
  }

  /** Drain the upload queue: in the service worker when there is one (it survives the page). */
  function requestFlush() {
    if (!navigator.onLine) {
      if (registration && registration.sync) registration.sync.register("sl-upload").catch(function () { return null; });
      return;
    }
    if (registration && registration.active) registration.active.postMessage({ type: "flush" });
    else SLStore.flush().catch(function () { return null; });
  }

  function start() {
    updateNet();
    window.addEventListener("online", function () { updateNet(); requestFlush(); });
    window.addEventListener("offline", updateNet);
    window.addEventListener("hashchange", route);
    window.addEventListener("beforeinstallprompt", function (e) { e.preventDefault(); installPrompt = e; });
    if ("launchQueue" in window) {
      // Installed app opened with .slog files (manifest "file_handlers"): queue them like picked files.
      window.launchQueue.setConsumer(function (params) {
        if (!params.files || !params.files.length) return;
        Promise.all(params.files.map(function (handle) { return handle.getFile(); })).then(function (files) {
          location.hash = "#/uploads";
          addFiles(files, null, document.getElementById("upload-message") || h("div", {}));
        });
      });
    }
    SLStore.subscribe(function () { updateBadge(); if (uploadsListener) uploadsListener(); });
    var swReady = "serviceWorker" in navigator
      ? navigator.serviceWorker.register("sw.js").then(function () { return navigator.serviceWorker.ready; })
        .then(function (reg) { registration = reg; document.documentElement.dataset.sw = "ready"; }).catch(function () { return null; })
      : Promise.resolve();
    SLApi.load().then(function () {
      route();
      updateBadge();
      return swReady;
    }).then(function () { if (SLApi.state.token) requestFlush(); });
  }

  start();
})();
