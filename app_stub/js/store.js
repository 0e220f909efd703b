/*
 * store.js: the app's on-device state in IndexedDB, shared by the page and the service worker.
 *
 * Owns: the settings (API base URL, bearer token, the signed-in user) and the upload queue of
 * logfiles, including the one function that drains it (SLStore.flush). Both the page
 * (<script src>) and the service worker (importScripts) load this file, so a queued upload is
 * sent by whichever runs first: Background Sync in the worker, the page's "online" event, or app
 * start. Changes are announced on the BroadcastChannel "sl-uploads".
 *
 * Upload states: queued -> uploading -> done | rejected. A network failure, a 5xx, 401 or 429
 * puts the entry back to "queued" with the reason (retried later); any other 4xx is final
 * ("rejected", with the API's message). The API is content-addressed (the same bytes answer 200
 * with the existing logfile), so a retry after a lost response can never make a duplicate.
 */
(function (root) {
  "use strict";

  var DB_NAME = "smartlogger-app";
  var DB_VERSION = 1;
  var STALE_UPLOADING_MS = 120000; // an "uploading" entry older than this was cut off (worker killed)
  var channel = typeof BroadcastChannel !== "undefined" ? new BroadcastChannel("sl-uploads") : null;
  var dbPromise = null;
  var flushing = null; // serialises flushes within one context (page or worker)

  function req(r) {
    return new Promise(function (resolve, reject) {
      r.onsuccess = function () { resolve(r.result); };
      r.onerror = function () { reject(r.error); };
    });
  }

  function open() {
    if (!dbPromise) {
      dbPromise = new Promise(function (resolve, reject) {
        var r = indexedDB.open(DB_NAME, DB_VERSION);
        r.onupgradeneeded = function () {
          var db = r.result;
          if (!db.objectStoreNames.contains("kv")) db.createObjectStore("kv");
          if (!db.objectStoreNames.contains("uploads")) db.createObjectStore("uploads", { keyPath: "id", autoIncrement: true });
        };
        r.onsuccess = function () { resolve(r.result); };
        r.onerror = function () { reject(r.error); };
      });
    }
    return dbPromise;
  }

  function tx(storeName, mode, fn) {
    return open().then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction(storeName, mode);
        var result;
        Promise.resolve(fn(t.objectStore(storeName))).then(function (v) { result = v; });
        t.oncomplete = function () { resolve(result); };
        t.onerror = function () { reject(t.error); };
        t.onabort = function () { reject(t.error || new Error("transaction aborted")); };
      });
    });
  }

  function kvGet(key) { return tx("kv", "readonly", function (s) { return req(s.get(key)); }); }
  function kvSet(key, value) { return tx("kv", "readwrite", function (s) { return req(s.put(value, key)); }); }
  function kvDelete(key) { return tx("kv", "readwrite", function (s) { return req(s.delete(key)); }); }

  var listeners = [];
  // BroadcastChannel does not deliver to its own sender: local listeners are called directly.
  function announce(what) {
    if (channel) channel.postMessage({ type: what });
    listeners.forEach(function (fn) { try { fn(what); } catch (e) { /* a listener's bug stays its own */ } });
  }

  /** Call ``fn`` whenever the queue changes, in this context or any other (worker, other tabs). */
  function subscribe(fn) {
    listeners.push(fn);
    if (channel) channel.addEventListener("message", function (ev) { fn(ev.data && ev.data.type); });
  }

  /** Put a logfile in the queue. ``file``: Blob/File; ``opts``: {testId, source, owner, meta}. Resolves the entry id. */
  function enqueue(file, opts) {
    opts = opts || {};
    return file.arrayBuffer().then(function (buf) {
      var entry = {
        name: file.name || "logfile.slog", size: buf.byteLength, data: buf,
        test_id: opts.testId || null, source: opts.source || "picker", owner: opts.owner || null,
        meta: opts.meta || null, // {serial, label, position} read from the file's header, for display
        state: "queued", attempts: 0, error: "", result: null,
        created_at: Date.now(), updated_at: Date.now()
      };
      return tx("uploads", "readwrite", function (s) { return req(s.add(entry)); });
    }).then(function (id) { announce("uploads-changed"); return id; });
  }

  /** All queue entries, newest first, without their bytes. */
  function list() {
    return tx("uploads", "readonly", function (s) { return req(s.getAll()); }).then(function (rows) {
      return rows.map(function (r) { var c = Object.assign({}, r); delete c.data; return c; })
        .sort(function (a, b) { return b.id - a.id; });
    });
  }

  function get(id) { return tx("uploads", "readonly", function (s) { return req(s.get(id)); }); }

  function update(id, changes) {
    return tx("uploads", "readwrite", function (s) {
      return req(s.get(id)).then(function (row) {
        if (!row) return null;
        Object.assign(row, changes, { updated_at: Date.now() });
        return req(s.put(row));
      });
    }).then(function () { announce("uploads-changed"); });
  }

  function remove(id) {
    return tx("uploads", "readwrite", function (s) { return req(s.delete(id)); })
      .then(function () { announce("uploads-changed"); });
  }

  /** Make a rejected entry try again (e.g. after the test it names was created). */
  function retry(id) { return update(id, { state: "queued", error: "" }); }

  function pending() {
    return list().then(function (rows) {
      var now = Date.now();
      return rows.filter(function (r) {
        return r.state === "queued" || (r.state === "uploading" && now - r.updated_at > STALE_UPLOADING_MS);
      }).sort(function (a, b) { return a.id - b.id; });
    });
  }

  function errorMessage(status, body) {
    if (body && body.error && body.error.message) return body.error.message + " (HTTP " + status + ")";
    return "HTTP " + status;
  }

  /** Send one entry; resolves "done", "rejected" or "retry". */
  function sendOne(entry, settings, fetchImpl) {
    var url = settings.api + "/api/logfiles" + (entry.test_id ? "?test_id=" + encodeURIComponent(entry.test_id) : "");
    return update(entry.id, { state: "uploading", attempts: (entry.attempts || 0) + 1 })
      .then(function () { return get(entry.id); })
      .then(function (row) {
        if (!row) return "gone"; // removed by the user meanwhile
        return fetchImpl(url, {
          method: "POST",
          headers: { "Authorization": "Bearer " + settings.token, "Content-Type": "application/vnd.smartlogger.slog" },
          body: row.data
        }).then(function (resp) {
          return resp.json().catch(function () { return null; }).then(function (body) {
            if (resp.ok) {
              return update(entry.id, { state: "done", error: "", result: body, data: null }).then(function () { return "done"; });
            }
            var transient = resp.status >= 500 || resp.status === 401 || resp.status === 408 || resp.status === 429;
            var msg = errorMessage(resp.status, body);
            if (resp.status === 401) msg = "sign in again: " + msg;
            return update(entry.id, { state: transient ? "queued" : "rejected", error: msg })
              .then(function () { return transient ? "retry" : "rejected"; });
          });
        }, function () {
          return update(entry.id, { state: "queued", error: "no network: waiting to retry" }).then(function () { return "retry"; });
        });
      });
  }

  /**
   * Upload every queued entry of the signed-in user, oldest first. Resolves
   * {done, rejected, retry}; with ``opts.rejectOnRetry`` it rejects when something must be
   * retried, which tells Background Sync to schedule another attempt.
   */
  function flush(opts) {
    opts = opts || {};
    if (flushing) return flushing;
    var fetchImpl = opts.fetch || root.fetch.bind(root);
    var summary = { done: 0, rejected: 0, retry: 0 };
    flushing = Promise.all([kvGet("api"), kvGet("token"), kvGet("me")]).then(function (v) {
      var settings = { api: v[0] || "", token: v[1], me: v[2] };
      if (!settings.token) return summary; // signed out: keep everything queued
      var owner = settings.me && settings.me.user ? settings.me.user.email : null;
      return pending().then(function (rows) {
        // Entries queued by another account stay queued until that account signs in again.
        rows = rows.filter(function (r) { return !r.owner || !owner || r.owner === owner; });
        var chain = Promise.resolve();
        var offline = false;
        rows.forEach(function (row) {
          chain = chain.then(function () {
            if (offline) return null; // one network failure: don't hammer, wait for the next trigger
            return sendOne(row, settings, fetchImpl).then(function (r) {
              if (r === "done") summary.done++;
              else if (r === "rejected") summary.rejected++;
              else if (r === "retry") { summary.retry++; offline = true; }
            });
          });
        });
        return chain.then(function () { return summary; });
      });
    }).then(function (s) {
      flushing = null;
      if (opts.rejectOnRetry && s.retry) throw new Error("uploads remain queued: " + s.retry);
      return s;
    }, function (err) { flushing = null; throw err; });
    return flushing;
  }

  root.SLStore = {
    open: open, kvGet: kvGet, kvSet: kvSet, kvDelete: kvDelete, enqueue: enqueue, list: list, get: get,
    remove: remove, retry: retry, flush: flush, pending: pending, subscribe: subscribe
  };
})(typeof self !== "undefined" ? self : this);
