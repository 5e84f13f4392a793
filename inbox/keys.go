package inbox

import "strings"

// Key layout (prefix defaults to "pollbox:"). Every per-user key carries the
// {<user>} hash tag so that one user's keys share a Redis Cluster slot and a
// single script can touch them atomically.
//
//	<p>inbox:{<user>}      stream: the user's own messages
//	<p>group:{<group>}     stream: messages to a group
//	<p>broadcast           stream: messages to everyone
//	<p>unread:{<user>}     zset: unread inbox entry ids, score = entry ms
//	<p>expiring:{<user>}   zset: inbox entry ids with an expiry, score = expiry ms
//	<p>read:{<user>}       hash: per shared stream ("b", "g.<group>") the entry id read up to
//	<p>seen:{<user>}       zset: shared message ids read one by one, score = entry ms
//	<p>hidden:{<user>}     zset: shared message ids the user deleted, score = entry ms
//	<p>trim:{<user>}       string: trim mark: every trimmed entry is at or below it
//	<p>gtrim:{<group>}, <p>btrim:{<p>broadcast}  the same for group and broadcast streams
//	<p>idem:{<user>}:<sender>:<k>  string: entry id one publisher wrote under idempotency key k (24 h)
//	<p>gidem:{<group>}:<sender>:<k>  same for a group stream
//	<p>bidem:{<p>broadcast}:<sender>:<k>  same for broadcast; the tag is the broadcast key's own
//	                       name so both hash to one slot
//	<p>wake:<key>          pub/sub channel of one stream or read-state key (see
//	                       wakeChannel): payload is the key of the stream that
//	                       grew, or of the read-state hash that changed;
//	<p>wake:{<p>broadcast} for the broadcast stream (SPUBLISH on a cluster)
//	<p>utype:{<user>}      hash: unread inbox entry id → its type (the members of unread)
//	<p>tunread:{<user>}    hash: type → unread inbox count (no fields at 0)
//
// Publish records, under the owner's tag {<o>.<name>} (o is u or k, see Owner):
//
//	<p>pub:{<owner>}:<ms>-<seq>    hash: the record of one publish
//	<p>prcpt:{<owner>}:<ms>-<seq>  hash: recipient (user, g.<group>, b) → entry id
//	<p>sent:{<owner>}              zset: the owner's publishes, member <ms>-<seq>, score created ms
//	<p>pidem:{<owner>}:<k>         string: publish id written under client idempotency key k
//	<p>due                 zset: scheduled publish ids, score = send_at ms (or lease end)
type keys struct{ p string }

func (k keys) inbox(u string) string    { return k.p + "inbox:{" + u + "}" }
func (k keys) group(g string) string    { return k.p + "group:{" + g + "}" }
func (k keys) broadcast() string        { return k.p + "broadcast" }
func (k keys) unread(u string) string   { return k.p + "unread:{" + u + "}" }
func (k keys) expiring(u string) string { return k.p + "expiring:{" + u + "}" }
func (k keys) read(u string) string     { return k.p + "read:{" + u + "}" }
func (k keys) seen(u string) string     { return k.p + "seen:{" + u + "}" }
func (k keys) hidden(u string) string   { return k.p + "hidden:{" + u + "}" }
func (k keys) wake(key string) string   { return wakeChannel(k.p, key) }
func (k keys) utype(u string) string    { return k.p + "utype:{" + u + "}" }
func (k keys) tunread(u string) string  { return k.p + "tunread:{" + u + "}" }

// pub, prcpt, sent and pidem take the owner's tag text ("u.42",
// "k.notice-job", see Owner.tag) and a publish's "<ms>-<seq>".
func (k keys) pub(owner, seq string) string   { return k.p + "pub:{" + owner + "}:" + seq }
func (k keys) prcpt(owner, seq string) string { return k.p + "prcpt:{" + owner + "}:" + seq }
func (k keys) sent(owner string) string       { return k.p + "sent:{" + owner + "}" }
func (k keys) pidem(owner, key string) string { return k.p + "pidem:{" + owner + "}:" + key }
func (k keys) due() string                    { return k.p + "due" }

// inboxUser returns the user whose inbox key k is.
func (k keys) inboxUser(key string) (string, bool) { return k.userOf(key, "inbox:{") }

// readUser returns the user whose read-up-to key k is.
func (k keys) readUser(key string) (string, bool) { return k.userOf(key, "read:{") }

func (k keys) userOf(key, kind string) (string, bool) {
	rest, ok := strings.CutPrefix(key, k.p+kind)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}")
}

// trim returns the key of stream s's trim mark, in s's slot.
func (k keys) trim(s stream, user string) string {
	switch s.kind {
	case 'u':
		return k.p + "trim:{" + user + "}"
	case 'g':
		return k.p + "gtrim:{" + s.group + "}"
	}
	return k.p + "btrim:{" + k.broadcast() + "}"
}

// idem returns the idempotency key for stream s, in s's slot.
func (k keys) idem(s stream, user, key string) string {
	switch s.kind {
	case 'u':
		return k.p + "idem:{" + user + "}:" + key
	case 'g':
		return k.p + "gidem:{" + s.group + "}:" + key
	}
	return k.p + "bidem:{" + k.broadcast() + "}:" + key
}

func (k keys) userStream(u string) stream { return stream{name: "u", key: k.inbox(u), kind: 'u'} }
func (k keys) broadcastStream() stream    { return stream{name: "b", key: k.broadcast(), kind: 'b'} }
func (k keys) groupStream(g string) stream {
	return stream{name: "g." + g, key: k.group(g), group: g, kind: 'g'}
}

// streamsFor lists a reader's streams: inbox, broadcast, then groups in
// the (sorted) order given.
func streamsFor(prefix, user string, groups []string) []stream {
	k := keys{prefix}
	ss := make([]stream, 0, 2+len(groups))
	ss = append(ss, k.userStream(user), k.broadcastStream())
	for _, g := range groups {
		ss = append(ss, k.groupStream(g))
	}
	return ss
}
