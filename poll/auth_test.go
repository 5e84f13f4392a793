package poll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var jwtHS256 = jwt.SigningMethodHS256

func userClaims(sub any) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
}

// outcome renders an Authenticate result as "status code" ("200" for success).
func outcome(err error) string {
	if err == nil {
		return "200"
	}
	rec := httptest.NewRecorder()
	writeError(rec, httptest.NewRequest("GET", "/", nil), err)
	var e struct{ Error string }
	json.Unmarshal(rec.Body.Bytes(), &e)
	return http.StatusText(rec.Code) + " " + e.Error
}

func authToken(t *testing.T, a *Authenticator, tok string) (Principal, error) {
	t.Helper()
	r := httptest.NewRequest("GET", "/v1/unread", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return a.Authenticate(r)
}

func mustAuthenticator(t *testing.T, ac AuthConfig) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(ac)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// unsigned builds a token with the given header and claims and no signature.
func unsigned(header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "."
}

func TestAuthTokens(t *testing.T) {
	t.Parallel()
	hmacKey := []byte("raw secret of the test, long enough")
	smpeSecret := base64.StdEncoding.EncodeToString([]byte("smpe-admin base64 secret that is 64 bytes long.................."))
	smpeKey, _ := base64.StdEncoding.DecodeString(smpeSecret)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	hs := mustAuthenticator(t, AuthConfig{HMACSecret: hmacKey, Algorithms: []string{"HS256"}, PublisherGroups: []string{"admin"}})
	smpe := mustAuthenticator(t, AuthConfig{HMACSecret: smpeKey, Algorithms: []string{"HS512"}, GroupsClaim: "auth", PublisherGroups: []string{"admin"}})
	rs := mustAuthenticator(t, AuthConfig{PublicKey: &rsaKey.PublicKey, Algorithms: []string{"RS256"}})
	es := mustAuthenticator(t, AuthConfig{PublicKey: &ecKey.PublicKey, Algorithms: []string{"ES256"}})
	mixed := mustAuthenticator(t, AuthConfig{HMACSecret: hmacKey, PublicKey: &rsaKey.PublicKey, Algorithms: []string{"HS256", "RS256"}})
	leeway := mustAuthenticator(t, AuthConfig{HMACSecret: hmacKey, Algorithms: []string{"HS256"}, Leeway: 30 * time.Second})
	uid := mustAuthenticator(t, AuthConfig{HMACSecret: hmacKey, Algorithms: []string{"HS256"}, UserClaim: "uid"})

	now := time.Now()
	hsTok := func(c jwt.MapClaims) string { return signHS(t, jwt.SigningMethodHS256, hmacKey, c) }
	manyGroups := make([]string, 129)
	for i := range manyGroups {
		manyGroups[i] = "g" + strconv.Itoa(i)
	}

	cases := []struct {
		name   string
		a      *Authenticator
		tok    string
		want   string   // outcome
		user   string   // when accepted
		groups []string // when accepted
		pub    bool
	}{
		{"HS256 raw secret", hs, hsTok(jwt.MapClaims{"sub": "alice", "groups": []string{"ops", "admin"}}), "200", "alice", []string{"ops", "admin"}, true},
		{"groups as a comma string", hs, hsTok(jwt.MapClaims{"sub": "alice", "groups": " ops, user:list ,,"}), "200", "alice", []string{"ops", "user:list"}, false},
		{"no groups claim", hs, hsTok(jwt.MapClaims{"sub": "alice"}), "200", "alice", nil, false},
		{"numeric sub", hs, hsTok(jwt.MapClaims{"sub": 42}), "200", "42", nil, false},
		{"fractional sub", hs, hsTok(jwt.MapClaims{"sub": 4.5}), "Unauthorized unauthorized", "", nil, false},
		{"boolean sub", hs, hsTok(jwt.MapClaims{"sub": true}), "Unauthorized unauthorized", "", nil, false},
		{"groups of the wrong type", hs, hsTok(jwt.MapClaims{"sub": "a", "groups": 7}), "Unauthorized unauthorized", "", nil, false},
		{"a group that is a number", hs, hsTok(jwt.MapClaims{"sub": "a", "groups": []any{"ops", 7}}), "Unauthorized unauthorized", "", nil, false},
		{"too many groups", hs, hsTok(jwt.MapClaims{"sub": "a", "groups": manyGroups}), "Bad Request bad_request", "", nil, false},
		{"smpe-admin HS512 token", smpe, signHS(t, jwt.SigningMethodHS512, smpeKey,
			jwt.MapClaims{"sub": "1", "auth": "admin,user:list", "jti": "b4e1"}), "200", "1", []string{"admin", "user:list"}, true},
		{"HS256 where only HS512 is pinned", smpe, signHS(t, jwt.SigningMethodHS256, smpeKey, jwt.MapClaims{"sub": "1"}), "Unauthorized unauthorized", "", nil, false},
		{"HS512 signed with the undecoded secret", smpe, signHS(t, jwt.SigningMethodHS512, []byte(smpeSecret), jwt.MapClaims{"sub": "1"}), "Unauthorized unauthorized", "", nil, false},
		{"RS256", rs, signHS(t, jwt.SigningMethodRS256, rsaKey, userClaims("r1")), "200", "r1", nil, false},
		{"RS256 by another key", rs, signHS(t, jwt.SigningMethodRS256, otherRSA, userClaims("r1")), "Unauthorized unauthorized", "", nil, false},
		{"RS512 where RS256 is pinned", rs, signHS(t, jwt.SigningMethodRS512, rsaKey, userClaims("r1")), "Unauthorized unauthorized", "", nil, false},
		{"ES256", es, signHS(t, jwt.SigningMethodES256, ecKey, userClaims("e1")), "200", "e1", nil, false},
		{"RS256 where ES256 is pinned", es, signHS(t, jwt.SigningMethodRS256, rsaKey, userClaims("e1")), "Unauthorized unauthorized", "", nil, false},
		{"HS256 signed with the RSA public key PEM", rs, signHS(t, jwt.SigningMethodHS256, rsaPEM, userClaims("mallory")), "Unauthorized unauthorized", "", nil, false},
		{"HS256 signed with the PEM when HS256 is allowed", mixed, signHS(t, jwt.SigningMethodHS256, rsaPEM, userClaims("mallory")), "Unauthorized unauthorized", "", nil, false},
		{"HS256 signed with the DER", mixed, signHS(t, jwt.SigningMethodHS256, der, userClaims("mallory")), "Unauthorized unauthorized", "", nil, false},
		{"mixed config, RS256", mixed, signHS(t, jwt.SigningMethodRS256, rsaKey, userClaims("r2")), "200", "r2", nil, false},
		{"alg none", hs, signHS(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, userClaims("mallory")), "Unauthorized unauthorized", "", nil, false},
		{"alg None", hs, unsigned(`{"alg":"None","typ":"JWT"}`, `{"sub":"mallory"}`), "Unauthorized unauthorized", "", nil, false},
		{"alg none on RS256", rs, unsigned(`{"alg":"none"}`, `{"sub":"mallory"}`), "Unauthorized unauthorized", "", nil, false},
		{"no alg", hs, unsigned(`{"typ":"JWT"}`, `{"sub":"mallory"}`), "Unauthorized unauthorized", "", nil, false},
		{"exp in the past", hs, hsTok(jwt.MapClaims{"sub": "a", "exp": now.Add(-time.Minute).Unix()}), "Unauthorized unauthorized", "", nil, false},
		{"exp as a string", hs, hsTok(jwt.MapClaims{"sub": "a", "exp": "tomorrow"}), "Unauthorized unauthorized", "", nil, false},
		{"nbf in the future", hs, hsTok(jwt.MapClaims{"sub": "a", "nbf": now.Add(time.Minute).Unix()}), "Unauthorized unauthorized", "", nil, false},
		{"exp just past, within leeway", leeway, hsTok(jwt.MapClaims{"sub": "a", "exp": now.Add(-10 * time.Second).Unix()}), "200", "a", nil, false},
		{"exp past the leeway", leeway, hsTok(jwt.MapClaims{"sub": "a", "exp": now.Add(-time.Minute).Unix()}), "Unauthorized unauthorized", "", nil, false},
		{"custom user claim", uid, hsTok(jwt.MapClaims{"sub": "ignored", "uid": 7}), "200", "7", nil, false},
		{"custom user claim missing", uid, hsTok(jwt.MapClaims{"sub": "alice"}), "Unauthorized unauthorized", "", nil, false},
		{"tampered payload", hs, tamper(hsTok(jwt.MapClaims{"sub": "alice"})), "Unauthorized unauthorized", "", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := authToken(t, c.a, c.tok)
			if got := outcome(err); got != c.want {
				t.Fatalf("outcome %q (%v), want %q", got, err, c.want)
			}
			if err != nil {
				return
			}
			if p.User != c.user || p.Sender != c.user || p.Publisher != c.pub || !reflect.DeepEqual(p.Groups, c.groups) {
				t.Fatalf("principal %+v, want user %q groups %v publisher %v", p, c.user, c.groups, c.pub)
			}
		})
	}
}

// tamper swaps the payload for one naming another user, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","groups":["admin"]}`))
	return strings.Join(parts, ".")
}

func TestAuthenticatorConfig(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		name string
		ac   AuthConfig
	}{
		{"no algorithms", AuthConfig{HMACSecret: []byte("s")}},
		{"HS256 without a secret", AuthConfig{Algorithms: []string{"HS256"}}},
		{"RS256 without a key", AuthConfig{HMACSecret: []byte("s"), Algorithms: []string{"RS256"}}},
		{"none", AuthConfig{HMACSecret: []byte("s"), Algorithms: []string{"none"}}},
		{"unknown", AuthConfig{PublicKey: &key.PublicKey, Algorithms: []string{"HS1"}}},
	} {
		if _, err := NewAuthenticator(c.ac); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// TestAuthHTTP covers how tokens arrive and who may do what.
func TestAuthHTTP(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	h, _, secret := newHandler(t, Config{}, AuthConfig{APIKeys: []APIKey{
		{Name: "billing", Secret: apiKeySecret}, {Name: "crm", Secret: "k-crm-0123456789abcdef"}}}, store)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	alice := signHS(t, jwtHS256, secret, userClaims("alice"))
	boss := signHS(t, jwtHS256, secret, jwt.MapClaims{"sub": "boss", "groups": "admin"})
	body := `{"to":["alice"],"title":"x"}`

	cases := []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"API key publishes", request{method: "POST", path: "/v1/publish", token: apiKeySecret, body: body}, 201, ""},
		{"second API key publishes", request{method: "POST", path: "/v1/publish", token: "k-crm-0123456789abcdef", body: body}, 201, ""},
		{"publisher token publishes", request{method: "POST", path: "/v1/publish", token: boss, body: body}, 201, ""},
		{"wrong API key", request{method: "POST", path: "/v1/publish", token: apiKeySecret + "x", body: body}, 401, "unauthorized"},
		{"API key prefix", request{method: "POST", path: "/v1/publish", token: apiKeySecret[:10], body: body}, 401, "unauthorized"},
		{"API key on poll", request{method: "GET", path: "/v1/poll?timeout=0", token: apiKeySecret}, 403, "forbidden"},
		{"API key on history", request{method: "GET", path: "/v1/messages", token: apiKeySecret}, 403, "forbidden"},
		{"API key on read", request{method: "POST", path: "/v1/read", token: apiKeySecret, body: `{"all":true}`}, 403, "forbidden"},
		{"user token publishes", request{method: "POST", path: "/v1/publish", token: alice, body: body}, 403, "forbidden"},
		{"lower-case bearer", request{method: "GET", path: "/v1/unread", header: map[string]string{"Authorization": "bearer " + alice}}, 200, ""},
		{"Basic scheme", request{method: "GET", path: "/v1/unread", header: map[string]string{"Authorization": "Basic " + alice}}, 401, "unauthorized"},
		{"bare token", request{method: "GET", path: "/v1/unread", header: map[string]string{"Authorization": alice}}, 401, "unauthorized"},
		{"access_token", request{method: "GET", path: "/v1/unread?access_token=" + alice}, 200, ""},
		{"header wins over access_token", request{method: "GET", path: "/v1/unread?access_token=" + alice, header: map[string]string{"Authorization": "Basic x"}}, 401, "unauthorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv.URL, c.rq)
			if c.code != "" {
				checkError(t, r, c.status, c.code)
			} else if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
		})
	}
	var senders []string
	for _, d := range store.drafts() {
		senders = append(senders, d.Sender)
	}
	if want := []string{"billing", "crm", "boss"}; !reflect.DeepEqual(senders, want) {
		t.Fatalf("senders %v, want %v", senders, want)
	}
}

// A token with an admin group is an admin (and publishes only with a
// publisher group too); API keys are never admins; API-key names that
// cannot name Redis keys are refused when the authenticator is made.
func TestAuthAdmin(t *testing.T) {
	t.Parallel()
	key := []byte("raw secret of the test, long enough")
	a := mustAuthenticator(t, AuthConfig{HMACSecret: key, Algorithms: []string{"HS256"},
		PublisherGroups: []string{"admin", "notice"}, AdminGroups: []string{"admin", "audit"},
		APIKeys: []APIKey{{Name: "admin", Secret: "k-admin-0123456789abcdef"}}})
	for _, c := range []struct {
		groups     string
		pub, admin bool
	}{{"admin", true, true}, {"notice", true, false}, {"audit", false, true}, {"user:list,audit,notice", true, true}, {"", false, false}} {
		p, err := authToken(t, a, signHS(t, jwtHS256, key, jwt.MapClaims{"sub": "u1", "groups": c.groups}))
		if err != nil || p.Publisher != c.pub || p.Admin != c.admin {
			t.Errorf("groups %q: %+v, %v; want publisher %v admin %v", c.groups, p, err, c.pub, c.admin)
		}
	}
	if p, err := authToken(t, a, "k-admin-0123456789abcdef"); err != nil || !p.Publisher || p.Admin || p.Sender != "admin" {
		t.Errorf("API key named admin: %+v, %v; want a publisher that is no admin", p, err)
	}
	for _, name := range []string{"", "a{b}", "a:b", "a b", strings.Repeat("x", 129)} {
		_, err := NewAuthenticator(AuthConfig{HMACSecret: key, Algorithms: []string{"HS256"},
			APIKeys: []APIKey{{Name: name, Secret: "k-0123456789abcdef"}}})
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(name)) {
			t.Errorf("API key name %q: %v, want an error naming it", name, err)
		}
	}
}
