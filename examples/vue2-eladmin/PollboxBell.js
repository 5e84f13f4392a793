// The navbar bell of an eladmin / smpe-admin front end: Vue 2.6 or 2.7 with
// Element UI. In the project this is src/components/PollboxBell/index.vue
// (template in <template>, `export default` the options); here a global
// component, so that a page with vue.js, Element UI and /client.js can use it.
// In the navbar: <pollbox-bell url="/pollbox" :get-token="pollboxToken" />, with
//   methods: { pollboxToken(cb) { cb(getToken().replace(/^Bearer /, '')) } }
// (getToken from '@/utils/auth'; the stored token starts with 'Bearer ').
Vue.component('pollbox-bell', {
  props: { url: { type: String, default: '' }, getToken: { type: Function, required: true } },
  data() { return { s: { items: [], unread: 0, hasMore: false } } },
  template: `
    <el-popover placement="bottom-end" width="320" trigger="click">
      <div class="pollbox-head">
        <span>Notifications</span>
        <el-button type="text" class="mark-all" :disabled="!s.unread" @click="inbox.markAllRead()">Mark all read</el-button>
      </div>
      <div v-for="m in s.items" :key="m.id" :data-id="m.id" :class="['pollbox-item', { unread: !m.read }]" @click="open(m)">
        <el-tag size="mini" :type="m.level === 'error' ? 'danger' : m.level">{{ m.type }}</el-tag>
        {{ m.title || m.body }}
        <i class="el-icon-close remove" @click.stop="inbox.remove(m.id)" />
      </div>
      <el-button v-if="s.hasMore" type="text" class="load-more" @click="inbox.loadMore()">Older</el-button>
      <el-badge slot="reference" :value="s.unread" :max="99" :hidden="!s.unread">
        <i class="el-icon-bell" />
      </el-badge>
    </el-popover>`,
  created() {
    // A frozen copy: Vue 2 leaves it unobserved, and client.js's own state
    // object is never touched.
    const show = s => { this.s = Object.freeze(Object.assign({}, s)) }
    this.inbox = Pollbox.connect({ url: this.url, getToken: this.getToken, onChange: show })
    show(this.inbox.state())
  },
  methods: {
    open(m) {
      if (!m.read) this.inbox.markRead([m.id])
      if (m.link && this.$router) this.$router.push(m.link)
    }
  },
  beforeDestroy() { this.inbox.close() }
})
