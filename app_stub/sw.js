/*
 * sw.js: the companion app's service worker (scope /app/).
 *
 * Owns:
 * - the offline shell: every file of the app is precached at install (cache "sl-shell-<VERSION>")
 *   and answered cache-first, refreshed in the background;
 * - offline reads: GET /api/... answers are network-first and copied into "sl-api-v1"; without a
 *   network the saved copy is answered with the header X-SL-Saved-At (ms since epoch) so the page
 *   can say how old it is. Report workbooks are never cached (large, and fetched on demand);
 * - the share target: POST /app/share-target (multipart, field "logfile", from the manifest)
 *   puts every shared file in the upload queue and redirects to the uploads view;
 * - background upload: Background Sync (tag "sl-upload") and messages from the page drain the
 *   queue through SLStore.flush (js/store.js).
 */
/* global SLStore */
"use strict";

importScripts("js/store.js");

var VERSION = "2026-12-03.23"; // bump on every change of the app: old shell caches are dropped
var SHELL_CACHE = "sl-shell-" + VERSION;
var API_CACHE = "sl-api-v1";
var SCOPE = new URL(self.registration.scope).pathname; // "/app/"
var SHELL = [
  "", "index.html", "app.css", "manifest.webmanifest", "js/app.js", "js/api.js", "js/chart.js",
  "js/slog.js", "js/store.js", "icons/icon.svg", "icons/icon-192.png", "icons/icon-512.png"
].map(function (p) { return SCOPE + p; });

self.addEventListener("install", function (event) {
  event.waitUntil(caches.open(SHELL_CACHE).then(function (c) { return c.addAll(SHELL); })
    .then(function () { return self.skipWaiting(); }));
});

self.addEventListener("activate", function (event) {
  event.waitUntil(caches.keys().then(function (keys) {
    return Promise.all(keys.filter(function (k) { return k.indexOf("sl-shell-") === 0 && k !== SHELL_CACHE; })
      .map(function (k) { return caches.delete(k); }));
  }).then(function () { return self.clients.claim(); }));
});

function shell(request) {
  return caches.open(SHELL_CACHE).then(function (cache) {
    return cache.match(request, { ignoreSearch: true }).then(function (hit) {
      var refresh = fetch(request).then(function (resp) {
        if (resp.ok) cache.put(request, resp.clone());
        return resp;
      });
      if (hit) {
        refresh.catch(function () { return null; });
        return hit;
      }
      return refresh.catch(function () {
        // A navigation to a route of the app (hash routes share one document) gets the shell.
        return cache.match(SCOPE + "index.html");
      });
    });
  });
}

function offlineAnswer(message) {
  return new Response(JSON.stringify({ error: { code: "offline", message: message } }), {
    status: 503, headers: { "Content-Type": "application/json", "X-SL-Offline": "1" }
  });
}

function apiGet(request) {
  return fetch(request).then(function (resp) {
    if (resp.status === 200) {
      var copy = resp.clone();
      copy.blob().then(function (body) {
        var headers = new Headers(copy.headers);
        headers.set("X-SL-Saved-At", String(Date.now()));
        return caches.open(API_CACHE).then(function (c) {
          return c.put(request.url, new Response(body, { status: 200, headers: headers }));
        });
      });
    }
    return resp;
  }, function () {
    return caches.open(API_CACHE).then(function (c) { return c.match(request.url, { ignoreVary: true }); })
      .then(function (hit) { return hit || offlineAnswer("offline, and this was not opened before"); });
  });
}

function receiveShare(request) {
  return request.formData().then(function (form) {
    var files = form.getAll("logfile").filter(function (f) { return f && typeof f !== "string"; });
    return SLStore.kvGet("me").then(function (me) {
      var owner = me && me.user ? me.user.email : null;
      return Promise.all(files.map(function (f) { return SLStore.enqueue(f, { source: "share", owner: owner }); }));
    });
  }).then(function (ids) {
    kick();
    return Response.redirect(SCOPE + "#/uploads?shared=" + ids.length, 303);
  }, function (err) {
    return Response.redirect(SCOPE + "#/uploads?share_error=" + encodeURIComponent(String(err && err.message || err)), 303);
  });
}

/** Try the queue now and ask Background Sync to try again later if something is left. */
function kick() {
  return SLStore.flush().then(function (s) {
    if (s.retry && self.registration.sync) return self.registration.sync.register("sl-upload").catch(function () { return null; });
    return null;
  }).catch(function () { return null; });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return; // another API origin: the network as is
  if (request.method === "POST" && url.pathname === SCOPE + "share-target") {
    event.respondWith(receiveShare(request));
    return;
  }
  if (request.method !== "GET") return;
  if (url.pathname.indexOf("/api/") === 0) {
    if (/\/report\.xlsx$/.test(url.pathname)) return;
    event.respondWith(apiGet(request));
    return;
  }
  if (url.pathname.indexOf(SCOPE) === 0 || url.pathname + "/" === SCOPE) event.respondWith(shell(request));
});

self.addEventListener("sync", function (event) {
  if (event.tag === "sl-upload") event.waitUntil(SLStore.flush({ rejectOnRetry: true }));
});

self.addEventListener("message", function (event) {
  var data = event.data || {};
  if (data.type === "flush") event.waitUntil(kick());
});
