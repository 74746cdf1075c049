// goecho - the Go net/http/fcgi test backend of fooking's integration tests.
//
// Usage: goecho <listen host:port> [conncount-file]
//
// Standard library only; builds with `GO111MODULE=off go build`. fooking talks to
// it with FASTCGI_PREFIX="HTTP_", so SESSIONID and EVENT arrive as the request
// headers "Sessionid" and "Event". net/http/cgi needs REQUEST_METHOD and
// SERVER_PROTOCOL among the static FASTCGI_PARAMS.
//
// Behaviour, chosen by the message (request body), same as tests/backends/echo.php:
//
//	EVENT=1        -> "welcome <SESSIONID>"
//	EVENT=2        -> appends "<SESSIONID> closed\n" to the file named by the static
//	                  param EVENT_LOG (if set); empty reply
//	"params..."    -> JSON object: SESSIONID, EVENT, REMOTE_ADDR, REMOTE_PORT,
//	                  CONTENT_LENGTH, every static param, every header as HTTP_*
//	"sleep N..."   -> sleeps N seconds, then echoes
//	"stderr..."    -> writes a line to stderr of the process, then echoes
//	"big N"        -> N bytes of "x"
//	"conncount"    -> the number of TCP connections accepted so far
//	anything else  -> echoes the body back byte-exact
//
// Every accepted connection also rewrites the conncount file (if given).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	conns     int64
	countFile string
	fileMu    sync.Mutex
)

type countingListener struct {
	net.Listener
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		n := atomic.AddInt64(&conns, 1)
		if countFile != "" {
			fileMu.Lock()
			tmp := countFile + ".tmp"
			if os.WriteFile(tmp, []byte(strconv.FormatInt(n, 10)), 0644) == nil {
				os.Rename(tmp, countFile)
			}
			fileMu.Unlock()
		}
	}
	return c, err
}

func reply(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read error: "+err.Error(), http.StatusInternalServerError)
		return
	}
	sid := r.Header.Get("Sessionid")
	event := r.Header.Get("Event")
	env := fcgi.ProcessEnv(r)
	if event == "" {
		event = env["EVENT"]
	}
	if sid == "" {
		sid = env["SESSIONID"]
	}

	switch event {
	case "1":
		reply(w, []byte("welcome "+sid))
		return
	case "2":
		if log := env["EVENT_LOG"]; log != "" {
			fileMu.Lock()
			f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0644)
			if err == nil {
				f.Write([]byte(sid + " closed\n"))
				f.Close()
			}
			fileMu.Unlock()
		}
		reply(w, nil)
		return
	}

	s := string(body)
	switch {
	case strings.HasPrefix(s, "params"):
		out := map[string]string{}
		for k, v := range env {
			out[k] = v
		}
		for k, v := range r.Header {
			out["HTTP_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))] = strings.Join(v, ",")
		}
		out["SESSIONID"] = sid
		out["EVENT"] = event
		if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			out["REMOTE_ADDR"] = host
			out["REMOTE_PORT"] = port
		}
		out["CONTENT_LENGTH"] = strconv.FormatInt(r.ContentLength, 10)
		out["REQUEST_METHOD"] = r.Method
		b, _ := json.Marshal(out)
		reply(w, b)
	case strings.HasPrefix(s, "sleep "):
		f := strings.Fields(s[6:])
		if len(f) > 0 {
			if n, err := strconv.ParseFloat(f[0], 64); err == nil && n > 0 {
				time.Sleep(time.Duration(n * float64(time.Second)))
			}
		}
		reply(w, body)
	case strings.HasPrefix(s, "stderr"):
		fmt.Fprintf(os.Stderr, "goecho stderr test sid=%s\n", sid)
		reply(w, body)
	case strings.HasPrefix(s, "big "):
		n, _ := strconv.Atoi(strings.TrimSpace(s[4:]))
		if n < 0 {
			n = 0
		}
		reply(w, []byte(strings.Repeat("x", n)))
	case s == "conncount":
		reply(w, []byte(strconv.FormatInt(atomic.LoadInt64(&conns), 10)))
	default:
		reply(w, body)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goecho <host:port> [conncount-file]")
		os.Exit(2)
	}
	if len(os.Args) > 2 {
		countFile = os.Args[2]
	}
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "goecho listening on", l.Addr())
	if err := fcgi.Serve(countingListener{l}, http.HandlerFunc(handle)); err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
}
