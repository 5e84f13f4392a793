// A notification bell on client.js alone: no framework, no build, ES5.
//   <div id="bell"></div>
//   <script src="/client.js"></script> <script src="bell.js"></script>
//   <script>var inbox = pollboxBell(document.getElementById('bell'), {url: '', token: jwt});</script>
function pollboxBell(el, options) {
  el.innerHTML = '<span class="badge" hidden></span> <button class="mark-all">Mark all read</button>' +
    '<ul></ul><button class="load-more" hidden>Older</button>';
  var badge = el.querySelector('.badge'), list = el.querySelector('ul'), more = el.querySelector('.load-more');
  options.onChange = render; // at most once per tick, with the new state
  var inbox = Pollbox.connect(options);
  el.querySelector('.mark-all').onclick = function () { inbox.markAllRead(); };
  more.onclick = function () { inbox.loadMore(); };

  function item(m) {
    var li = document.createElement('li'), x = document.createElement('button');
    li.setAttribute('data-id', m.id);
    li.className = m.read ? '' : 'unread';
    li.appendChild(document.createTextNode((m.title || m.type) + ' '));
    li.onclick = function () { if (!m.read) { inbox.markRead([m.id]); } };
    x.className = 'remove';
    x.textContent = '\u00d7';
    x.onclick = function (e) { e.stopPropagation(); inbox.remove(m.id); };
    li.appendChild(x);
    return li;
  }
  function render(s) {
    badge.textContent = s.unread;
    badge.hidden = !s.unread;
    more.hidden = !s.hasMore;
    list.innerHTML = '';
    for (var i = 0; i < s.items.length; i++) { list.appendChild(item(s.items[i])); }
  }
  render(inbox.state());
  return inbox;
}
