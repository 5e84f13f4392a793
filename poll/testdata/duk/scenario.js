// The inbox state of client.js across two tabs sharing one poll (the
// storage-event relay), then a reload: start, history, poll, a message,
// markAllRead, a read and a delete on another device, revoke, loadMore,
// reset, close. Runs after shim.js and client.js.
function msg(id, sec, read) {
  return {id: id, type: 'like', title: id, created_at: '2026-11-30T00:00:' + (sec < 10 ? '0' : '') + sec + '.000Z',
    read: !!read};
}
function ids(st) {
  var s = [], i;
  for (i = 0; i < st.items.length; i++) { s.push(st.items[i].id + (st.items[i].read ? '+' : '')); }
  return s;
}
function page(list, next, unread, cursor) {
  return {messages: list, next: next, unread: unread, unread_by_type: unread ? {like: unread} : {}, cursor: cursor};
}
function pollAnswer(list, unread, cursor, extra) {
  var d = {messages: list, cursor: cursor, unread: unread, unread_by_type: unread ? {like: unread} : {},
    more: false, reset: false, revoked: []}, k;
  for (k in extra || {}) { if (Object.prototype.hasOwnProperty.call(extra, k)) { d[k] = extra[k]; } }
  return d;
}
function client(tab, log) {
  return tab.Pollbox.connect({url: 'http://pb', token: 'tok', historyLimit: 20,
    onMessage: function (m) { log.push('msg ' + m.id); },
    onRevoke: function (id) { log.push('revoke ' + id); },
    onReset: function () { log.push('reset'); },
    onUnread: function (n) { log.push('unread ' + n); },
    onChange: function (st) { log.changes = (log.changes || 0) + 1; log.last = st; }});
}

// 1. A starts fresh: the history fills the state and reaches onMessage.
var A = newTab(), la = [], a = client(A, la), r;
eq(a.state().status, 'connecting', 'A status before any answer');
r = take(A, 'GET', '/v1/messages');
eq(param(r, 'limit'), '20', 'history limit');
answer(r, 200, page([msg('m2', 2), msg('m1', 1)], 'm1', 2, 'c1'));
flush();
var s = a.state();
eq(ids(s), ['m2', 'm1'], 'A items after history');
eq([s.unread, s.unread_by_type, s.hasMore, s.status], [2, {like: 2}, true, 'connected'], 'A state after history');
ok(a.state() === s, 'state() is the same object while nothing changes');
eq(la.changes, 1, 'A onChange calls for one history answer (batched)');
ok(la.last === s, 'onChange gets the snapshot');
eq(la.slice(0, 3), ['msg m1', 'msg m2', 'unread 2'], 'A callbacks after history');

// 2. A leads and polls from the history's cursor; B starts and follows.
advance(400);
r = take(A, 'GET', '/v1/poll');
eq(param(r, 'cursor'), 'c1', 'A polls from the history cursor');
eq(a.state().role, 'leader', 'A role');
var B = newTab(), lb = [], b = client(B, lb);
answer(take(B, 'GET', '/v1/messages'), 200, page([msg('m2', 2), msg('m1', 1)], 'm1', 2, 'c1'));
advance(400);
eq(b.state().role, 'follower', 'B role');
eq(ids(b.state()), ['m2', 'm1'], 'B items after history');

// 3. A message: both tabs, once, newest first; one onChange.
var before = la.changes;
answer(r, 200, pollAnswer([msg('m3', 3)], 3, 'c2'));
flush();
eq(ids(a.state()), ['m3', 'm2', 'm1'], 'A items after a message');
eq(ids(b.state()), ['m3', 'm2', 'm1'], 'B items after the relayed message');
eq(la.changes, before + 1, 'A onChange calls for one poll answer');
eq(b.state().unread, 3, 'B unread');
ok(lb.join().indexOf('msg m3') >= 0, 'B onMessage m3');
r = take(A, 'GET', '/v1/poll');
eq(param(r, 'cursor'), 'c2', 'A polls on');

// 4. markAllRead in B: both tabs show every item read; the poll it wakes asks nothing more.
var done = null;
b.markAllRead(function (e) { done = e || 'ok'; });
var rr = take(B, 'POST', '/v1/read');
eq(JSON.parse(rr.body), {all: true}, 'markAllRead body');
answer(rr, 200, {unread: 0, unread_by_type: {}});
flush();
eq(done, 'ok', 'markAllRead callback');
eq(ids(b.state()), ['m3+', 'm2+', 'm1+'], 'B items after markAllRead');
eq(ids(a.state()), ['m3+', 'm2+', 'm1+'], 'A items after B marked all read');
eq([a.state().unread, a.state().unread_by_type], [0, {}], 'A unread after B marked all read');
advance(1500);
answer(r, 200, pollAnswer([], 0, 'c2'));
advance(1000);
eq(pendingList(A), 'GET http://pb/v1/poll?cursor=c2&timeout=25&_=' + param(A.pending[0], '_'),
  'A after the woken poll: only the next poll');
eq(pendingList(B), 'none', 'B after the woken poll');

// 5. A new message, then another device reads it and deletes m2: the unread count
//    drops with no local cause, so each tab refreshes its items from history.
answer(take(A, 'GET', '/v1/poll'), 200, pollAnswer([msg('m4', 4)], 1, 'c3'));
flush();
eq(ids(b.state()), ['m4', 'm3+', 'm2+', 'm1+'], 'B items after m4');
answer(take(A, 'GET', '/v1/poll'), 200, pollAnswer([], 0, 'c3'));
advance(400);
var fresh = page([msg('m4', 4, true), msg('m3', 3, true), msg('m1', 1, true)], null, 0, 'c3');
r = take(A, 'GET', '/v1/messages');
ok(+param(r, 'limit') <= 100 && +param(r, 'limit') >= 4, 'refresh limit ' + param(r, 'limit'));
answer(r, 200, fresh);
answer(take(B, 'GET', '/v1/messages'), 200, fresh);
flush();
eq(ids(a.state()), ['m4+', 'm3+', 'm1+'], 'A items after the other device');
eq(ids(b.state()), ['m4+', 'm3+', 'm1+'], 'B items after the other device');

// 6. Revoke: the item leaves both tabs; onRevoke as before.
answer(take(A, 'GET', '/v1/poll'), 200, pollAnswer([], 0, 'c4', {revoked: ['m3']}));
flush();
eq(ids(a.state()), ['m4+', 'm1+'], 'A items after revoke');
eq(ids(b.state()), ['m4+', 'm1+'], 'B items after revoke');
ok(la.join().indexOf('revoke m3') >= 0 && lb.join().indexOf('revoke m3') >= 0, 'onRevoke in both tabs');

// 7. loadMore pages older history before the oldest item.
var got = null;
a.loadMore(function (e, d) { got = e || d; });
r = take(A, 'GET', '/v1/messages');
eq([param(r, 'before'), param(r, 'limit')], ['m1', '20'], 'loadMore query');
answer(r, 200, page([msg('m0', 0, true)], null, 0, 'c4'));
flush();
eq(ids(a.state()), ['m4+', 'm1+', 'm0+'], 'A items after loadMore');
eq([a.state().hasMore, got.messages.length], [false, 1], 'A after loadMore');

// 7b. A poll woken early with nothing new and no local read or delete: another
//     device deleted something; each tab refreshes its items (m1 and m0 are gone).
advance(2000);
answer(take(A, 'GET', '/v1/poll'), 200, pollAnswer([], 0, 'c4'));
advance(400);
fresh = page([msg('m4', 4, true)], null, 0, 'c4');
answer(take(A, 'GET', '/v1/messages'), 200, fresh);
answer(take(B, 'GET', '/v1/messages'), 200, fresh);
flush();
eq(ids(a.state()), ['m4+'], 'A items after a delete on another device');
eq(ids(b.state()), ['m4+'], 'B items after a delete on another device');

// 7c. A failed poll: both tabs show reconnecting, then connected again.
answer(take(A, 'GET', '/v1/poll'), 503, {error: 'unavailable', message: 'x'});
flush();
eq([a.state().status, b.state().status], ['reconnecting', 'reconnecting'], 'status after a 503');
advance(1100);
r = take(A, 'GET', '/v1/poll');
eq(param(r, 'timeout'), '0', 'the poll after a failure does not wait');
answer(r, 200, pollAnswer([], 0, 'c4'));
flush();
eq([a.state().status, b.state().status], ['connected', 'connected'], 'status after recovery');

// 8. Reset: both tabs clear their items and show the history again.
answer(take(A, 'GET', '/v1/poll'), 200, pollAnswer([msg('m5', 5)], 1, 'c5', {reset: true}));
flush();
eq(a.state().items.length, 0, 'A items right after the reset');
answer(take(A, 'GET', '/v1/messages'), 200, page([msg('m5', 5), msg('m4', 4, true)], 'm4', 1, 'c6'));
flush();
eq(ids(a.state()), ['m5', 'm4+'], 'A items after the reset');
eq(ids(b.state()), ['m5', 'm4+'], 'B items after the reset');
eq([b.state().hasMore, b.state().unread], [true, 1], 'B after the reset');
ok(la.join().indexOf('reset') >= 0 && lb.join().indexOf('reset') >= 0, 'onReset in both tabs');
eq(param(take(A, 'GET', '/v1/poll'), 'cursor'), 'c6', 'A polls from the history cursor after the reset');

// 9. A reloads (its sessionStorage keeps the cursor): the history fills the
//    state without reaching onMessage; live messages after the saved cursor
//    do, once, without a second item.
a.close();
flush();
eq(a.state().status, 'stopped', 'A status after close');
advance(400);
eq(b.state().role, 'leader', 'B leads after A left');
r = take(B, 'GET', '/v1/poll');
eq(param(r, 'cursor'), 'c6', 'B polls from the cursor A left');
var A2 = newTab(A.session), la2 = [], a2 = client(A2, la2);
var h = take(A2, 'GET', '/v1/messages');
answer(h, 200, page([msg('m6', 6), msg('m5', 5), msg('m4', 4, true)], 'm4', 2, 'c7'));
advance(400);
eq(ids(a2.state()), ['m6', 'm5', 'm4+'], 'A2 items after the reload');
eq([a2.state().unread, a2.state().hasMore, a2.state().role], [2, true, 'follower'], 'A2 after the reload');
eq(a2.state().status, 'connected', 'A2 status once the history answered, before any poll');
eq(la2.join().indexOf('msg '), -1, 'A2 onMessage for history after a reload');
answer(r, 200, pollAnswer([msg('m6', 6)], 2, 'c7'));
flush();
eq(ids(a2.state()), ['m6', 'm5', 'm4+'], 'A2 items after the live m6');
eq(la2.join().match(/msg [a-z0-9]+/g), ['msg m6'], 'A2 onMessage after the reload');
eq(ids(b.state()), ['m6', 'm5', 'm4+'], 'B items after m6');

// 10. markRead and remove in A2 show in B; subscribe/unsubscribe.
var calls = 0, unsub = b.subscribe(function () { calls++; });
a2.markRead('m6');
rr = take(A2, 'POST', '/v1/read');
eq(JSON.parse(rr.body), {ids: ['m6']}, 'markRead body');
answer(rr, 200, {unread: 1, unread_by_type: {like: 1}});
a2.remove('m5');
answer(take(A2, 'DELETE', '/v1/messages/m5'), 204, null);
flush();
eq(ids(a2.state()), ['m6+', 'm4+'], 'A2 items after markRead and remove');
eq(ids(b.state()), ['m6+', 'm4+'], 'B items after A2 marked read and removed');
eq(calls, 1, 'subscriber calls');
unsub();
b.close();
a2.close();
flush();
eq(calls, 1, 'subscriber calls after unsubscribe');

// 9. Messages of one millisecond keep the server's order across a page
//    boundary: sequence within the millisecond, then broadcast, groups, inbox.
function tie(id) { return {id: id, type: 'like', title: id, created_at: '2026-11-30T00:00:09.000Z', read: false}; }
var T = newTab(), t9 = T.Pollbox.connect({url: 'http://pb', token: 'tok', historyLimit: 2, shared: false, storageKey: 'tie'});
answer(take(T, 'GET', '/v1/messages'), 200,
  page([tie('u.1796000000000-3'), tie('u.1796000000000-2')], 'u.1796000000000-2', 4, 'c9'));
flush();
t9.loadMore();
answer(take(T, 'GET', '/v1/messages'), 200,
  page([tie('u.1796000000000-1'), tie('g.ops.1796000000000-1'), tie('b.1796000000000-1')], null, 5, 'c9'));
flush();
eq(ids(t9.state()), ['u.1796000000000-3', 'u.1796000000000-2', 'u.1796000000000-1', 'g.ops.1796000000000-1',
  'b.1796000000000-1'], 'one millisecond across pages, in the server order');
t9.close();
flush();
print('PASS scenario');
