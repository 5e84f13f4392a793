/*!
 * pollbox browser client 1.0.0
 * In-app notifications over HTTP long-polling. Plain ES5 + XMLHttpRequest,
 * no dependencies; about 13 KB minified, 5.2 KB gzipped.
 */
// var c = Pollbox.connect({
//   url: 'https://host',          // API base URL ('' = same origin)
//   token: 'jwt', getToken: function (cb) { cb(jwt); },  // getToken also refreshes after a 401
//   onMessage: fn(msg), onUnread: fn(n, byType), onReset: fn(), onError: fn(err), onState: fn({role, ok}),
//   onChange: fn(state),          // the inbox state below changed (at most once per tick)
//   onRevoke: fn(id),             // a publisher revoked message id: remove it if shown
//   shared: true,                 // tabs of one browser and user share one long-poll
//   storageKey: 'app',            // optional namespace for the storage keys
//   historyLimit: 20,             // messages loaded at start (0: none); delivered to onMessage
//                                 // unless the tab resumes a saved cursor (a reload)
//   timeout: 25                   // long-poll timeout in seconds (less behind a proxy that
//                                 // cuts polls sooner: see "proxies" below)
// });
// c.history(query, cb)  c.markRead(ids, cb)  c.markAllRead(cb)  c.remove(id, cb)
// c.publish(body, cb)  c.unread(cb)  c.setToken(t)  c.close()  c.isLeader()  c.cursor()
// c.state(): the inbox state, one object until something changes (never mutate it):
//   {items: [msg, newest first, each with read], unread, unread_by_type, hasMore,
//    status: 'connecting'|'connected'|'reconnecting'|'stopped', role, ok, wait}
//   wait = seconds the next poll asks for. c.subscribe(fn) -> unsubscribe; fn() on change.
// c.loadMore(cb): the next older history page into items. Reads, deletes, revokes and
// resets show in items, in every tab; reads and deletes on other devices too (the
// loaded items' flags are refreshed from history when the server reports a change).
// Callbacks are cb(err, response); err = {status, error, message}.
// byType is {type: n} of the unread messages (as of the latest answer carrying it).
//
// var p = Pollbox.publisher({url: '', token: 'jwt or API key', getToken: fn(cb)});
// p.publish(body, cb)  p.sent(query, cb)  p.sentDetail(publishId, query, cb)
// p.withdraw(publishId, cb): cancels a scheduled send, revokes a sent one
//
// Sharing: one tab leads through a lease in localStorage and polls; it relays
// messages, unread counts, resets and its cursor to the other tabs
// (BroadcastChannel, else localStorage "storage" events). When it closes or
// freezes, another tab takes over from the shared cursor.
//
// Proxies: a proxy whose read timeout is below `timeout` cuts every waiting
// poll at the same age (502, 504 or an empty reply). A poll that fails after
// 5 s or more, before its wait was over, counts as such a cut: no onError, the
// status stays ok, and the client polls again at once from the same cursor.
// After two cuts at a similar age it asks for 80 % of that age (at least 5 s),
// remembered per server URL in localStorage for every tab; once an hour a
// poll asks for the full timeout again, to notice a proxy that has gone.
(function (root, factory) {
  var api = factory(root);
  if (typeof module === 'object' && module && module.exports) { module.exports = api; }
  if (root) { root.Pollbox = api; }
}(typeof window !== 'undefined' ? window : typeof self !== 'undefined' ? self :
  typeof global !== 'undefined' ? global : this, function (G) {
  'use strict';

  var VERSION = '1.0.0';
  var LEASE_MS = 3500;    // a leader that stops renewing loses the lease after this
  var TICK_MS = 1000;     // lease renewal / check interval
  var SETTLE_MS = 150;    // write the lease, wait, re-read: the last writer wins
  var FRESH_MS = 120000;  // a lease cursor older than this is not resumed by a new leader
  var SEEN_MAX = 500;     // remembered message ids for de-duplication
  var BASE_MS = 1000, CAP_MS = 30000;
  var CUT_S = 5;          // a poll failing sooner than this is an error, not a proxy's cut
  var CUT_RUN = 4;        // cuts in a row without an answer before they count as errors
  var PROBE_MS = 3600000; // how long a learnt wait holds before a poll asks for the full timeout

  function now() { return new Date().getTime(); }
  function later(fn, ms) { return setTimeout(fn, ms); }
  function isArray(a) { return Object.prototype.toString.call(a) === '[object Array]'; }
  function on(t, ev, fn, off) {
    if (t && t.addEventListener) { t[off ? 'removeEventListener' : 'addEventListener'](ev, fn, false); }
  }
  // Calls an application callback; its exceptions surface without breaking the client.
  function call(fn, a, b) {
    if (typeof fn !== 'function') { return; }
    try { fn(a, b); } catch (e) { later(function () { throw e; }, 0); }
  }

  // Storage that may be missing, disabled or full: every access is guarded.
  function store(name) {
    try {
      var s = G[name], k = '__pollbox__';
      s.setItem(k, '1');
      s.removeItem(k);
      return s;
    } catch (e) { return null; }
  }
  function sget(s, k) {
    try { var v = s && s.getItem(k); return v ? JSON.parse(v) : null; } catch (e) { return null; }
  }
  function sset(s, k, v) {
    try {
      if (v == null) { s.removeItem(k); } else { s.setItem(k, JSON.stringify(v)); }
      return true;
    } catch (e) { return false; } // no storage, quota, private mode
  }

  function hash(str) { // FNV-1a, 32 bit
    var h = 0x811c9dc5, i;
    for (i = 0; i < str.length; i++) {
      h ^= str.charCodeAt(i);
      h = (h + (h << 1) + (h << 4) + (h << 7) + (h << 8) + (h << 24)) >>> 0;
    }
    return h.toString(36);
  }

  // The user a token belongs to: the JWT `sub` claim when readable, else the token itself.
  function subject(token) {
    try {
      var p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      while (p.length % 4) { p += '='; }
      var sub = JSON.parse(G.atob(p)).sub;
      if (sub != null && sub !== '') { return 'u' + sub; }
    } catch (e) { /* not a JWT */ }
    return 't' + (token || '');
  }

  function fail(status, code, msg) { return {status: status, error: code, message: msg}; }

  // base + path + query; null and '' values are left out, Dates sent as RFC 3339.
  function buildURL(base, path, q) {
    var s = base + path, sep = '?', k, v;
    for (k in q) {
      if (Object.prototype.hasOwnProperty.call(q, k) && q[k] != null && q[k] !== '') {
        v = q[k];
        if (v instanceof Date) { v = v.toISOString(); }
        s += sep + encodeURIComponent(k) + '=' + encodeURIComponent(v);
        sep = '&';
      }
    }
    return s;
  }

  // A by-type map as a string that is equal for equal maps.
  function typeKey(m) {
    var ks = [], k;
    for (k in m) { if (Object.prototype.hasOwnProperty.call(m, k)) { ks.push(k); } }
    ks.sort();
    for (k = 0; k < ks.length; k++) { ks[k] = [ks[k], m[ks[k]]]; }
    return JSON.stringify(ks);
  }

  // One HTTP exchange. cb(err, data); err = {status, error, message, retryAfter?}.
  // status 0 means network error or timeout. Returns {abort: fn}.
  function request(method, url, token, body, ms, cb) {
    var r, done = false, timer;
    function finish(err, data) {
      if (done) { return; }
      done = true;
      clearTimeout(timer);
      cb(err, data);
    }
    function abort() {
      done = true;
      clearTimeout(timer);
      try { r.abort(); } catch (e) { /* ignore */ }
    }
    try {
      r = new G.XMLHttpRequest();
      r.open(method, url, true);
      if (token) { r.setRequestHeader('Authorization', 'Bearer ' + token); }
      if (body !== undefined) { r.setRequestHeader('Content-Type', 'application/json'); }
      r.onreadystatechange = function () {
        if (r.readyState !== 4 || done) { return; }
        var s = r.status === 1223 ? 204 : r.status, data = null, text = r.responseText, err, ra;
        if (!s) { return finish(fail(0, 'network', 'network error')); }
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = undefined; }
        if (s >= 200 && s < 300) {
          if (data === undefined || (data === null && s !== 204)) {
            return finish(fail(s, 'bad_response', 'unexpected response from server'));
          }
          return finish(null, data);
        }
        err = fail(s, (data && data.error) || 'http_' + s, (data && data.message) || r.statusText || 'HTTP ' + s);
        try { ra = r.getResponseHeader('Retry-After'); } catch (e) { ra = null; }
        if (ra) {
          ra = /^\d+$/.test(ra) ? +ra : (Date.parse(ra) - now()) / 1000;
          if (ra > 0) { err.retryAfter = ra; }
        }
        finish(err);
      };
      timer = later(function () {
        finish(fail(0, 'timeout', 'request timed out'));
        abort();
      }, ms);
      r.send(body === undefined ? null : JSON.stringify(body));
    } catch (e) {
      later(function () { finish(fail(0, 'network', String(e && e.message || e))); }, 0);
    }
    return {abort: abort};
  }

  function connect(o) {
    o = o || {};
    var base = String(o.url || '').replace(/\/+$/, '');
    var token = o.token || null;
    var timeout = o.timeout > 0 ? +o.timeout : 25;
    var limit = o.historyLimit == null ? 20 : +o.historyLimit;
    var tabId = now().toString(36) + Math.random().toString(36).slice(2, 10);
    var key, CK, LK, BK;      // storage keys: base, session cursor, lease, bus
    var session, local, shared = false, chan = null, seq = 0;
    var closed = false, leader = false, acquiring = false, role = 'connecting', ok = null;
    var cur = null, unread, types = {}, typesK = '[]', seen = {}, seenQ = [], pending = null;
    var pollReq = null, retryTimer = null, retryFn = null, tickTimer = null, attempt = 0, refreshed = false;
    var WK = 'pollbox:wait:' + hash(base), wstore = store('localStorage'), mem = null, cuts = [], cutRun = 0;
    var items = [], more = limit === 0, snap = null, subs = [], emitTimer = null, refreshTimer = null, quiet = 0;

    function url(path, q) { return buildURL(base, path, q); }
    function withToken(fn) {
      if (token || typeof o.getToken !== 'function') { return fn(token); }
      o.getToken(function (t) { token = t || null; fn(token); });
    }
    function api(method, path, q, body, cb) {
      withToken(function (t) {
        request(method, url(path, q), t, body, 30000, function (e, d) { call(cb, e, d); });
      });
    }

    // Until connect() has returned, state reports wait: an app usually keeps
    // the returned client before it can make sense of a report.
    var booting = true, bootState = false;
    function emitState() {
      if (booting) { bootState = true; return; }
      call(o.onState, {role: role, ok: !!ok});
    }
    function setRole(r) { if (role !== r) { role = r; changed(); emitState(); } }
    function setOk(v) {
      if (ok !== v) {
        ok = v;
        changed();
        if (leader) { relay({t: 'k', v: v}); }
        if (role !== 'connecting') { emitState(); }
      }
    }
    // n and byType from an answer; an answer without byType keeps the last one.
    function setUnread(n, bt) {
      var k = bt && typeof bt === 'object' ? typeKey(bt) : typesK;
      if (typeof n === 'number' && (n !== unread || k !== typesK)) {
        unread = n;
        if (k !== typesK) { types = bt; typesK = k; }
        changed();
        call(o.onUnread, n, types);
      }
    }
    function setCursor(c) {
      if (c) { cur = c; sset(session, CK, c); }
    }
    function dropCursor() { cur = null; sset(session, CK, null); }
    // After a reset the history is delivered again, so the app can rebuild its list.
    function forget() { seen = {}; seenQ = []; }

    function isNew(m) {
      if (!m || m.id == null) { return !!m; }
      var k = '$' + m.id;
      if (seen[k]) { return false; }
      seen[k] = 1;
      seenQ.push(k);
      if (seenQ.length > SEEN_MAX) { delete seen[seenQ.shift()]; }
      return true;
    }
    // Messages (oldest first) into the items and, when new to this tab, to onMessage;
    // returns how many of them were unread and not in the items yet.
    function deliver(list) {
      var i, u = add(list);
      for (i = 0; list && i < list.length; i++) {
        if (isNew(list[i])) { call(o.onMessage, list[i]); }
      }
      return u;
    }
    // Revoked ids may name messages this tab never had (history it did not load).
    // Returns how many unread items they took away.
    function revoke(ids) {
      for (var i = 0, u = 0; isArray(ids) && i < ids.length; i++) {
        delete seen['$' + ids[i]];
        u += drop(ids[i]);
        call(o.onRevoke, ids[i]);
      }
      return u;
    }
    // A batch from the server (poll, or history with h = whether older exists):
    // deliver, remember, relay when leading. An unread count that the batch does
    // not explain, or a poll woken (w) by no local read or delete, means another
    // device read or deleted: the loaded items' flags are refreshed from history.
    function batch(list, c, n, bt, rv, h, w) {
      var was = unread, u = deliver(list) - revoke(rv);
      if (h != null) { setMore(h); }
      else if (w || (typeof n === 'number' && was != null && n !== was + u)) { refreshSoon(); }
      setUnread(n, bt);
      setCursor(c);
      if (leader && renew()) { relay({t: 'm', m: list || [], c: cur, u: n, b: bt, v: rv, h: h, w: w}); }
    }

    // ---- inbox state (see the header) ------------------------------------------
    // Copy-on-write: a snapshot handed out never changes.
    function changed() {
      snap = null;
      if (!emitTimer) {
        emitTimer = later(function () {
          emitTimer = null;
          var s = subs.slice(), i;
          call(o.onChange, snapshot());
          for (i = 0; i < s.length; i++) { call(s[i]); }
        }, 0);
      }
    }
    function snapshot() {
      var w = plannedWait();
      if (!snap || snap.wait !== w) {
        snap = {items: items, unread: unread || 0, unread_by_type: types, hasMore: more, role: role, ok: !!ok,
          status: closed ? 'stopped' : ok == null ? 'connecting' : ok ? 'connected' : 'reconnecting', wait: w};
      }
      return snap;
    }
    function setMore(h) { if (more !== !!h) { more = !!h; changed(); } }
    function copy(m, read) {
      var r = {}, k;
      for (k in m) { if (Object.prototype.hasOwnProperty.call(m, k)) { r[k] = m[k]; } }
      r.read = !!read;
      return r;
    }
    // Items keep the server's order (README, "Order"): by time, then by the
    // entry id's sequence within its millisecond, then broadcast, groups by
    // name, the inbox.
    function when(m) { return String(m.created_at || ''); }
    function rank(m) {
      var id = String(m.id), d = id.lastIndexOf('.'), s = id.slice(0, d);
      return [when(m), +id.slice(d + 1).split('-')[1] || 0,
        s === 'b' ? '0' : s.charAt(0) === 'g' ? '1' + s : '2'];
    }
    function newer(a, b) { // a sorts after b
      var x = rank(a), y = rank(b);
      return x[0] !== y[0] ? x[0] > y[0] : x[1] !== y[1] ? x[1] > y[1] : x[2] > y[2];
    }
    // Adds messages (oldest first) that the items lack, newest first.
    function add(list) {
      var n = items.slice(), has = {}, u = 0, i, j, m;
      for (i = 0; i < n.length; i++) { has['$' + n[i].id] = 1; }
      for (i = 0; list && i < list.length; i++) {
        m = list[i];
        if (m && m.id != null && !has['$' + m.id]) {
          has['$' + m.id] = 1;
          for (j = 0; j < n.length && newer(n[j], m); j++) { /* find its place */ }
          n.splice(j, 0, copy(m, m.read));
          if (!m.read) { u++; }
        }
      }
      if (n.length !== items.length) { items = n; changed(); }
      return u;
    }
    // Maps every item through fn: the same item, a changed copy, or null to drop it.
    function each(fn) {
      var n = [], c = false, i, r;
      for (i = 0; i < items.length; i++) {
        r = fn(items[i]);
        if (r !== items[i]) { c = true; }
        if (r) { n.push(r); }
      }
      if (c) { items = n; changed(); }
    }
    function drop(id) {
      var u = 0;
      each(function (m) { return m.id === id ? (u = m.read ? 0 : 1, null) : m; });
      return u;
    }
    // A read or delete done here (d.l) or in another tab of this browser.
    function applyLocal(d) {
      var s = {}, i;
      quiet = now() + 3000; // the poll it wakes has nothing to refresh
      for (i = 0; isArray(d.i) && i < d.i.length; i++) { s['$' + d.i[i]] = 1; }
      each(function (m) { return !m.read && (d.a || s['$' + m.id]) ? copy(m, true) : m; });
      if (d.d != null) { drop(d.d); }
      setUnread(d.u, d.b);
      if (d.l) { d.l = 0; relay(d); }
    }
    // Re-reads the loaded items' read flags from history; drops those it no longer has.
    function refreshSoon() {
      if (refreshTimer || closed || !items.length) { return; }
      refreshTimer = later(function () {
        var had = {}, i;
        for (i = 0; i < items.length; i++) { had['$' + items[i].id] = 1; }
        api('GET', '/v1/messages', {limit: Math.min(100, items.length)}, undefined, function (e, d) {
          refreshTimer = null;
          if (e || closed) { return; }
          var got = {}, list = d.messages || [], edge = d.next && list.length ? list[list.length - 1] : null;
          for (i = 0; i < list.length; i++) { got['$' + list[i].id] = list[i]; }
          each(function (m) {
            var g = got['$' + m.id];
            if (g) { return !g.read === !m.read ? m : copy(m, g.read); }
            return had['$' + m.id] && (!edge || newer(m, edge)) ? null : m;
          });
          setUnread(d.unread, d.unread_by_type);
        });
      }, 300);
    }

    // ---- errors and retries -------------------------------------------------
    function schedule(fn, ms) {
      clearTimeout(retryTimer);
      retryFn = fn;
      retryTimer = later(function () { retryTimer = retryFn = null; fn(); }, ms);
    }
    function retryNow() {
      var fn = retryFn;
      if (fn) { clearTimeout(retryTimer); retryTimer = retryFn = null; fn(); }
    }
    // A background request (history, poll) failed; retry decides what runs next.
    function failed(e, retry) {
      if (closed) { return; }
      if (e.status === 401) { return reauth(e, retry); }
      if (e.status === 400 && e.error === 'bad_cursor') {
        dropCursor();
        return loadHistory(poll);
      }
      if (e.status === 400 && e.error === 'bad_timeout' && timeout > 1) {
        timeout = Math.min(25, Math.floor(timeout / 2));
        return retry();
      }
      if (e.status === 400 || e.status === 403) { return stop(e); }
      var d = Math.random() * Math.min(CAP_MS, BASE_MS * Math.pow(2, Math.min(attempt++, 10)));
      if (e.retryAfter) { d = Math.max(d, e.retryAfter * 1000); }
      e.retrying = true;
      e.retryIn = Math.round(d);
      setOk(false);
      if (leader) { relay({t: 'e', e: e}); }
      call(o.onError, e);
      schedule(retry, d);
    }
    function reauth(e, retry) {
      var old = token;
      if (typeof o.getToken !== 'function' || refreshed) { return stop(e); }
      refreshed = true;
      e.retrying = true;
      call(o.onError, e);
      o.getToken(function (t) {
        if (closed) { return; }
        if (!t || t === old) {
          return stop(fail(401, e.error, e.message));
        }
        token = t;
        retry();
      });
    }
    function succeeded() { attempt = 0; refreshed = false; setOk(true); }

    // ---- history and polling -------------------------------------------------
    // Loads the newest messages and delivers them oldest first; extra (poll
    // messages of a reset) go first when the history does not hold them.
    function loadHistory(done, extra) {
      var after = function (e, d) {
        if (closed) { return; }
        if (e) { return failed(e, function () { loadHistory(done, extra); }); }
        succeeded();
        var list = (d.messages || []).slice().reverse(), ids = {}, pre = [], i;
        for (i = 0; i < list.length; i++) { ids['$' + list[i].id] = 1; }
        for (i = 0; extra && i < extra.length; i++) {
          if (!ids['$' + extra[i].id]) { pre.push(extra[i]); }
        }
        batch(pre.concat(list), d.cursor, d.unread, d.unread_by_type, null, limit > 0 ? d.next != null : true);
        done();
      };
      if (limit > 0) { api('GET', '/v1/messages', {limit: limit}, undefined, after); }
      else { api('GET', '/v1/unread', null, undefined, after); }
    }

    // ---- proxies that cut long polls (see the header) ------------------------
    function learnt() {
      var l = wstore ? sget(wstore, WK) : mem;
      return l && l.w >= CUT_S && l.w < timeout ? l : null;
    }
    function learn(w) {
      mem = w ? {w: w, p: now() + PROBE_MS} : null;
      if (wstore) { sset(wstore, WK, mem); }
      changed();
    }
    function plannedWait() {
      var l = learnt();
      return l && now() < l.p ? l.w : timeout;
    }
    // A poll that asked for `asked` seconds failed with e after `took`
    // seconds: true when that is a proxy's cut, now accounted for.
    function wasCut(e, asked, took) {
      var l = learnt(), i;
      if (!(e.status === 502 || e.status === 504 || e.error === 'network') ||
          took < CUT_S || took > asked - 1 || ++cutRun > CUT_RUN) { return false; }
      if (l && asked > l.w) { // a probe was cut: the proxy is still there
        learn(Math.max(CUT_S, Math.floor(took * 0.8)));
        return true;
      }
      for (i = 0; i < cuts.length; i++) {
        if (Math.abs(cuts[i] - took) <= Math.max(2, took / 5)) {
          learn(Math.max(CUT_S, Math.floor(Math.min(took, cuts[i]) * 0.8)));
          cuts = [];
          return true;
        }
      }
      cuts.push(took);
      if (cuts.length > 3) { cuts.shift(); }
      return true;
    }

    function poll() {
      if (closed || (shared && !leader) || pollReq) { return; }
      // After a failure, ask with timeout=0 first so recovery shows at once.
      var t0 = now(), before = unread, wait = attempt ? 0 : plannedWait();
      pollReq = request('GET', url('/v1/poll', {cursor: cur, timeout: wait, _: t0}), token, undefined,
        (wait + 10) * 1000, function (e, d) {
          pollReq = null;
          if (closed || (shared && !leader)) { return; }
          var took = (now() - t0) / 1000, list;
          if (e) { return wasCut(e, wait, took) ? poll() : failed(e, poll); }
          succeeded();
          cutRun = 0;
          list = d.messages || [];
          // A probe that lasted its whole wait: whatever cut polls has gone.
          if (wait === timeout && took >= wait - 1 && learnt()) { learn(0); }
          if (d.reset) {
            if (leader) { relay({t: 'r'}); }
            forget();
            each(function () { return null; });
            call(o.onReset);
            dropCursor();
            return loadHistory(poll, list);
          }
          batch(list, d.cursor, d.unread, d.unread_by_type, d.revoked, null,
            !list.length && !(d.revoked && d.revoked.length) && took >= 1 && took < wait - 1 && now() > quiet);
          // A server or proxy that answers at once with nothing new must not spin us.
          if (wait && !list.length && !(d.revoked && d.revoked.length) && !d.more && d.unread === before &&
              now() - t0 < 1000) {
            schedule(poll, 1000);
          } else {
            poll();
          }
        });
    }
    function stopPoll() {
      if (pollReq) { pollReq.abort(); pollReq = null; }
      clearTimeout(retryTimer);
      retryTimer = retryFn = null;
    }

    // ---- tab sharing ----------------------------------------------------------
    function relay(d) {
      if (!shared) { return; }
      if (chan) {
        try { chan.postMessage(d); } catch (e) { /* closed */ }
      } else {
        sset(local, BK, {s: tabId, n: ++seq, d: d});
      }
    }
    function onBus(d) {
      if (closed || !d) { return; }
      if (pending) { pending.push(d); return; }
      if (d.t === 'm') {
        if (leader) { deliver(d.m); revoke(d.v); } else { batch(d.m, d.c, d.u, d.b, d.v, d.h, d.w); setOk(true); }
      } else if (d.t === 'x') {
        applyLocal(d);
      } else if (d.t === 'r') {
        if (!leader) { forget(); each(function () { return null; }); call(o.onReset); }
      } else if (d.t === 'e') {
        if (!leader) { setOk(false); call(o.onError, d.e); }
      } else if (d.t === 'k') {
        if (!leader) { setOk(d.v); }
      } else if (d.t === 'b') {
        if (!leader) { later(tryAcquire, Math.random() * 100); }
      }
    }
    function onStorage(ev) {
      if (!chan && ev && ev.key === BK && ev.newValue) {
        var w = null;
        try { w = JSON.parse(ev.newValue); } catch (e) { /* ignore */ }
        if (w && w.s !== tabId) { onBus(w.d); }
      }
    }
    function writeLease(exp) {
      sset(local, LK, {id: tabId, exp: exp || now() + LEASE_MS, c: cur});
    }
    // Extends our lease, or steps down when another tab took it (we were frozen).
    function renew() {
      var l = sget(local, LK);
      if (l && l.id !== tabId && l.exp > now()) { stepDown(); return false; }
      writeLease();
      return true;
    }
    function tick() {
      if (closed || acquiring) { return; }
      var l = sget(local, LK), t = now();
      if (leader) {
        renew();
      } else if (!l || !(l.exp > t) || l.id === tabId) {
        tryAcquire();
      } else {
        setRole('follower');
      }
    }
    function tryAcquire() {
      if (closed || leader || acquiring || pending) { return; }
      var l = sget(local, LK), t = now(), prev;
      if (l && l.exp > t && l.id !== tabId) { return setRole('follower'); }
      // Continue from the cursor of a recent leader so its followers miss nothing.
      prev = l && l.c && l.exp > t - FRESH_MS ? l.c : null;
      if (!sset(local, LK, {id: tabId, exp: t + LEASE_MS, c: prev || cur})) {
        // localStorage refuses writes (full?): poll on our own.
        shared = false;
        clearInterval(tickTimer);
        setRole('single');
        return poll();
      }
      acquiring = true;
      later(function () {
        acquiring = false;
        if (closed) { return; }
        var m = sget(local, LK);
        if (m && m.id === tabId) {
          leader = true;
          if (prev) { setCursor(prev); }
          writeLease();
          setRole('leader');
          if (cur) { poll(); } else { loadHistory(poll); }
        } else {
          setRole('follower');
        }
      }, SETTLE_MS + Math.random() * 50);
    }
    function stepDown() {
      leader = false;
      stopPoll();
      setRole('follower');
    }
    // The page goes away (or into the back/forward cache): hand over at once.
    function resign() {
      if (leader) {
        leader = false;
        stopPoll();
        writeLease(now());
        relay({t: 'b'});
      }
    }

    // ---- life cycle -------------------------------------------------------------
    function ready() {
      var q = pending, i;
      pending = null;
      for (i = 0; q && i < q.length; i++) { onBus(q[i]); }
      if (shared) {
        tick();
        tickTimer = setInterval(tick, TICK_MS);
      } else {
        setRole('single');
        poll();
      }
    }
    function start(t) {
      if (closed) { return; }
      key = 'pollbox:' + (o.storageKey ? o.storageKey + ':' : '') + hash(base + '|' + subject(t));
      CK = key + ':cursor';
      LK = key + ':lease';
      BK = key + ':bus';
      session = store('sessionStorage');
      local = o.shared === false ? null : store('localStorage');
      shared = !!local;
      cur = sget(session, CK);
      if (shared) {
        pending = [];
        if (G.BroadcastChannel) {
          try {
            chan = new G.BroadcastChannel(key);
            chan.onmessage = function (ev) { onBus(ev.data); };
          } catch (e) { chan = null; }
        }
        on(G, 'storage', onStorage);
        on(G, 'pagehide', resign);
        on(G, 'beforeunload', resign);
      }
      on(G, 'online', retryNow);
      if (cur) {
        // A reload: the history fills the items, onMessage gets what is new since the cursor.
        api('GET', limit > 0 ? '/v1/messages' : '/v1/unread', limit > 0 ? {limit: limit} : null, undefined,
          function (e, d) {
            if (e || closed) { return; }
            var list = (d.messages || []).slice().reverse();
            setOk(true); // the server answers: connected, also before the first poll does
            add(list);
            if (limit > 0) { setMore(d.next != null); }
            setUnread(d.unread, d.unread_by_type);
          });
        ready();
      } else {
        loadHistory(ready);
      }
    }
    function stop(err) {
      if (closed) { return; }
      resign();
      closed = true;
      stopPoll();
      clearInterval(tickTimer);
      if (chan) { try { chan.close(); } catch (e) { /* ignore */ } chan = null; }
      on(G, 'storage', onStorage, 1);
      on(G, 'pagehide', resign, 1);
      on(G, 'beforeunload', resign, 1);
      on(G, 'online', retryNow, 1);
      role = 'stopped';
      changed();
      emitState();
      if (err) { err.retrying = false; call(o.onError, err); }
    }

    withToken(start);
    setTimeout(function () { booting = false; if (bootState) { emitState(); } }, 0);

    return {
      history: function (q, cb) {
        if (typeof q === 'function') { cb = q; q = null; }
        api('GET', '/v1/messages', q || {}, undefined, cb);
      },
      markRead: function (ids, cb) {
        ids = isArray(ids) ? ids : [ids];
        api('POST', '/v1/read', null, {ids: ids}, function (e, d) {
          if (!e && d) { applyLocal({t: 'x', l: 1, i: ids, u: d.unread, b: d.unread_by_type}); }
          call(cb, e, d);
        });
      },
      markAllRead: function (cb) {
        api('POST', '/v1/read', null, {all: true}, function (e, d) {
          if (!e && d) { applyLocal({t: 'x', l: 1, a: 1, u: d.unread, b: d.unread_by_type}); }
          call(cb, e, d);
        });
      },
      remove: function (id, cb) {
        api('DELETE', '/v1/messages/' + encodeURIComponent(id), null, undefined, function (e, d) {
          if (!e) { applyLocal({t: 'x', l: 1, d: id}); }
          call(cb, e, d);
        });
      },
      loadMore: function (cb) {
        var last = items[items.length - 1];
        api('GET', '/v1/messages', {limit: limit || 20, before: last ? last.id : null}, undefined, function (e, d) {
          if (!e && !closed) {
            add((d.messages || []).slice().reverse());
            setMore(d.next != null);
          }
          call(cb, e, d);
        });
      },
      subscribe: function (fn) {
        subs.push(fn);
        return function () {
          for (var i = 0; i < subs.length; i++) { if (subs[i] === fn) { subs.splice(i, 1); return; } }
        };
      },
      publish: function (body, cb) { api('POST', '/v1/publish', null, body, cb); },
      unread: function (cb) {
        api('GET', '/v1/unread', null, undefined, function (e, d) {
          if (!e && d) { setUnread(d.unread, d.unread_by_type); }
          call(cb, e, d);
        });
      },
      setToken: function (t) { token = t || null; refreshed = false; },
      close: function () { stop(null); },
      isLeader: function () { return !closed && (shared ? leader : role === 'single'); },
      cursor: function () { return cur; },
      state: snapshot
    };
  }

  // The publisher endpoints, for admin pages and scripts; nothing polls.
  function publisher(o) {
    o = o || {};
    var base = String(o.url || '').replace(/\/+$/, ''), token = o.token || null;
    // One request; a 401 asks getToken (when given) for a new token, and tries once more.
    function api(method, path, q, body, cb, again) {
      var go = function (t) {
        request(method, buildURL(base, path, q), t, body, 30000, function (e, d) {
          if (e && e.status === 401 && !again && typeof o.getToken === 'function') {
            token = null;
            return api(method, path, q, body, cb, true);
          }
          call(cb, e, d);
        });
      };
      if (token || typeof o.getToken !== 'function') { return go(token); }
      o.getToken(function (t) { token = t || null; go(token); });
    }
    function id(p) { return encodeURIComponent(p); }
    return {
      publish: function (body, cb) { api('POST', '/v1/publish', null, body, cb); },
      sent: function (q, cb) {
        if (typeof q === 'function') { cb = q; q = null; }
        api('GET', '/v1/sent', q, undefined, cb);
      },
      sentDetail: function (pid, q, cb) {
        if (typeof q === 'function') { cb = q; q = null; }
        api('GET', '/v1/sent/' + id(pid), q, undefined, cb);
      },
      withdraw: function (pid, cb) { api('DELETE', '/v1/publish/' + id(pid), null, undefined, cb); },
      setToken: function (t) { token = t || null; }
    };
  }

  return {version: VERSION, connect: connect, publisher: publisher};
}));
