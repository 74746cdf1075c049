// gateway.go - the chat example's backend in Go (net/http/fcgi), using the
// fooking client package (example/clients/go).
//
// fooking turns every WebSocket message of a browser into one FastCGI request.
// With FASTCGI_PREFIX = "HTTP_" in the gateway's config, the session id, the
// event (0 message, 1 connect, 2 close) and the session data this backend set
// earlier arrive as the request headers Sessionid, Event and Session; the
// message (JSON, see README.md) is the request body. The response is the
// reply. Reply commands in its headers (fooking.Join, Leave, SetSession,
// Publish, Broadcast: X-Fooking-Join, ...) make the gateway change the session
// and send the body to a channel or to everyone instead of only to this
// client. What one reply cannot carry goes through the fooking router: the
// login notice to the other users, the close notice, and the queries (who is
// logged in, how many, is this session a member). gateway.php implements the
// same protocol for php-fpm.
//
// No database: the user lives in its session data, JSON
// {"name":"alice","since":1700000000,"ch":[2,3]} (name as typed, login time,
// channels joined), which the gateway keeps and sends back with every request,
// the close event included. Logged-in users are the members of the router
// channel "chat-lobby"; channel N is "chat-channel-N". Names and texts are
// HTML-escaped here, in everything sent to browsers.
//
// Build (GOPATH mode; the fooking package's Redis half needs Debian's
// golang-github-gomodule-redigo-dev, which this program does not use):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode:$PWD/example/clients/go \
//	    go build -o chat-gateway example/chat/gateway.go
//
// Run:
//
//	chat-gateway -listen 127.0.0.1:9001 -router 127.0.0.1:9010
//
// ROUTER_SECRET in the environment is presented to the router when set.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf16"

	"fooking"
)

const (
	channels = 5
	nameMax  = 24   // characters
	textMax  = 1000 // characters
	maxBody  = 1 << 16
	lobby    = "chat-lobby"
)

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// esc HTML-escapes user text exactly like gateway.php does.
func esc(s string) string { return escaper.Replace(s) }

// clean turns control characters into spaces, trims, and keeps at most max characters.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > max {
		s = strings.TrimSpace(string(r[:max]))
	}
	return s
}

// msg is one JSON message; keys are emitted sorted, without HTML escaping by the
// encoder (the fields that need it are escaped by esc).
type msg map[string]interface{}

func encode(m msg) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		log.Printf("chat: encoding %v: %v", m, err)
		return nil
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// stamped adds the server's time: ts (Unix seconds) and time ("15:04").
func stamped(m msg) msg {
	now := time.Now()
	m["ts"] = now.Unix()
	m["time"] = now.Format("15:04")
	return m
}

func errorMsg(text string) msg { return msg{"type": "error", "text": esc(text)} }

func channelName(ch int) string { return "chat-channel-" + strconv.Itoa(ch) }

// flexInt accepts 2 or "2" (the original page sent numbers, some clients strings).
type flexInt struct {
	n  int
	ok bool
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	n, err := strconv.Atoi(s)
	if err == nil {
		f.n, f.ok = n, true
	}
	return nil
}

type request struct {
	Type    string  `json:"type"`
	Name    *string `json:"name"`
	Text    *string `json:"text"`
	Channel flexInt `json:"channel"`
}

// user is a logged-in user's session data.
type user struct {
	Name  string `json:"name"`
	Since int64  `json:"since"`
	Ch    []int  `json:"ch"` // channels joined, 1..5, sorted
}

// decodeUser reads the session data; nil when it is not a logged-in user's.
func decodeUser(data string) *user {
	if data == "" {
		return nil
	}
	var u user
	if err := json.Unmarshal([]byte(data), &u); err != nil || u.Name == "" {
		return nil
	}
	u.Ch = channelSet(u.Ch, 0, 0)
	return &u
}

// channelSet: the channels of chs in 1..5, plus add (0: none), without drop
// (0: none), each once, sorted.
func channelSet(chs []int, add, drop int) []int {
	seen := map[int]bool{}
	out := []int{}
	for _, c := range append(append([]int{}, chs...), add) {
		if c >= 1 && c <= channels && c != drop && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Ints(out)
	return out
}

func (u *user) member(ch int) bool {
	for _, c := range u.Ch {
		if c == ch {
			return true
		}
	}
	return false
}

// encodeUser: the session data of u, JSON in plain ASCII (\u escapes), safe in a header.
func encodeUser(u user) string {
	b, err := json.Marshal(u)
	if err != nil {
		log.Printf("chat: encoding %v: %v", u, err)
		return ""
	}
	var sb strings.Builder
	for _, r := range string(b) {
		switch {
		case r < 0x80:
			sb.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&sb, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&sb, `\u%04x`, r)
		}
	}
	return sb.String()
}

// reply is what a request answers: a body, and the reply commands to send
// with it. It is built completely before anything is written, so a failure
// halfway (the router down) leaves no command behind.
type reply struct {
	body                 msg
	join, leave, publish []string
	session              *string
	broadcast            bool
}

func (r *reply) write(w http.ResponseWriter) error {
	h := w.Header()
	if len(r.join) > 0 {
		if err := fooking.Join(h, r.join...); err != nil {
			return err
		}
	}
	if r.session != nil {
		if err := fooking.SetSession(h, *r.session); err != nil {
			return err
		}
	}
	if len(r.publish) > 0 {
		if err := fooking.Publish(h, r.publish...); err != nil {
			return err
		}
	}
	if r.broadcast {
		fooking.Broadcast(h)
	}
	if len(r.leave) > 0 {
		if err := fooking.Leave(h, r.leave...); err != nil {
			return err
		}
	}
	if r.body != nil { // no body (and no Content-Length) sends nothing
		out := encode(r.body)
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(out)))
		w.Write(out)
	}
	return nil
}

// routerConn is one shared connection to the fooking router, re-dialled after an
// error. fooking.Router is not safe for concurrent use, hence the mutex; holding
// it for a whole request's calls also keeps them in order on one link.
type routerConn struct {
	mu     sync.Mutex
	host   string
	port   int
	secret string
	r      *fooking.Router
}

func (rc *routerConn) do(f func(r *fooking.Router) error) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		if rc.r == nil {
			if rc.r, err = fooking.Connect(rc.host, rc.port, rc.secret); err != nil {
				rc.r = nil
				return err
			}
		}
		if err = f(rc.r); err == nil {
			return nil
		}
		rc.r.Close()
		rc.r = nil
	}
	return err
}

type chat struct {
	router *routerConn
}

func validSID(sid string) bool {
	if len(sid) != 16 {
		return false
	}
	for _, c := range sid {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// session is one request: the session id and its user (nil before a login).
type session struct {
	sid  string
	user *user
}

func (s *chat) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	sid := req.Header.Get("Sessionid")
	event := req.Header.Get("Event")
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
	if err != nil || !validSID(sid) {
		log.Printf("chat: bad request (sid %q): %v", sid, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ses := &session{sid: sid, user: decodeUser(req.Header.Get("Session"))}

	var r *reply
	switch event {
	case "1":
		r, err = s.connect(ses)
	case "2":
		err = s.close(ses)
	default:
		r, err = s.message(ses, body)
	}
	if err == nil && r != nil {
		err = r.write(w)
	}
	if err != nil {
		log.Printf("chat: %s: %v", sid, err)
		if event != "0" && event != "" {
			return
		}
		for _, k := range []string{fooking.HeaderJoin, fooking.HeaderLeave, fooking.HeaderSession,
			fooking.HeaderPublish, fooking.HeaderBroadcast} {
			w.Header().Del(k) // nothing of a reply that failed halfway
		}
		(&reply{body: errorMsg("The server is having trouble; please try again.")}).write(w)
	}
}

// connect (EVENT=1): a browser connected.
func (s *chat) connect(ses *session) (*reply, error) {
	var n int
	err := s.router.do(func(r *fooking.Router) (err error) {
		n, err = r.ChCount(lobby)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &reply{body: msg{"type": "hello", "id": ses.sid, "online": n}}, nil
}

// close (EVENT=2): the browser is gone, and with it the session (its channels, its data).
func (s *chat) close(ses *session) error {
	if ses.user == nil {
		return nil // never logged in
	}
	note := encode(stamped(msg{"type": "close", "id": ses.sid, "name": esc(ses.user.Name)}))
	return s.router.do(func(r *fooking.Router) error { return r.ChPub(lobby, note) })
}

// message (EVENT=0): one JSON message from the browser.
func (s *chat) message(ses *session, body []byte) (*reply, error) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil || req.Type == "" {
		return &reply{body: errorMsg(`Bad request: a JSON object with a "type" was expected.`)}, nil
	}
	switch req.Type {
	case "login":
		return s.login(ses, &req)
	case "join":
		return s.join(ses, &req)
	case "leave":
		return s.leave(ses, &req)
	case "msg":
		return s.msg(ses, &req)
	}
	return &reply{body: errorMsg("Unknown message type.")}, nil
}

type listed struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Since int64  `json:"since"`
}

// login (again: rename): the name goes into the session data, the session
// joins the lobby; the reply is the list of logged-in users, the others get a
// login notice through the router.
func (s *chat) login(ses *session, req *request) (*reply, error) {
	name := ""
	if req.Name != nil {
		name = clean(*req.Name, nameMax)
	}
	if name == "" {
		return &reply{body: errorMsg(fmt.Sprintf("Please pick a nickname (1 to %d characters).", nameMax))}, nil
	}
	me := user{Name: name, Since: time.Now().Unix(), Ch: []int{}}
	if ses.user != nil {
		me.Ch = ses.user.Ch
	}
	note := encode(stamped(msg{"type": "login", "id": ses.sid, "name": esc(name)}))
	var members map[string][]byte
	err := s.router.do(func(r *fooking.Router) (err error) {
		// The lobby's members and their session data: this session is not one
		// yet at its first login (its Join is applied with this reply), and has
		// its old name at a rename.
		if members, err = r.ChSessions(lobby); err != nil {
			return err
		}
		return r.ChPub(lobby, note, ses.sid)
	})
	if err != nil {
		return nil, err
	}
	list := []listed{{ses.sid, esc(name), me.Since}}
	for sid, data := range members {
		if u := decodeUser(string(data)); u != nil && sid != ses.sid {
			list = append(list, listed{sid, esc(u.Name), u.Since})
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Since != list[j].Since {
			return list[i].Since < list[j].Since
		}
		return list[i].ID < list[j].ID
	})
	data := encodeUser(me)
	return &reply{body: msg{"type": "list", "id": ses.sid, "name": esc(name), "list": list},
		session: &data, join: []string{lobby}}, nil
}

// channelOf: the channel number 1..5 of a join / leave, or an error reply.
func channelOf(ses *session, req *request) (int, *reply) {
	ch := req.Channel.n
	if !req.Channel.ok || ch < 1 || ch > channels {
		return 0, &reply{body: errorMsg(fmt.Sprintf("There are channels 1 to %d.", channels))}
	}
	if ses.user == nil {
		m := errorMsg("Log in first.")
		m["channel"] = ch
		return 0, &reply{body: m}
	}
	return ch, nil
}

// isMember: whether the session is a member of channel ch: its session data
// says so, or else the router does. (A request the browser sent before the
// answer to its previous one carries the session data as it was then: of two
// joins sent together, each adds its channel to what it saw, and the second
// reply's data may lack the first channel.)
func (s *chat) isMember(ses *session, ch int) (bool, error) {
	if ses.user.member(ch) {
		return true, nil
	}
	var members map[string]string
	err := s.router.do(func(r *fooking.Router) (err error) {
		members, err = r.ChMembers(channelName(ch))
		return err
	})
	_, ok := members[ses.sid]
	return ok, err
}

func notice(ses *session, what string, ch int) msg {
	return stamped(msg{"type": what, "channel": ch, "id": ses.sid, "name": esc(ses.user.Name)})
}

// join channel N: Join, then the join notice published to the channel (so to us too).
func (s *chat) join(ses *session, req *request) (*reply, error) {
	ch, bad := channelOf(ses, req)
	if bad != nil {
		return bad, nil
	}
	u := *ses.user
	u.Ch = channelSet(u.Ch, ch, 0)
	data := encodeUser(u)
	return &reply{body: notice(ses, "join", ch), join: []string{channelName(ch)},
		publish: []string{channelName(ch)}, session: &data}, nil
}

// leave channel N: the leave notice published to the channel (so to us too), then Leave.
func (s *chat) leave(ses *session, req *request) (*reply, error) {
	ch, bad := channelOf(ses, req)
	if bad != nil {
		return bad, nil
	}
	member, err := s.isMember(ses, ch)
	if err != nil {
		return nil, err
	}
	u := *ses.user
	u.Ch = channelSet(u.Ch, 0, ch)
	data := encodeUser(u)
	r := &reply{body: notice(ses, "leave", ch), leave: []string{channelName(ch)}, session: &data}
	if member {
		r.publish = []string{channelName(ch)}
	} // else: the notice to us only
	return r, nil
}

// msg: broadcast (channel 0) or published to channel N (members only).
func (s *chat) msg(ses *session, req *request) (*reply, error) {
	ch := 0
	if req.Channel.ok {
		ch = req.Channel.n
	}
	if ch < 0 || ch > channels {
		return &reply{body: errorMsg(fmt.Sprintf("There are channels 1 to %d.", channels))}, nil
	}
	if ses.user == nil {
		return &reply{body: errorMsg("Log in first.")}, nil
	}
	if ch > 0 {
		member, err := s.isMember(ses, ch)
		if err != nil {
			return nil, err
		}
		if !member {
			m := errorMsg(fmt.Sprintf("Join channel-%d to post there.", ch))
			m["channel"] = ch
			return &reply{body: m}, nil
		}
	}
	text := ""
	if req.Text != nil {
		text = clean(*req.Text, textMax)
	}
	if text == "" {
		return nil, nil
	}
	r := &reply{body: stamped(msg{"type": "msg", "id": ses.sid, "name": esc(ses.user.Name),
		"channel": ch, "text": esc(text)})}
	if ch == 0 {
		r.broadcast = true
	} else {
		r.publish = []string{channelName(ch)}
	}
	return r, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "FastCGI listen address (host:port)")
	routerAddr := flag.String("router", "127.0.0.1:9010", "fooking router address (host:port)")
	flag.Parse()
	log.SetFlags(log.LstdFlags)

	rhost, rport, err := net.SplitHostPort(*routerAddr)
	if err != nil {
		log.Fatalf("chat: -router %q: %v", *routerAddr, err)
	}
	port, err := strconv.Atoi(rport)
	if err != nil {
		log.Fatalf("chat: -router %q: bad port", *routerAddr)
	}
	srv := &chat{router: &routerConn{host: rhost, port: port, secret: os.Getenv("ROUTER_SECRET")}}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("chat: %v", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		ln.Close()
	}()
	log.Printf("chat: FastCGI on %s, router %s", ln.Addr(), *routerAddr)
	if err := fcgi.Serve(ln, srv); err != nil && !strings.Contains(err.Error(), "use of closed") {
		log.Fatalf("chat: %v", err)
	}
}
