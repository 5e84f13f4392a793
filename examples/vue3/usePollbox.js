// Vue 3: the inbox as a reactive state. In a bundled app,
// `import { shallowRef, onBeforeUnmount } from 'vue'` and export both.
function usePollbox(options) {
  const { shallowRef, onBeforeUnmount } = Vue
  const inbox = Pollbox.connect(options)
  const state = shallowRef(inbox.state()) // a new object on every change
  const stop = inbox.subscribe(() => { state.value = inbox.state() })
  onBeforeUnmount(() => { stop(); inbox.close() })
  return { state, inbox }
}

// Vue.createApp({ components: { PollboxBell }, template: '<pollbox-bell :get-token="…" />' })
const PollboxBell = {
  props: { url: { type: String, default: '' }, getToken: Function },
  setup(props) { return usePollbox({ url: props.url, getToken: props.getToken }) },
  template: `
    <div class="pollbox-bell">
      <span class="badge" v-show="state.unread">{{ state.unread }}</span>
      <button class="mark-all" :disabled="!state.unread" @click="inbox.markAllRead()">Mark all read</button>
      <ul>
        <li v-for="m in state.items" :key="m.id" :data-id="m.id" :class="{ unread: !m.read }"
            @click="m.read || inbox.markRead([m.id])">
          {{ m.title || m.type }} <button class="remove" @click.stop="inbox.remove(m.id)">×</button>
        </li>
      </ul>
      <button v-if="state.hasMore" class="load-more" @click="inbox.loadMore()">Older</button>
    </div>`
}
