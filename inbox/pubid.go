package inbox

import (
	"fmt"
	"strings"
)

// Owner is who made a publish: a user with a publisher group (Kind 'u') or
// an API key (Kind 'k'). The kind keeps a user and a key of the same name
// apart: they never see or withdraw each other's publishes.
type Owner struct {
	Kind byte   // 'u' or 'k'
	Name string // user id or API key name (ValidUser alphabet)
}

// tag is the owner's text in keys and publish ids: "u.<name>" or "k.<name>".
func (o Owner) tag() string { return string(o.Kind) + "." + o.Name }

func (o Owner) valid() bool { return (o.Kind == 'u' || o.Kind == 'k') && ValidUser(o.Name) }

// maxPublishIDLen bounds a publish id: "p.", kind and dot, a name, a dot,
// and two 20-digit numbers joined by '-'.
const maxPublishIDLen = 2 + 2 + MaxNameLen + 1 + 41

// pubID is a parsed publish id "p.<o>.<owner name>.<ms>-<seq>": ms is
// when the publish was made (the store's clock), seq tells apart one
// owner's publishes of the same millisecond. The owner name may contain
// '.', the tail never does, so the last '.' splits.
type pubID struct {
	owner Owner
	at    entryID
}

func (p pubID) String() string { return "p." + p.owner.tag() + "." + p.at.String() }

// seq is the id's part after the owner, the record's key suffix.
func (p pubID) seq() string { return p.at.String() }

// ParsePublishID checks a publish id and returns ErrBadID when it is
// malformed. It does not check that the publish exists.
func ParsePublishID(id string) error {
	_, err := parsePubID(id)
	return err
}

func parsePubID(id string) (pubID, error) {
	if len(id) > maxPublishIDLen {
		return pubID{}, fmt.Errorf("%w: publish id too long", ErrBadID)
	}
	rest, ok := strings.CutPrefix(id, "p.")
	dot := strings.LastIndexByte(rest, '.')
	if !ok || dot < 3 || rest[1] != '.' {
		return pubID{}, fmt.Errorf("%w: publish id %q", ErrBadID, id)
	}
	o := Owner{Kind: rest[0], Name: rest[2:dot]}
	if !o.valid() {
		return pubID{}, fmt.Errorf("%w: publish id %q", ErrBadID, id)
	}
	e, err := parseEntryID(rest[dot+1:])
	if err != nil {
		return pubID{}, fmt.Errorf("%w: publish id: %v", ErrBadID, err)
	}
	return pubID{owner: o, at: e}, nil
}
