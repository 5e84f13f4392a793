// A browser as client.js needs it, for an ES5.1 engine (duktape's duk):
// virtual timers and clock, tabs with XMLHttpRequest answered by the
// scenario, localStorage shared by the tabs with storage events,
// sessionStorage per tab, no BroadcastChannel. The engine's ES2015+
// built-ins are removed first, so that a client that uses one fails here
// as it would in an ES5 browser. TestClientJSRunsInES5Engine appends
// client.js (wrapped in __load) and scenario.js to this file.
(function (g) {
  var gone = [
    [Object, 'assign', 'is', 'setPrototypeOf', 'getOwnPropertySymbols', 'entries', 'values', 'fromEntries'],
    [String.prototype, 'includes', 'startsWith', 'endsWith', 'repeat', 'codePointAt', 'padStart', 'padEnd',
      'normalize', 'trimStart', 'trimEnd'],
    [String, 'fromCodePoint', 'raw'],
    [Array, 'from', 'of'],
    [Array.prototype, 'find', 'findIndex', 'includes', 'fill', 'keys', 'values', 'entries', 'copyWithin', 'flat'],
    [Math, 'trunc', 'sign', 'cbrt', 'log2', 'log10', 'clz32', 'imul', 'hypot', 'fround', 'expm1', 'log1p'],
    [Number, 'isInteger', 'isFinite', 'isNaN', 'isSafeInteger', 'parseInt', 'parseFloat'],
    [g, 'Symbol', 'Promise', 'Map', 'Set', 'WeakMap', 'WeakSet', 'Proxy', 'Reflect', 'globalThis',
      'TextEncoder', 'TextDecoder', 'performance', 'CBOR', 'require', 'queueMicrotask', 'fetch',
      'ArrayBuffer', 'DataView', 'Uint8Array', 'Int8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
      'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array']
  ], i, j;
  for (i = 0; i < gone.length; i++) {
    for (j = 1; j < gone[i].length; j++) {
      delete gone[i][0][gone[i][j]];
      if (gone[i][0][gone[i][j]] !== undefined) { throw new Error('cannot remove ' + gone[i][j]); }
    }
  }
}(this));

// ---- virtual time -------------------------------------------------------------
var __clock = 1764000000000, __timers = [], __tseq = 0, RealDate = Date;
Date = function (a) { return arguments.length ? new RealDate(a) : new RealDate(__clock); };
Date.prototype = RealDate.prototype;
Date.parse = RealDate.parse;
Date.UTC = RealDate.UTC;
function __timer(fn, ms, every) {
  var id = ++__tseq;
  __timers.push({id: id, at: __clock + (ms > 0 ? ms : 0), fn: fn, every: every ? Math.max(1, ms) : 0});
  return id;
}
function __untimer(id) {
  for (var i = 0; i < __timers.length; i++) {
    if (__timers[i].id === id) { __timers.splice(i, 1); return; }
  }
}
function setTimeout(fn, ms) { return __timer(fn, ms, false); }
function setInterval(fn, ms) { return __timer(fn, ms, true); }
function clearTimeout(id) { __untimer(id); }
function clearInterval(id) { __untimer(id); }
// advance(ms) runs every timer due within ms, in time order, moving the clock.
function advance(ms) {
  var end = __clock + (ms || 0), i, t;
  for (;;) {
    t = null;
    for (i = 0; i < __timers.length; i++) {
      if (__timers[i].at <= end && (!t || __timers[i].at < t.at)) { t = __timers[i]; }
    }
    if (!t) { break; }
    __clock = Math.max(__clock, t.at);
    if (t.every) { t.at += t.every; } else { __untimer(t.id); }
    t.fn();
  }
  __clock = end;
}
function flush() { advance(0); }

// ---- tabs -----------------------------------------------------------------------
var __local = {}, __tabs = [];
function __storage(data, tab) {
  return {
    getItem: function (k) { return Object.prototype.hasOwnProperty.call(data, k) ? data[k] : null; },
    setItem: function (k, v) { var old = this.getItem(k); data[k] = String(v); __changed(tab, data, k, old); },
    removeItem: function (k) { var old = this.getItem(k); delete data[k]; __changed(tab, data, k, old); }
  };
}
// A localStorage write fires "storage" in every other tab, as a later task.
function __changed(tab, data, k, old) {
  if (data !== __local) { return; }
  var nv = Object.prototype.hasOwnProperty.call(data, k) ? data[k] : null, i;
  for (i = 0; i < __tabs.length; i++) {
    if (__tabs[i] !== tab) { __fire(__tabs[i], {key: k, oldValue: old, newValue: nv}); }
  }
}
function __fire(tab, ev) {
  setTimeout(function () {
    var l = (tab.window.__on.storage || []).slice(), i;
    for (i = 0; i < l.length; i++) { l[i](ev); }
  }, 0);
}
// newTab(session) opens a tab; session (another tab's sessionStorage data) makes it a reload.
function newTab(session) {
  var tab = {pending: [], session: session || {}}, w = {__on: {}};
  w.addEventListener = function (ev, fn) { (w.__on[ev] = w.__on[ev] || []).push(fn); };
  w.removeEventListener = function (ev, fn) {
    var l = w.__on[ev] || [], i;
    for (i = 0; i < l.length; i++) { if (l[i] === fn) { l.splice(i, 1); return; } }
  };
  w.localStorage = __storage(__local, tab);
  w.sessionStorage = __storage(tab.session, tab);
  w.XMLHttpRequest = function () { this.readyState = 0; this.headers = {}; };
  w.XMLHttpRequest.prototype = {
    open: function (m, u) { this.method = m; this.url = u; this.readyState = 1; },
    setRequestHeader: function (k, v) { this.headers[k] = v; },
    send: function (body) { this.body = body; tab.pending.push(this); },
    abort: function () { this.aborted = true; __drop(tab, this); },
    getResponseHeader: function () { return null; }
  };
  tab.window = w;
  __tabs.push(tab);
  tab.Pollbox = __load(w);
  return tab;
}
function __drop(tab, r) {
  for (var i = 0; i < tab.pending.length; i++) {
    if (tab.pending[i] === r) { tab.pending.splice(i, 1); return; }
  }
}
function __path(r) { return r.url.replace(/^[a-z]+:\/\/[^\/]*/, '').split('?')[0]; }
// take(tab, method, path) is the tab's oldest pending request for that route.
function take(tab, method, path) {
  for (var i = 0; i < tab.pending.length; i++) {
    var r = tab.pending[i];
    if (r.method === method && __path(r) === path) { tab.pending.splice(i, 1); return r; }
  }
  throw new Error('no pending ' + method + ' ' + path + '; pending: ' + pendingList(tab));
}
function pendingList(tab) {
  var s = [], i;
  for (i = 0; i < tab.pending.length; i++) { s.push(tab.pending[i].method + ' ' + tab.pending[i].url); }
  return s.join(', ') || 'none';
}
function param(r, k) {
  var m = new RegExp('[?&]' + k + '=([^&]*)').exec(r.url);
  return m ? decodeURIComponent(m[1]) : null;
}
// answer(r, status, body) completes a request as the server would.
function answer(r, status, body) {
  if (r.aborted) { throw new Error('answering an aborted request ' + r.url); }
  r.readyState = 4;
  r.status = status;
  r.statusText = 'x';
  r.responseText = body == null ? '' : JSON.stringify(body);
  r.onreadystatechange();
}

// ---- checks ---------------------------------------------------------------------
function eq(got, want, what) {
  var g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) { throw new Error(what + ': got ' + g + ', want ' + w); }
}
function ok(cond, what) { if (!cond) { throw new Error(what); } }
