package fooking

import (
	"errors"
	"reflect"
	"testing"
)

// The bus transports have Online too, on top of Client.
type busClient interface {
	Client
	Online(sid string) (bool, error)
}

var (
	_ busClient = (*Redis)(nil)
	_ busClient = (*NATS)(nil)
)

func TestNATSName(t *testing.T) {
	for in, want := range map[string]string{
		"":           "%",
		"room_1-A":   "room_1-A",
		"a.b":        "a%2Eb",
		"*":          "%2A",
		">":          "%3E",
		"with space": "with%20space",
		"100%":       "100%25",
		"salle é":    "salle%20%C3%A9",
		"\x00\xff":   "%00%FF",
	} {
		if got := NATSName(in); got != want {
			t.Errorf("NATSName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseNATSURL(t *testing.T) {
	type parsed struct {
		servers           []string
		user, pass, token string
	}
	good := map[string]parsed{
		"nats://127.0.0.1:4222":     {[]string{"nats://127.0.0.1:4222"}, "", "", ""},
		"nats://a:1,b:2,nats://c:3": {[]string{"nats://a:1", "nats://b:2", "nats://c:3"}, "", "", ""},
		"nats://u:p:w@h:1,h2:2":     {[]string{"nats://h:1", "nats://h2:2"}, "u", "p:w", ""},
		"nats://tok@[::1]:4222":     {[]string{"nats://[::1]:4222"}, "", "", "tok"},
	}
	for url, want := range good {
		s, u, p, tok, err := ParseNATSURL(url)
		if err != nil || !reflect.DeepEqual(parsed{s, u, p, tok}, want) {
			t.Errorf("ParseNATSURL(%q) = %q %q %q %q %v, want %v", url, s, u, p, tok, err, want)
		}
	}
	for _, url := range []string{"redis://h:1", "nats://", "nats://h", "nats://h:0",
		"nats://h:65536", "nats://@h:1", "nats://h:1,", "nats://h:1/x", "nats://:1"} {
		if _, _, _, _, err := ParseNATSURL(url); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ParseNATSURL(%q): %v, want an invalid argument", url, err)
		}
	}
}

func TestNATSPrefix(t *testing.T) {
	for _, p := range []string{"", "fooking:", "a.b.", "x-y_z"} {
		if err := checkNATSPrefix(p); err != nil {
			t.Errorf("checkNATSPrefix(%q): %v", p, err)
		}
	}
	for _, p := range []string{".a", "a..b", "a*", "a>", "a b", "a\x7f"} {
		if err := checkNATSPrefix(p); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("checkNATSPrefix(%q): %v, want an invalid argument", p, err)
		}
	}
}

func TestAnswerChecks(t *testing.T) {
	count := Encode(TypeChCount, nil, []byte{0, 0, 0, 7})
	typ, slen, dlen, err := answerHeader(TypeChCount, count, 4)
	if err != nil || typ != TypeChCount || slen != 0 || dlen != 4 {
		t.Fatalf("answerHeader: %d %d %d %v", typ, slen, dlen, err)
	}
	if _, _, _, err := answerHeader(TypeChCount, count, 3); err == nil {
		t.Error("a D over max passed")
	}
	if _, _, _, err := answerHeader(TypeUIDCount, count, 4); err == nil {
		t.Error("another type passed")
	}
	refused := Encode(TypeError, nil, append([]byte{0, TypeChCount}, "no"...))
	var re *RouterError
	if _, err := answerBody(TypeChCount, TypeError, nil, refused[8:]); !errors.As(err, &re) ||
		re.Type != TypeChCount || re.Text != "no" {
		t.Errorf("ERROR answer: %v", err)
	}
	if _, _, _, err := answerHeader(TypeInfo, refused, 100); err == nil {
		t.Error("an ERROR answer to INFO passed")
	}
}
