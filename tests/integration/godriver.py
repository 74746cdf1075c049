"""The Go library's test drivers, one program per transport (the router's
fooking.Router, fooking.Redis, fooking.NATS): it reads a list of calls as JSON
on stdin, {"Op": name, "Args": [...]} with every string hex-encoded (bytes
survive JSON that way), and prints one result per call: {"ok": value} or
{"err": kind, "msg": text, "code": type}, the PHP drivers' shapes.

program(imports, body) is the whole main.go: the shared part (the op type, the
hex helpers, v2(): every call of fooking.Client, and outcome(): a result's
JSON) and the transport's own `run` and `main` in body."""

HEAD = r"""package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
%(imports)s
	"fooking"
)

type op struct {
	Op      string
	Args    []json.RawMessage
	N       int
	Port    int
	Secret  string
	Timeout float64
}

func str(a json.RawMessage) string {
	var s string
	if err := json.Unmarshal(a, &s); err != nil {
		panic(err)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// strs: a list of strings, or one string as a list of one (PHP takes both).
func strs(a json.RawMessage) []string {
	var l []string
	if err := json.Unmarshal(a, &l); err != nil {
		return []string{str(a)}
	}
	out := make([]string, len(l))
	for i, s := range l {
		b, err := hex.DecodeString(s)
		if err != nil {
			panic(err)
		}
		out[i] = string(b)
	}
	return out
}

func h(s string) string { return hex.EncodeToString([]byte(s)) }

func orNull(s string) interface{} {
	if s == "" {
		return nil
	}
	return h(s)
}

// v2 runs one call every transport has; ok is false for any other op.
func v2(c fooking.Client, o op) (v interface{}, ok bool, err error) {
	a := o.Args
	ok = true
	switch o.Op {
	case "kick":
		err = c.Kick(strs(a[0]))
	case "bindUid":
		err = c.BindUid(str(a[0]), str(a[1]))
	case "unbindUid":
		err = c.UnbindUid(str(a[0]))
	case "sendToUid":
		err = c.SendToUid(strs(a[0]), []byte(str(a[1])))
	case "kickUid":
		err = c.KickUid(strs(a[0])...)
	case "setSession":
		err = c.SetSession(str(a[0]), []byte(str(a[1])))
	case "sendAll":
		if len(a) > 1 {
			err = c.SendAll([]byte(str(a[0])), strs(a[1])...)
		} else {
			err = c.SendAll([]byte(str(a[0])))
		}
	case "chPub":
		if len(a) > 2 {
			err = c.ChPub(str(a[0]), []byte(str(a[1])), strs(a[2])...)
		} else {
			err = c.ChPub(str(a[0]), []byte(str(a[1])))
		}
	case "chAdd":
		err = c.ChAdd(strs(a[0]), str(a[1]))
	case "chDel":
		err = c.ChDel(strs(a[0]), str(a[1]))
	case "sendMsg":
		err = c.SendMsg(strs(a[0]), []byte(str(a[1])))
	case "isOnline":
		m, e := c.IsOnline(strs(a[0]))
		out := map[string]bool{}
		for k, b := range m {
			out[h(k)] = b
		}
		v, err = out, e
	case "isUidOnline":
		v, err = c.IsUidOnline(str(a[0]))
	case "getSidsByUid":
		l, e := c.GetSidsByUid(str(a[0]))
		out := []string{}
		for _, s := range l {
			out = append(out, h(s))
		}
		v, err = out, e
	case "getUidBySid":
		u, e := c.GetUidBySid(str(a[0]))
		v, err = orNull(u), e
	case "getSession":
		d, found, e := c.GetSession(str(a[0]))
		if found {
			v = h(string(d))
		}
		err = e
	case "chCount":
		v, err = c.ChCount(str(a[0]))
	case "chMembers":
		m, e := c.ChMembers(str(a[0]))
		out := map[string]interface{}{}
		for k, u := range m {
			out[h(k)] = orNull(u)
		}
		v, err = out, e
	case "chSessions":
		m, e := c.ChSessions(str(a[0]))
		out := map[string]string{}
		for k, d := range m {
			out[h(k)] = h(string(d))
		}
		v, err = out, e
	case "channels":
		m, e := c.Channels()
		out := map[string]int{}
		for k, n := range m {
			out[h(k)] = n
		}
		v, err = out, e
	case "info":
		i, e := c.Info()
		if e != nil {
			return nil, true, e
		}
		gws := []map[string]int{}
		for _, g := range i.Gateways {
			gws = append(gws, map[string]int{"server": g.Server, "worker": g.Worker,
				"clients": g.Clients, "channels": g.Channels})
		}
		v = map[string]interface{}{"clients": i.Clients, "channels": i.Channels,
			"uids": i.Uids, "gateways": gws}
	default:
		ok = false
	}
	return v, ok, err
}

// outcome: a call's result as the PHP drivers report it.
func outcome(v interface{}, err error) map[string]interface{} {
	res := map[string]interface{}{}
	var re *fooking.RouterError
	switch {
	case err == nil:
		res["ok"] = v
	case errors.Is(err, fooking.ErrInvalidArgument):
		res["err"], res["msg"], res["code"] = "InvalidArgumentException", err.Error(), 0
	case errors.As(err, &re):
		res["err"], res["msg"], res["code"] = "FookingRouterError", err.Error(), re.Type
	default:
		res["err"], res["msg"], res["code"] = "RuntimeException", err.Error(), 0
	}
	return res
}

// emit prints the results.
func emit(out interface{}) {
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}

var _ = os.Stdin
"""


def program(body, imports=""):
    """The driver's main.go: the shared part, then body (its run and main)."""
    return HEAD.replace("%(imports)s", imports) + body
