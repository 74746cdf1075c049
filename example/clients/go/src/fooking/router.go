// Package fooking is a backend client for fooking: Router talks to the router
// (this file: standard library only), Redis publishes on the Redis message bus
// (redis.go: redigo). It builds in GOPATH mode:
// GO111MODULE=off GOPATH=.../example/clients/go:/usr/share/gocode, import "fooking".
//
// Every message is "u16 type | u16 slen | u32 len" (big-endian), then S, then D.
// Commands are fire-and-forget: the router never answers them. Only Info waits
// for a reply.
//
//	r, err := fooking.Connect("127.0.0.1", 9010, os.Getenv("ROUTER_SECRET"))
//	if err != nil { ... }
//	defer r.Close()
//	r.SendMsg([]string{sid}, []byte("hello"))
//	r.ChAdd([]string{sid}, "room1")
//	r.ChPub("room1", []byte("someone joined"))
package fooking

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Message types (DESIGN §7) a backend sends.
const (
	TypeKick    = 4
	TypeSendMsg = 5
	TypeSendAll = 6
	TypeChAdd   = 7
	TypeChDel   = 8
	TypeChPub   = 9
	TypeInfo    = 12
	TypeSecret  = 13

	SIDLen     = 16
	MaxSIDs    = 4095 // slen is a u16: 4095 SIDs of 16 bytes per message
	MaxChannel = 255
)

// Router is one connection to the router. It is not safe for concurrent use.
type Router struct {
	conn    net.Conn
	Timeout time.Duration // per call; 0 means none
}

// GatewayInfo is one gateway worker link as the router sees it.
type GatewayInfo struct {
	Server, Worker, Clients, Channels int
}

// Info is the router's status.
type Info struct {
	Clients  int // sessions on all gateways
	Channels int // channels with at least one member
	Gateways []GatewayInfo
}

// Connect dials the router; a non-empty secret (the router's ROUTER_SECRET) is
// presented first.
func Connect(host string, port int, secret string) (*Router, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("fooking router: %w", err)
	}
	r := &Router{conn: conn, Timeout: 5 * time.Second}
	if secret != "" {
		if err := r.write(TypeSecret, nil, []byte(secret)); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return r, nil
}

// Close closes the connection.
func (r *Router) Close() error { return r.conn.Close() }

// Kick closes these clients.
func (r *Router) Kick(sids []string) error { return r.sidsCommand(TypeKick, sids, nil) }

// SendMsg delivers msg to these clients.
func (r *Router) SendMsg(sids []string, msg []byte) error {
	return r.sidsCommand(TypeSendMsg, sids, msg)
}

// SendAll delivers msg to every client of every gateway.
func (r *Router) SendAll(msg []byte) error { return r.write(TypeSendAll, nil, msg) }

// ChAdd makes these clients join channel.
func (r *Router) ChAdd(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return r.sidsCommand(TypeChAdd, sids, []byte(channel))
}

// ChDel makes these clients leave channel.
func (r *Router) ChDel(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return r.sidsCommand(TypeChDel, sids, []byte(channel))
}

// ChPub delivers msg to every member of channel.
func (r *Router) ChPub(channel string, msg []byte) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return r.write(TypeChPub, []byte(channel), msg)
}

// Info asks the router for its status.
func (r *Router) Info() (*Info, error) {
	if err := r.write(TypeInfo, nil, nil); err != nil {
		return nil, err
	}
	r.deadline()
	var hdr [8]byte
	if _, err := io.ReadFull(r.conn, hdr[:]); err != nil {
		return nil, fmt.Errorf("fooking router: reading INFO reply: %w", err)
	}
	typ := binary.BigEndian.Uint16(hdr[0:])
	slen := int(binary.BigEndian.Uint16(hdr[2:]))
	dlen := int(binary.BigEndian.Uint32(hdr[4:]))
	if typ != TypeInfo || dlen > 16<<20 {
		return nil, fmt.Errorf("fooking router: unexpected reply (type %d, len %d)", typ, dlen)
	}
	body := make([]byte, slen+dlen)
	if _, err := io.ReadFull(r.conn, body); err != nil {
		return nil, fmt.Errorf("fooking router: reading INFO reply: %w", err)
	}
	return parseInfo(string(body[slen:]))
}

func parseInfo(text string) (*Info, error) {
	info := &Info{}
	for _, line := range strings.Split(text, "\r\n") {
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch key {
		case "clients":
			info.Clients, _ = strconv.Atoi(val)
		case "channels":
			info.Channels, _ = strconv.Atoi(val)
		case "gateway":
			f := strings.Split(val, "\t")
			if len(f) != 4 {
				return nil, fmt.Errorf("fooking router: bad INFO line %q", line)
			}
			var g GatewayInfo
			for i, p := range []*int{&g.Server, &g.Worker, &g.Clients, &g.Channels} {
				n, err := strconv.Atoi(f[i])
				if err != nil {
					return nil, fmt.Errorf("fooking router: bad INFO line %q", line)
				}
				*p = n
			}
			info.Gateways = append(info.Gateways, g)
		}
	}
	return info, nil
}

// sidsCommand sends one message per MaxSIDs SIDs.
func (r *Router) sidsCommand(typ uint16, sids []string, d []byte) error {
	if err := checkSIDs(sids); err != nil {
		return err
	}
	for _, s := range joinSIDs(sids) {
		if err := r.write(typ, s, d); err != nil {
			return err
		}
	}
	return nil
}

// The message encoding below is shared by Router and Redis (which publishes the
// same messages on Redis instead of writing them to a router).

// header is the 8-byte message header: u16 type | u16 slen | u32 len, big-endian.
func header(typ uint16, slen, dlen int) [8]byte {
	var hdr [8]byte
	binary.BigEndian.PutUint16(hdr[0:], typ)
	binary.BigEndian.PutUint16(hdr[2:], uint16(slen))
	binary.BigEndian.PutUint32(hdr[4:], uint32(dlen))
	return hdr
}

// Encode returns one whole message: header, S, D.
func Encode(typ uint16, s, d []byte) []byte {
	hdr := header(typ, len(s), len(d))
	out := make([]byte, 0, len(hdr)+len(s)+len(d))
	out = append(out, hdr[:]...)
	out = append(out, s...)
	return append(out, d...)
}

// checkSIDs checks that every SID is SIDLen bytes.
func checkSIDs(sids []string) error {
	for _, sid := range sids {
		if len(sid) != SIDLen {
			return fmt.Errorf("fooking: a SID is %d bytes, got %q", SIDLen, sid)
		}
	}
	return nil
}

// joinSIDs concatenates the SIDs into S fields of at most MaxSIDs SIDs each.
func joinSIDs(sids []string) [][]byte {
	var out [][]byte
	for start := 0; start < len(sids); start += MaxSIDs {
		end := start + MaxSIDs
		if end > len(sids) {
			end = len(sids)
		}
		s := make([]byte, 0, (end-start)*SIDLen)
		for _, sid := range sids[start:end] {
			s = append(s, sid...)
		}
		out = append(out, s)
	}
	return out
}

func checkChannel(channel string) error {
	if len(channel) < 1 || len(channel) > MaxChannel {
		return fmt.Errorf("fooking: a channel name is 1 to %d bytes, got %d", MaxChannel, len(channel))
	}
	return nil
}

func (r *Router) deadline() {
	if r.Timeout > 0 {
		r.conn.SetDeadline(time.Now().Add(r.Timeout))
	}
}

// write sends header, S and D with one writev, without copying D.
func (r *Router) write(typ uint16, s, d []byte) error {
	hdr := header(typ, len(s), len(d))
	r.deadline()
	bufs := net.Buffers{hdr[:], s, d}
	if _, err := bufs.WriteTo(r.conn); err != nil {
		return fmt.Errorf("fooking router: %w", err)
	}
	return nil
}
