// goreply - Go net/http/fcgi test backend for the reply commands (fooking.Join,
// Publish, SetSession, ...): what tests/backends/reply.php does for php-fpm,
// driven by tests/integration/test_reply_clients.py.
//
// Usage: goreply <listen host:port>
//
// Builds in GOPATH mode with the fooking package:
// GO111MODULE=off GOPATH=$PWD/example/clients/go:/usr/share/gocode go build.
// fooking talks to it with FASTCGI_PREFIX="HTTP_": SESSIONID, EVENT, SESSION and
// UID arrive as the request headers Sessionid, Event, Session and Uid.
//
//	EVENT=1  -> joins channel "connected", sets the session data to "connected",
//	            replies "welcome <SESSIONID>"
//	EVENT=2  -> appends "<SESSIONID> <SESSION>\n" to the file named by the static
//	            param EVENT_LOG; empty reply
//	message  -> a JSON object of commands, called in this order (which is not the
//	            order the gateway applies them in):
//	              "leave": [..], "publish": [..], "exclude_self": true,
//	              "broadcast": true, "close": [code, reason], "unbind": true,
//	              "bind": "uid", "session": "data", "join": [..]
//	            and replies "body" (text; nothing when absent), or with
//	            "params": true the JSON {"SESSIONID", "SESSION", "UID"} of the
//	            request's params (null when absent). A command the library
//	            refuses is a reply "error: <message>".
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"strconv"
	"sync"

	"fooking"
)

type request struct {
	Leave       []string      `json:"leave"`
	Publish     []string      `json:"publish"`
	ExcludeSelf bool          `json:"exclude_self"`
	Broadcast   bool          `json:"broadcast"`
	Close       []interface{} `json:"close"`
	Unbind      bool          `json:"unbind"`
	Bind        *string       `json:"bind"`
	Session     *string       `json:"session"`
	Join        []string      `json:"join"`
	Params      bool          `json:"params"`
	Body        string        `json:"body"`
}

var logMu sync.Mutex

func reply(w http.ResponseWriter, out string) {
	if out == "" {
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	io.WriteString(w, out)
}

// orNull: the header's value, nil when the request has no such header.
func orNull(r *http.Request, name string) interface{} {
	if v, ok := r.Header[name]; ok && len(v) > 0 {
		return v[0]
	}
	return nil
}

// commands calls the helpers in the order of the top of this file.
func commands(h http.Header, req *request) error {
	if req.Leave != nil {
		if err := fooking.Leave(h, req.Leave...); err != nil {
			return err
		}
	}
	if req.Publish != nil {
		if err := fooking.Publish(h, req.Publish...); err != nil {
			return err
		}
	}
	if req.ExcludeSelf {
		fooking.ExcludeSelf(h)
	}
	if req.Broadcast {
		fooking.Broadcast(h)
	}
	if req.Close != nil {
		code, reason := 1000, ""
		if len(req.Close) > 0 {
			if f, ok := req.Close[0].(float64); ok {
				code = int(f)
			}
		}
		if len(req.Close) > 1 {
			reason, _ = req.Close[1].(string)
		}
		if err := fooking.CloseClient(h, code, reason); err != nil {
			return err
		}
	}
	if req.Unbind {
		fooking.UnbindUid(h)
	}
	if req.Bind != nil {
		if err := fooking.BindUid(h, *req.Bind); err != nil {
			return err
		}
	}
	if req.Session != nil {
		if err := fooking.SetSession(h, *req.Session); err != nil {
			return err
		}
	}
	if req.Join != nil {
		if err := fooking.Join(h, req.Join...); err != nil {
			return err
		}
	}
	return nil
}

func handle(w http.ResponseWriter, r *http.Request) {
	sid := r.Header.Get("Sessionid")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	switch r.Header.Get("Event") {
	case "1":
		fooking.Join(h, "connected")
		fooking.SetSession(h, "connected")
		reply(w, "welcome "+sid)
		return
	case "2":
		if name := fcgi.ProcessEnv(r)["EVENT_LOG"]; name != "" {
			logMu.Lock()
			defer logMu.Unlock()
			f, err := os.OpenFile(name, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0644)
			if err == nil {
				fmt.Fprintf(f, "%s %s\n", sid, r.Header.Get("Session"))
				f.Close()
			}
		}
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		reply(w, "error: not a JSON object")
		return
	}
	if err := commands(h, &req); err != nil {
		for k := range h {
			delete(h, k)
		}
		reply(w, "error: "+err.Error())
		return
	}
	if req.Params {
		out, _ := json.Marshal(map[string]interface{}{"SESSIONID": sid,
			"SESSION": orNull(r, "Session"), "UID": orNull(r, "Uid")})
		reply(w, string(out))
		return
	}
	reply(w, req.Body)
}

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: goreply <listen host:port>")
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(fcgi.Serve(ln, http.HandlerFunc(handle)))
}
