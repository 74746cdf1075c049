package fooking

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestReplyHeaders(t *testing.T) {
	h := http.Header{}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(Join(h, "a", "b c"))
	must(Join(h, "d"))
	must(Leave(h, "a"))
	must(BindUid(h, "42"))
	UnbindUid(h)
	must(SetSession(h, `{"name":"Ann"}`))
	must(SetSession(h, ""))
	must(Publish(h, "room", "other"))
	Broadcast(h)
	ExcludeSelf(h)
	must(CloseClient(h, 4001, "bye now"))
	must(CloseClient(h, 1000, ""))

	want := http.Header{
		"X-Fooking-Join":         {"a, b c", "d"},
		"X-Fooking-Leave":        {"a"},
		"X-Fooking-Bind-Uid":     {"42"},
		"X-Fooking-Unbind-Uid":   {"1"},
		"X-Fooking-Session":      {`{"name":"Ann"}`, ""},
		"X-Fooking-Publish":      {"room, other"},
		"X-Fooking-Broadcast":    {"1"},
		"X-Fooking-Exclude-Self": {"1"},
		"X-Fooking-Close":        {"4001 bye now", "1000"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers:\n got %v\nwant %v", h, want)
	}

	// On the wire (what net/http/fcgi writes): one line per value.
	var b bytes.Buffer
	if err := h.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"X-Fooking-Join: a, b c\r\n", "X-Fooking-Join: d\r\n",
		"X-Fooking-Session: \r\n", "X-Fooking-Close: 4001 bye now\r\n",
		"X-Fooking-Bind-Uid: 42\r\n", "X-Fooking-Exclude-Self: 1\r\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("no %q in %q", line, b.String())
		}
	}
}

func TestReplyLimits(t *testing.T) {
	h := http.Header{}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ok(Join(h, strings.Repeat("c", MaxChannel)))
	ok(Join(h, "x y")) // a blank inside is fine
	ok(BindUid(h, strings.Repeat("u", MaxUID)))
	ok(SetSession(h, strings.Repeat("s", MaxSession)))
	ok(SetSession(h, "é ünïcode {}"))
	ok(CloseClient(h, 3000, ""))
	ok(CloseClient(h, 4999, strings.Repeat("r", MaxCloseReason)))
	ok(CloseClient(h, 4000, "fermé"))
}

func TestReplyBadArguments(t *testing.T) {
	long := strings.Repeat("x", 256)
	cases := []struct {
		name string
		call func(h http.Header) error
		msg  string
	}{
		{"join nothing", func(h http.Header) error { return Join(h) }, "at least one channel"},
		{"leave nothing", func(h http.Header) error { return Leave(h) }, "at least one channel"},
		{"publish nothing", func(h http.Header) error { return Publish(h) }, "at least one channel"},
		{"empty channel", func(h http.Header) error { return Join(h, "a", "") }, "1 to 255 bytes"},
		{"long channel", func(h http.Header) error { return Join(h, long) }, "1 to 255 bytes"},
		{"comma", func(h http.Header) error { return Join(h, "a,b") }, "comma"},
		{"CR", func(h http.Header) error { return Leave(h, "a\rb") }, "CR"},
		{"LF", func(h http.Header) error { return Publish(h, "a\nb") }, "LF"},
		{"NUL", func(h http.Header) error { return Join(h, "a\x00") }, "NUL"},
		{"leading blank", func(h http.Header) error { return Join(h, " a") }, "blank"},
		{"trailing tab", func(h http.Header) error { return Publish(h, "a\t") }, "blank"},
		{"empty uid", func(h http.Header) error { return BindUid(h, "") }, "1 to 128 bytes"},
		{"long uid", func(h http.Header) error { return BindUid(h, long[:129]) }, "1 to 128 bytes"},
		{"uid LF", func(h http.Header) error { return BindUid(h, "a\nb") }, "CR, LF or NUL"},
		{"uid NUL", func(h http.Header) error { return BindUid(h, "a\x00") }, "CR, LF or NUL"},
		{"uid blank", func(h http.Header) error { return BindUid(h, "42 ") }, "blank"},
		{"session CR", func(h http.Header) error { return SetSession(h, "{\r}") }, "CR, LF or NUL"},
		{"session LF", func(h http.Header) error { return SetSession(h, "{\n}") }, "CR, LF or NUL"},
		{"session NUL", func(h http.Header) error { return SetSession(h, "\x00") }, "CR, LF or NUL"},
		{"session blank", func(h http.Header) error { return SetSession(h, " {}") }, "blank"},
		{"session size", func(h http.Header) error { return SetSession(h, strings.Repeat("s", MaxSession+1)) }, "at most 16384"},
		{"code 999", func(h http.Header) error { return CloseClient(h, 999, "") }, "1000 or 3000 to 4999"},
		{"code 1001", func(h http.Header) error { return CloseClient(h, 1001, "") }, "1000 or 3000 to 4999"},
		{"code 2999", func(h http.Header) error { return CloseClient(h, 2999, "") }, "1000 or 3000 to 4999"},
		{"code 5000", func(h http.Header) error { return CloseClient(h, 5000, "") }, "1000 or 3000 to 4999"},
		{"long reason", func(h http.Header) error { return CloseClient(h, 4000, long[:124]) }, "at most 123 bytes"},
		{"reason not UTF-8", func(h http.Header) error { return CloseClient(h, 4000, "\xff") }, "UTF-8"},
		{"reason CR", func(h http.Header) error { return CloseClient(h, 4000, "a\rb") }, "CR, LF or NUL"},
		{"reason LF", func(h http.Header) error { return CloseClient(h, 4000, "a\n") }, "CR, LF or NUL"},
		{"reason blank", func(h http.Header) error { return CloseClient(h, 4000, " a") }, "blank"},
	}
	for _, c := range cases {
		h := http.Header{}
		err := c.call(h)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v does not match ErrInvalidArgument", c.name, err)
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %q does not say %q", c.name, err, c.msg)
		}
		if len(h) != 0 {
			t.Errorf("%s: headers added despite the error: %v", c.name, h)
		}
	}
}
