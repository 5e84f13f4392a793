package poll

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"pollbox/inbox"
)

// APIKey is a named publisher secret.
type APIKey struct{ Name, Secret string }

// SessionChecker tells whether login sessions are still alive (smpe-admin
// keeps one Redis key per token while its user is logged in).
type SessionChecker interface {
	// SessionAlive checks one token, at the start of each request.
	SessionAlive(ctx context.Context, token string) (bool, error)
	// SessionsAlive checks the tokens of all waiting polls at once, in one
	// round however many there are. alive[i] answers tokens[i]; a token
	// whose check failed counts as alive, and err says that some failed.
	SessionsAlive(ctx context.Context, tokens []string) (alive []bool, err error)
}

// AuthConfig configures token verification.
type AuthConfig struct {
	HMACSecret      []byte   // for HS256/384/512
	PublicKey       any      // *rsa.PublicKey or *ecdsa.PublicKey, for RS256/ES256
	Algorithms      []string // accepted "alg" values; nothing else passes
	UserClaim       string   // default "sub"
	GroupsClaim     string   // default "groups"
	PublisherGroups []string
	// AdminGroups may cancel, revoke and inspect any publisher's sends;
	// everyone else only their own. API keys are never admins.
	AdminGroups []string
	APIKeys     []APIKey
	Sessions    SessionChecker // nil: no session check
	Leeway      time.Duration  // clock skew allowed on exp/nbf
}

// Principal is an authenticated caller.
type Principal struct {
	User      string   // "" for API keys
	Groups    []string // from the token
	Publisher bool
	Admin     bool   // a token with an admin group (never an API key)
	Sender    string // user id or API-key name
	Token     string // the raw bearer token (never logged)
}

// Authenticator verifies bearer tokens.
type Authenticator struct {
	cfg    AuthConfig
	parser *jwt.Parser

	// Verified tokens are remembered for a while: a client re-polls with
	// the same token every few seconds, and checking its signature and
	// claims each time is a large share of a poll's CPU cost.
	mu       sync.Mutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	p     Principal
	until time.Time // re-verify after this (never after the token's exp)
}

const (
	verifiedFor = 5 * time.Minute
	maxVerified = 100000
)

// NewAuthenticator checks the configuration and returns an Authenticator.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if len(cfg.Algorithms) == 0 {
		return nil, errors.New("no JWT algorithms configured")
	}
	for _, a := range cfg.Algorithms {
		switch {
		case strings.HasPrefix(a, "HS") && (a == "HS256" || a == "HS384" || a == "HS512"):
			if len(cfg.HMACSecret) == 0 {
				return nil, fmt.Errorf("algorithm %s needs a JWT secret", a)
			}
		case a == "RS256" || a == "RS384" || a == "RS512" || a == "ES256" || a == "ES384" || a == "ES512":
			if cfg.PublicKey == nil {
				return nil, fmt.Errorf("algorithm %s needs a public key", a)
			}
		default:
			return nil, fmt.Errorf("unsupported JWT algorithm %q", a)
		}
	}
	for _, k := range cfg.APIKeys {
		// The name owns the key's publish records: it becomes part of Redis
		// keys and their {hash tag}, so it keeps to the user id alphabet.
		if !inbox.ValidUser(k.Name) {
			return nil, fmt.Errorf("API key name %q: use 1-128 of [A-Za-z0-9_.@-]", k.Name)
		}
	}
	p := jwt.NewParser(jwt.WithValidMethods(cfg.Algorithms), jwt.WithJSONNumber(), jwt.WithLeeway(cfg.Leeway))
	return &Authenticator{cfg: cfg, parser: p, verified: map[string]verifiedToken{}}, nil
}

// bearer extracts the token from the Authorization header or, for clients
// that cannot set headers, the access_token query parameter. An
// access_token that cannot be decoded is a 400, not a missing token: the
// client sent one, and logging in again would not mend its URL.
func bearer(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), nil
		}
		return "", nil
	}
	var err error
	tok := rawQuery(r.URL.RawQuery).value("access_token", &err)
	return tok, err
}

// Authenticate verifies the request's token and returns its principal.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	tok, err := bearer(r)
	if err != nil {
		return Principal{}, err
	}
	if tok == "" {
		return Principal{}, errNoToken
	}
	if len(tok) > 8192 {
		return Principal{}, errBadToken
	}
	if p, ok := a.apiKey(tok); ok {
		return p, nil
	}
	p, err := a.verify(tok)
	if err != nil {
		return Principal{}, err
	}
	if a.cfg.Sessions != nil {
		alive, err := a.cfg.Sessions.SessionAlive(r.Context(), tok)
		if err != nil {
			return Principal{}, err
		}
		if !alive {
			return Principal{}, errSessionExpired
		}
	}
	return p, nil
}

// verify checks a JWT and maps its claims, using the cache of recently
// verified tokens. The session check is not cached: it runs per request.
func (a *Authenticator) verify(tok string) (Principal, error) {
	now := time.Now()
	a.mu.Lock()
	v, ok := a.verified[tok]
	a.mu.Unlock()
	if ok && now.Before(v.until) {
		return v.p, nil
	}
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(tok, claims, a.keyFunc)
	if err != nil {
		return Principal{}, errBadToken
	}
	user, err := claimString(claims[a.cfg.UserClaim])
	if err != nil || user == "" {
		return Principal{}, errBadToken
	}
	if !inbox.ValidUser(user) {
		return Principal{}, badRequest("the token's user id is not a valid pollbox user id")
	}
	groups, err := claimGroups(claims[a.cfg.GroupsClaim])
	if err != nil {
		return Principal{}, errBadToken
	}
	for _, g := range groups {
		if !inbox.ValidGroup(g) {
			return Principal{}, badRequest(fmt.Sprintf("the token's group %q is not a valid pollbox group name", g))
		}
	}
	if len(groups) > inbox.MaxGroups {
		return Principal{}, badRequest(fmt.Sprintf("the token lists more than %d distinct groups", inbox.MaxGroups))
	}
	p := Principal{User: user, Groups: groups, Sender: user, Token: tok}
	for _, g := range groups {
		p.Publisher = p.Publisher || slices.Contains(a.cfg.PublisherGroups, g)
		p.Admin = p.Admin || slices.Contains(a.cfg.AdminGroups, g)
	}
	until := now.Add(verifiedFor)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil && exp.Add(a.cfg.Leeway).Before(until) {
		until = exp.Add(a.cfg.Leeway)
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerified {
		clear(a.verified)
	}
	a.verified[tok] = verifiedToken{p: p, until: until}
	a.mu.Unlock()
	return p, nil
}

// apiKey compares the token against every key in constant time; it does
// not stop at the first match, so timing says nothing about which key.
func (a *Authenticator) apiKey(tok string) (Principal, bool) {
	var found *APIKey
	for i := range a.cfg.APIKeys {
		k := &a.cfg.APIKeys[i]
		if subtle.ConstantTimeCompare([]byte(tok), []byte(k.Secret)) == 1 && found == nil {
			found = k
		}
	}
	if found == nil {
		return Principal{}, false
	}
	return Principal{Publisher: true, Sender: found.Name}, true
}

// keyFunc hands out the key matching the (already pinned) algorithm family,
// so an HMAC token can never be checked against the public key's bytes.
func (a *Authenticator) keyFunc(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(a.cfg.HMACSecret) > 0 {
			return a.cfg.HMACSecret, nil
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA:
		if a.cfg.PublicKey != nil {
			return a.cfg.PublicKey, nil
		}
	}
	return nil, errors.New("no key for algorithm")
}

func claimString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return string(x), nil
		}
	}
	return "", errors.New("claim is not a string or integer")
}

// claimGroups accepts a JSON array of strings or a comma-separated string
// (smpe-admin's "auth" claim is "admin,user:list"). It drops empty entries
// and repeats, so that the cap on groups counts distinct groups, as the
// inbox does.
func claimGroups(v any) ([]string, error) {
	var raw []string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		raw = strings.Split(x, ",")
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("group is not a string")
			}
			raw = append(raw, s)
		}
	default:
		return nil, errors.New("groups claim has the wrong type")
	}
	out := raw[:0]
	seen := make(map[string]bool, len(raw))
	for _, g := range raw {
		if g = strings.TrimSpace(g); g != "" && !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out, nil
}
