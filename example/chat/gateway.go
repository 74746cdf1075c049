// gateway.go - the chat example's backend in Go (net/http/fcgi, redigo).
//
// fooking turns every WebSocket message of a browser into one FastCGI request.
// With FASTCGI_PREFIX = "HTTP_" in the gateway's config, the session id and the
// event arrive as the request headers Sessionid and Event (0 message, 1 connect,
// 2 close); the message (JSON, see README.md) is the request body. The response
// body goes back to that client only; messages for other clients (everyone, a
// channel) go through the fooking router. gateway.php implements the same
// protocol for php-fpm.
//
// Build (GOPATH mode, Debian's golang-github-gomodule-redigo-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode:$PWD/example/clients/go \
//	    go build -o chat-gateway example/chat/gateway.go
//
// Run:
//
//	chat-gateway -listen 127.0.0.1:9001 -router 127.0.0.1:9010 -redis 127.0.0.1:6379
//
// ROUTER_SECRET in the environment is presented to the router when set.
//
// Redis: the set "chatusers" holds the SIDs of logged-in users, the hash
// "chatuser:<sid>" holds id, name, since and ch1..ch5 (channels joined). Names
// and texts are HTML-escaped here, in everything sent to browsers.
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

	"fooking"

	"github.com/gomodule/redigo/redis"
)

const (
	channels = 5
	nameMax  = 24   // characters
	textMax  = 1000 // characters
	maxBody  = 1 << 16
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

// routerConn is one shared connection to the fooking router, re-dialled after an
// error. fooking.Router is not safe for concurrent use, hence the mutex; holding
// it for a whole request's commands also keeps them in order on one link.
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
	redis  *redis.Pool
	router *routerConn
}

func key(sid string) string { return "chatuser:" + sid }

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

func (s *chat) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	sid := req.Header.Get("Sessionid")
	event := req.Header.Get("Event")
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
	if err != nil || !validSID(sid) {
		log.Printf("chat: bad request (sid %q): %v", sid, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	conn := s.redis.Get()
	defer conn.Close()

	var reply msg
	switch event {
	case "1":
		reply, err = s.connect(conn, sid)
	case "2":
		err = s.close(conn, sid)
	default:
		reply, err = s.message(conn, sid, body)
	}
	if err != nil {
		log.Printf("chat: %s: %v", sid, err)
		if event != "0" && event != "" {
			return
		}
		reply = errorMsg("The server is having trouble; please try again.")
	}
	if reply != nil {
		out := encode(reply)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.Write(out)
	}
}

// connect (EVENT=1): a browser connected.
func (s *chat) connect(conn redis.Conn, sid string) (msg, error) {
	n, err := redis.Int(conn.Do("SCARD", "chatusers"))
	if err != nil {
		return nil, err
	}
	return msg{"type": "hello", "id": sid, "online": n}, nil
}

// close (EVENT=2): the browser is gone; the router already dropped it from its channels.
func (s *chat) close(conn redis.Conn, sid string) error {
	name, err := redis.String(conn.Do("HGET", key(sid), "name"))
	if err != nil && err != redis.ErrNil {
		return err
	}
	conn.Send("DEL", key(sid))
	conn.Send("SREM", "chatusers", sid)
	if _, err := conn.Do(""); err != nil {
		return err
	}
	if err == redis.ErrNil {
		return nil // never logged in
	}
	note := encode(stamped(msg{"type": "close", "id": sid, "name": esc(name)}))
	return s.router.do(func(r *fooking.Router) error { return r.SendAll(note) })
}

// message (EVENT=0): one JSON message from the browser.
func (s *chat) message(conn redis.Conn, sid string, body []byte) (msg, error) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil || req.Type == "" {
		return errorMsg(`Bad request: a JSON object with a "type" was expected.`), nil
	}
	switch req.Type {
	case "login":
		return s.login(conn, sid, &req)
	case "join", "leave":
		return s.channel(conn, sid, &req)
	case "msg":
		return s.msg(conn, sid, &req)
	}
	return errorMsg("Unknown message type."), nil
}

type user struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Since int64  `json:"since"`
}

func (s *chat) login(conn redis.Conn, sid string, req *request) (msg, error) {
	name := ""
	if req.Name != nil {
		name = clean(*req.Name, nameMax)
	}
	if name == "" {
		return errorMsg(fmt.Sprintf("Please pick a nickname (1 to %d characters).", nameMax)), nil
	}
	if _, err := conn.Do("HSET", key(sid), "id", sid, "name", name, "since", time.Now().Unix()); err != nil {
		return nil, err
	}
	if _, err := conn.Do("SADD", "chatusers", sid); err != nil {
		return nil, err
	}
	sids, err := redis.Strings(conn.Do("SMEMBERS", "chatusers"))
	if err != nil {
		return nil, err
	}
	list := []user{}
	for _, other := range sids {
		v, err := redis.Values(conn.Do("HMGET", key(other), "name", "since"))
		if err != nil {
			return nil, err
		}
		var uname string
		var since int64
		if _, err := redis.Scan(v, &uname, &since); err != nil || v[0] == nil {
			conn.Do("SREM", "chatusers", other) // a hash without its set entry: gone
			continue
		}
		list = append(list, user{other, esc(uname), since})
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Since < list[j].Since })

	note := encode(stamped(msg{"type": "login", "id": sid, "name": esc(name)}))
	if err := s.router.do(func(r *fooking.Router) error { return r.SendAll(note) }); err != nil {
		return nil, err
	}
	return msg{"type": "list", "id": sid, "name": esc(name), "list": list}, nil
}

// channel handles join / leave of channel N (1..5): router channel "chat-channel-N".
func (s *chat) channel(conn redis.Conn, sid string, req *request) (msg, error) {
	ch := req.Channel.n
	if !req.Channel.ok || ch < 1 || ch > channels {
		return errorMsg(fmt.Sprintf("There are channels 1 to %d.", channels)), nil
	}
	name, err := redis.String(conn.Do("HGET", key(sid), "name"))
	if err == redis.ErrNil {
		m := errorMsg("Log in first.")
		m["channel"] = ch
		return m, nil
	} else if err != nil {
		return nil, err
	}
	channel := "chat-channel-" + strconv.Itoa(ch)
	note := encode(stamped(msg{"type": req.Type, "channel": ch, "id": sid, "name": esc(name)}))
	field := "ch" + strconv.Itoa(ch)
	if req.Type == "join" {
		if _, err := conn.Do("HSET", key(sid), field, "1"); err != nil {
			return nil, err
		}
		// The confirmation goes through the router too, on the same link as the
		// CH_ADD: when the browser sees it, the gateway has the membership.
		return nil, s.router.do(func(r *fooking.Router) error {
			if err := r.ChAdd([]string{sid}, channel); err != nil {
				return err
			}
			if err := r.SendMsg([]string{sid}, note); err != nil {
				return err
			}
			return r.ChPub(channel, note)
		})
	}
	if _, err := conn.Do("HDEL", key(sid), field); err != nil {
		return nil, err
	}
	return nil, s.router.do(func(r *fooking.Router) error {
		if err := r.ChPub(channel, note); err != nil {
			return err
		}
		if err := r.ChDel([]string{sid}, channel); err != nil {
			return err
		}
		return r.SendMsg([]string{sid}, note)
	})
}

func (s *chat) msg(conn redis.Conn, sid string, req *request) (msg, error) {
	ch := 0
	if req.Channel.ok {
		ch = req.Channel.n
	}
	if ch < 0 || ch > channels {
		return errorMsg(fmt.Sprintf("There are channels 1 to %d.", channels)), nil
	}
	field := "ch" + strconv.Itoa(ch)
	v, err := redis.Strings(conn.Do("HMGET", key(sid), "name", field))
	if err != nil {
		return nil, err
	}
	if v[0] == "" {
		return errorMsg("Log in first."), nil
	}
	if ch > 0 && v[1] != "1" {
		m := errorMsg(fmt.Sprintf("Join channel-%d to post there.", ch))
		m["channel"] = ch
		return m, nil
	}
	text := ""
	if req.Text != nil {
		text = clean(*req.Text, textMax)
	}
	if text == "" {
		return nil, nil
	}
	out := encode(stamped(msg{"type": "msg", "id": sid, "name": esc(v[0]), "channel": ch, "text": esc(text)}))
	return nil, s.router.do(func(r *fooking.Router) error {
		if ch == 0 {
			return r.SendAll(out)
		}
		return r.ChPub("chat-channel-"+strconv.Itoa(ch), out)
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "FastCGI listen address (host:port)")
	routerAddr := flag.String("router", "127.0.0.1:9010", "fooking router address (host:port)")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address (host:port)")
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
	pool := &redis.Pool{
		MaxIdle:     16,
		IdleTimeout: 4 * time.Minute,
		Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", *redisAddr, redis.DialConnectTimeout(2*time.Second),
				redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
		},
		TestOnBorrow: func(c redis.Conn, t time.Time) error {
			if time.Since(t) < time.Minute {
				return nil
			}
			_, err := c.Do("PING")
			return err
		},
	}
	srv := &chat{redis: pool,
		router: &routerConn{host: rhost, port: port, secret: os.Getenv("ROUTER_SECRET")}}

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
	log.Printf("chat: FastCGI on %s, router %s, redis %s", ln.Addr(), *routerAddr, *redisAddr)
	if err := fcgi.Serve(ln, srv); err != nil && !strings.Contains(err.Error(), "use of closed") {
		log.Fatalf("chat: %v", err)
	}
}
