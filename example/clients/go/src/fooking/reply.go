// Reply commands: a FastCGI reply's response headers that the gateway applies
// for the session that sent the request, when it delivers that reply to the
// client (so in the client's request order), and never shows to the client.
// No router connection is needed for them (standard library only).
//
//	Join(h, "a", "b")          X-Fooking-Join: a, b        the session joins channels a and b
//	Leave(h, "a")              X-Fooking-Leave: a          it leaves channel a
//	BindUid(h, "42")           X-Fooking-Bind-Uid: 42      binds uid 42
//	UnbindUid(h)               X-Fooking-Unbind-Uid: 1     unbinds it
//	SetSession(h, data)        X-Fooking-Session: <data>   replaces the session data ("" clears it)
//	Publish(h, "room")         X-Fooking-Publish: room     the body goes to the members of room
//	Broadcast(h)               X-Fooking-Broadcast: 1      the body goes to every client
//	ExcludeSelf(h)             X-Fooking-Exclude-Self: 1   with Publish/Broadcast: not to the requester
//	CloseClient(h, 4001, "x")  X-Fooking-Close: 4001 x     after this reply, close the client
//
// Whatever order the headers come in (net/http writes them sorted by name),
// the gateway applies one reply as: 1) Join, BindUid / UnbindUid, SetSession,
// in the order given; 2) the body (to the requester, or published /
// broadcast: with Publish the requester gets it iff it is a member of one of
// the channels at that point, with Broadcast always, unless ExcludeSelf); 3)
// Leave; 4) CloseClient. So Join + Publish of the same channel reaches the new
// member too, and Publish + Leave still reaches the leaver. The session data
// arrives with every later request of the session as the param SESSION
// (FASTCGI_PREFIX = "HTTP_": the request header "Session"), the close event
// (EVENT=2) included; uids, memberships and data set this way are what the
// router's queries (ChMembers, ChSessions, GetSession, ...) see. A command the
// gateway finds malformed is logged and skipped; the rest of the reply is
// still delivered.
//
// Each function adds one header line to h (h.Add: several calls add up); call
// them on w.Header() before the first w.Write or w.WriteHeader. Arguments are
// checked first, and a bad one is an error matching ErrInvalidArgument (h is
// left as it was): a channel not 1..255 bytes or with a comma, CR, LF or NUL
// or a blank (space, tab) at either end; a uid not 1..128 bytes or with CR,
// LF, NUL or a blank at either end; session data with CR, LF, NUL or a blank
// at either end, or over MaxSession bytes (the gateway's SESSION_MAX_SIZE,
// 4096 by default, may allow less); a close code other than 1000 and
// 3000..4999; a close reason over 123 bytes, not UTF-8, or with CR, LF, NUL or
// a blank at either end. (A header value's blanks at either end are not part
// of it, so such a value could not arrive as given.)
//
//	func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
//		h := w.Header()
//		fooking.Join(h, "room1")
//		fooking.SetSession(h, `{"name":"Ann"}`)
//		fooking.Publish(h, "room1")
//		w.Write([]byte("Ann joined room1")) // to every member of room1, Ann included
//	}

package fooking

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The reply command headers.
const (
	HeaderJoin        = "X-Fooking-Join"
	HeaderLeave       = "X-Fooking-Leave"
	HeaderBindUid     = "X-Fooking-Bind-Uid"
	HeaderUnbindUid   = "X-Fooking-Unbind-Uid"
	HeaderSession     = "X-Fooking-Session"
	HeaderPublish     = "X-Fooking-Publish"
	HeaderBroadcast   = "X-Fooking-Broadcast"
	HeaderExcludeSelf = "X-Fooking-Exclude-Self"
	HeaderClose       = "X-Fooking-Close"

	MaxCloseReason = 123 // bytes of a WebSocket close reason
)

// Join makes the session join the channels (applied before the body is sent).
func Join(h http.Header, channels ...string) error {
	return addChannels(h, HeaderJoin, "Join", channels)
}

// Leave makes the session leave the channels (applied after the body is sent).
func Leave(h http.Header, channels ...string) error {
	return addChannels(h, HeaderLeave, "Leave", channels)
}

// BindUid binds the session to uid (replacing the uid it had).
func BindUid(h http.Header, uid string) error {
	if len(uid) < 1 || len(uid) > MaxUID {
		return argErrorf("fooking reply: a uid is 1 to %d bytes, got %d", MaxUID, len(uid))
	}
	if err := checkHeaderText("a uid", uid); err != nil {
		return err
	}
	h.Add(HeaderBindUid, uid)
	return nil
}

// UnbindUid unbinds the session's uid.
func UnbindUid(h http.Header) { h.Add(HeaderUnbindUid, "1") }

// SetSession replaces the session data with data ("" clears it).
func SetSession(h http.Header, data string) error {
	if len(data) > MaxSession {
		return argErrorf("fooking reply: session data is at most %d bytes, got %d", MaxSession, len(data))
	}
	if err := checkHeaderText("session data", data); err != nil {
		return err
	}
	h.Add(HeaderSession, data)
	return nil
}

// Publish sends the body to every member of the channels instead of only to
// the requester.
func Publish(h http.Header, channels ...string) error {
	return addChannels(h, HeaderPublish, "Publish", channels)
}

// Broadcast sends the body to every client instead of only to the requester.
func Broadcast(h http.Header) { h.Add(HeaderBroadcast, "1") }

// ExcludeSelf: with Publish or Broadcast, the body does not go to the requester.
func ExcludeSelf(h http.Header) { h.Add(HeaderExcludeSelf, "1") }

// CloseClient makes the gateway close the client after this reply: a
// WebSocket client gets a close frame with code (1000, or 3000..4999) and
// reason (at most 123 bytes of UTF-8, may be empty); other protocols are
// simply closed.
func CloseClient(h http.Header, code int, reason string) error {
	if code != 1000 && (code < 3000 || code > 4999) {
		return argErrorf("fooking reply: a close code is 1000 or 3000 to 4999, got %d", code)
	}
	if len(reason) > MaxCloseReason {
		return argErrorf("fooking reply: a close reason is at most %d bytes, got %d", MaxCloseReason, len(reason))
	}
	if !utf8.ValidString(reason) {
		return argErrorf("fooking reply: a close reason is UTF-8 text")
	}
	if err := checkHeaderText("a close reason", reason); err != nil {
		return err
	}
	v := strconv.Itoa(code)
	if reason != "" {
		v += " " + reason
	}
	h.Add(HeaderClose, v)
	return nil
}

// channelList checks the channels and joins them into one header value ("a, b").
func channelList(channels ...string) (string, error) {
	if len(channels) == 0 {
		return "", argErrorf("fooking reply: at least one channel is needed")
	}
	for _, ch := range channels {
		if err := checkReplyChannel(ch); err != nil {
			return "", err
		}
	}
	return strings.Join(channels, ", "), nil
}

func addChannels(h http.Header, name, what string, channels []string) error {
	if len(channels) == 0 {
		return argErrorf("fooking reply: %s needs at least one channel", what)
	}
	v, err := channelList(channels...)
	if err != nil {
		return err
	}
	h.Add(name, v)
	return nil
}

// checkReplyChannel: 1..255 bytes, no comma, CR, LF or NUL, no blank at either end.
func checkReplyChannel(ch string) error {
	if err := checkChannel(ch); err != nil {
		return err
	}
	if strings.ContainsAny(ch, ",\r\n\x00") {
		return argErrorf("fooking reply: a channel name has no comma, CR, LF or NUL, got %q", ch)
	}
	return checkHeaderText("a channel name", ch)
}

// checkHeaderText: no CR, LF or NUL (they would end the header), no blank at either end.
func checkHeaderText(what, s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return argErrorf("fooking reply: %s has no CR, LF or NUL", what)
	}
	if s != "" && (isBlank(s[0]) || isBlank(s[len(s)-1])) {
		return argErrorf("fooking reply: %s does not begin or end with a blank, got %q", what, s)
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }
