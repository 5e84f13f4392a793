// React 18: the inbox as an external store. Connect once per page, outside
// any component (StrictMode runs effects twice; a connection made in one
// would be closed under the component's feet):
//   const inbox = Pollbox.connect({ url: '', getToken: cb => cb(jwt) })
//   ReactDOM.createRoot(el).render(React.createElement(PollboxBell, { inbox }))
function usePollbox(inbox) {
  return React.useSyncExternalStore(inbox.subscribe, inbox.state)
}

function PollboxBell({ inbox }) {
  const s = usePollbox(inbox), h = React.createElement
  return h('div', { className: 'pollbox-bell' },
    h('span', { className: 'badge', hidden: !s.unread }, s.unread),
    h('button', { className: 'mark-all', disabled: !s.unread, onClick: () => inbox.markAllRead() }, 'Mark all read'),
    h('ul', null, s.items.map(m =>
      h('li', { key: m.id, 'data-id': m.id, className: m.read ? '' : 'unread', onClick: () => m.read || inbox.markRead([m.id]) },
        (m.title || m.type) + ' ',
        h('button', { className: 'remove', onClick: e => { e.stopPropagation(); inbox.remove(m.id) } }, '×')))),
    s.hasMore && h('button', { className: 'load-more', onClick: () => inbox.loadMore() }, 'Older'))
}
