/*
 * api.js: the app's client of the smartlogger API (docs/API.md), over HTTP only.
 *
 * Owns: the bearer token and API base (kept in IndexedDB through SLStore, so the service worker
 * can upload with them), JSON requests with the API's one error shape
 * ({"error": {"code", "message", "field"}}) turned into ApiError, and knowing when an answer came
 * from the service worker's offline copy (header X-SL-Saved-At).
 */
/* global SLStore */
(function (root) {
  "use strict";

  var state = { api: "", token: null, me: null };

  /** An API failure: ``status`` (0 = no network), ``code`` and ``message`` from the API. */
  function ApiError(status, code, message, field) {
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.message = message;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function load() {
    return Promise.all([SLStore.kvGet("api"), SLStore.kvGet("token"), SLStore.kvGet("me")]).then(function (v) {
      state.api = v[0] || "";
      state.token = v[1] || null;
      state.me = v[2] || null;
      return state;
    });
  }

  function raw(path, options) {
    options = options || {};
    var headers = Object.assign({}, options.headers || {});
    var token = options.token || state.token;
    if (token) headers.Authorization = "Bearer " + token;
    var init = { method: options.method || "GET", headers: headers };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    } else if (options.body !== undefined) {
      init.body = options.body;
    }
    var base = options.api !== undefined ? options.api : state.api;
    return fetch(base + path, init).catch(function () {
      throw new ApiError(0, "offline", "no connection to the server");
    }).then(function (resp) {
      if (resp.ok) return resp;
      return resp.json().catch(function () { return null; }).then(function (body) {
        var e = body && body.error ? body.error : {};
        throw new ApiError(resp.status, e.code || "http_" + resp.status, e.message || "HTTP " + resp.status, e.field);
      });
    });
  }

  /** GET/POST JSON; resolves {data, savedAt} (savedAt: ms of the offline copy, or null if live). */
  function json(path, options) {
    return raw(path, options).then(function (resp) {
      var saved = resp.headers.get("X-SL-Saved-At");
      if (resp.status === 204) return { data: null, savedAt: null };
      return resp.json().then(function (data) { return { data: data, savedAt: saved ? Number(saved) : null }; });
    });
  }

  function get(path) { return json(path).then(function (r) { return r.data; }); }

  /** Check ``token`` against /api/me and keep it (with the API base) for the page and the worker. */
  function signIn(api, token) {
    api = (api || "").replace(/\/+$/, "");
    return json("/api/me", { api: api, token: token }).then(function (r) {
      state.api = api;
      state.token = token;
      state.me = r.data;
      return Promise.all([SLStore.kvSet("api", api), SLStore.kvSet("token", token), SLStore.kvSet("me", r.data)])
        .then(function () { return r.data; });
    });
  }

  /** Forget the token and every saved API answer (the next user of the phone must not see them). */
  function signOut() {
    state.token = null;
    state.me = null;
    var cache = root.caches ? root.caches.delete("sl-api-v1") : Promise.resolve(false);
    return Promise.all([SLStore.kvDelete("token"), SLStore.kvDelete("me"), cache]);
  }

  root.SLApi = { state: state, load: load, raw: raw, json: json, get: get, signIn: signIn, signOut: signOut, ApiError: ApiError };
})(typeof self !== "undefined" ? self : this);
