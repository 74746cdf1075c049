// Package fooking is a backend client for fooking: Router talks to the router
// (this file: standard library only), Redis publishes on the Redis message bus
// (redis.go: redigo), NATS on the NATS message bus (nats.go: nats.go), and
// Join, Publish, SetSession and the other reply commands put commands for the
// gateway in a FastCGI reply's headers (reply.go: net/http). It builds in
// GOPATH mode: GO111MODULE=off GOPATH=.../example/clients/go:/usr/share/gocode,
// import "fooking".
//
// Every message is "u16 type | u16 slen | u32 len" (big-endian), then S, then D.
// Commands are fire-and-forget: the router never answers them. Info and the
// backend API v2 queries (IsOnline, IsUidOnline, GetSidsByUid, GetUidBySid,
// GetSession, ChCount, ChMembers, ChSessions, Channels) wait for their answer;
// a query sees the effect of every command sent before it on the connection.
//
// Errors: a bad argument is an error and nothing is sent. A query the router
// refuses (its ERROR answer) is a *RouterError and the connection goes on. A
// read that times out (Router.Timeout), a closed connection or an answer that
// is not what was asked for (another type, cut short, too long) closes the
// connection: every later call returns an error wrapping ErrBroken.
//
//	r, err := fooking.Connect("127.0.0.1", 9010, os.Getenv("ROUTER_SECRET"))
//	if err != nil { ... }
//	defer r.Close()
//	r.SendMsg([]string{sid}, []byte("hello"))
//	r.ChAdd([]string{sid}, "room1")
//	r.ChPub("room1", []byte("someone joined"))
package fooking

import (
	"bytes"
	"encoding/binary"
	"errors"
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

	// Backend API v2: commands.
	TypeBind       = 16
	TypeUnbind     = 17
	TypeSendUID    = 18
	TypeKickUID    = 19
	TypeSessionSet = 20
	TypeSendAllEx  = 21
	TypeChPubEx    = 22
	// Backend API v2: queries, answered with a message of the same type.
	TypeIsOnline   = 23
	TypeUIDCount   = 24
	TypeUIDSIDs    = 25
	TypeSIDUID     = 26
	TypeSessionGet = 27
	TypeChCount    = 28
	TypeChMembers  = 29
	TypeChSessions = 30
	TypeChannels   = 31
	TypeError      = 32 // the answer to a refused query: D = u16 type | text

	SIDLen     = 16
	MaxSIDs    = 4095 // slen is a u16: 4095 SIDs of 16 bytes per message
	MaxChannel = 255
	MaxUID     = 128
	MaxSession = 16384 // largest session data the router forwards
	MaxS       = 65535 // slen is a u16
	// DefaultMaxAnswer is the largest answer D a Router reads unless told
	// otherwise: the router's largest ROUTER_ANSWER_MAX.
	DefaultMaxAnswer = 1 << 30
)

// ErrInvalidArgument matches (errors.Is) every argument error: a SID that is
// not 16 bytes, a uid not 1..128 bytes, a channel not 1..255 bytes, too many
// SIDs to exclude, session data over MaxSession. Nothing was sent.
var ErrInvalidArgument = errors.New("fooking: invalid argument")

type argError struct{ msg string }

func (e *argError) Error() string        { return e.msg }
func (e *argError) Is(target error) bool { return target == ErrInvalidArgument }

func argErrorf(format string, args ...interface{}) error {
	return &argError{fmt.Sprintf(format, args...)}
}

// ErrBroken is wrapped by the errors of every call on a Router whose
// connection was closed after a failed read or a malformed answer.
var ErrBroken = errors.New("fooking router: connection closed after an earlier error")

// RouterError is the router's ERROR answer to a query it refused (a bad
// argument, an answer over ROUTER_ANSWER_MAX, a BUS router whose Redis is down). The
// connection is fine.
type RouterError struct {
	Type uint16 // the refused query's type
	Text string // the router's words
}

func (e *RouterError) Error() string {
	return fmt.Sprintf("fooking router: %s refused: %s", typeName(e.Type), e.Text)
}

var typeNames = map[uint16]string{
	TypeInfo: "INFO", TypeIsOnline: "IS_ONLINE", TypeUIDCount: "UID_COUNT",
	TypeUIDSIDs: "UID_SIDS", TypeSIDUID: "SID_UID", TypeSessionGet: "SESSION_GET",
	TypeChCount: "CH_COUNT", TypeChMembers: "CH_MEMBERS", TypeChSessions: "CH_SESSIONS",
	TypeChannels: "CHANNELS",
}

func typeName(t uint16) string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "type " + strconv.Itoa(int(t))
}

// Router is one connection to the router. It is not safe for concurrent use.
type Router struct {
	conn    net.Conn
	Timeout time.Duration // per call; 0 means none
	// MaxAnswer bounds the answer D a query reads (DefaultMaxAnswer); a
	// bigger one is a protocol error.
	MaxAnswer int
	broken    error
}

// GatewayInfo is one gateway worker link as the router sees it.
type GatewayInfo struct {
	Server, Worker, Clients, Channels int
}

// Info is the router's status.
type Info struct {
	Clients  int // sessions on all gateways
	Channels int // channels with at least one member
	// Uids is the number of distinct bound uids: 0 from a router that sends
	// no "uids:" line (one from before v2, or a BUS router from before the
	// bus served v2).
	Uids     int
	Gateways []GatewayInfo
}

// Connect dials the router; a non-empty secret (the router's ROUTER_SECRET) is
// presented first.
func Connect(host string, port int, secret string) (*Router, error) {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("fooking router: %w", err)
	}
	r := &Router{conn: conn, Timeout: 5 * time.Second, MaxAnswer: DefaultMaxAnswer}
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

// SendAll delivers msg to every client of every gateway but the exclude SIDs
// (SEND_ALL without exclusions, SEND_ALL_EX with; at most MaxSIDs of them).
func (r *Router) SendAll(msg []byte, exclude ...string) error {
	if len(exclude) == 0 {
		return r.write(TypeSendAll, nil, msg)
	}
	s, err := excludeList(exclude, MaxSIDs)
	if err != nil {
		return err
	}
	return r.write(TypeSendAllEx, s, msg)
}

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

// ChPub delivers msg to every member of channel but the exclude SIDs (CH_PUB
// without exclusions, CH_PUB_EX with). S holds the channel too, so at most
// min(MaxSIDs, (65534 - len(channel)) / 16) SIDs: 4079 for a 255-byte name.
func (r *Router) ChPub(channel string, msg []byte, exclude ...string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	if len(exclude) == 0 {
		return r.write(TypeChPub, []byte(channel), msg)
	}
	s, err := chPubExS(channel, exclude)
	if err != nil {
		return err
	}
	return r.write(TypeChPubEx, s, msg)
}

// chPubExS is the S of a CH_PUB_EX: u8 n, the channel (checked before), the
// SIDs to exclude, each once, as many as fit.
func chPubExS(channel string, exclude []string) ([]byte, error) {
	max := (MaxS - 1 - len(channel)) / SIDLen
	if max > MaxSIDs {
		max = MaxSIDs
	}
	sids, err := excludeList(exclude, max)
	if err != nil {
		return nil, err
	}
	s := make([]byte, 0, 1+len(channel)+len(sids))
	s = append(s, byte(len(channel)))
	s = append(s, channel...)
	return append(s, sids...), nil
}

// ---- backend API v2: commands (no answer) ----

// BindUid binds the session to uid (replacing the uid it had).
func (r *Router) BindUid(sid, uid string) error {
	if err := checkSID(sid); err != nil {
		return err
	}
	if err := checkUID(uid); err != nil {
		return err
	}
	return r.write(TypeBind, []byte(sid), []byte(uid))
}

// UnbindUid makes the session lose its uid.
func (r *Router) UnbindUid(sid string) error {
	if err := checkSID(sid); err != nil {
		return err
	}
	return r.write(TypeUnbind, []byte(sid), nil)
}

// SendToUid delivers msg to every session bound to one of uids, each session
// once: a uid listed twice is sent once, and a list whose S would pass 65535
// bytes goes as several messages.
func (r *Router) SendToUid(uids []string, msg []byte) error {
	lists, err := UIDLists(uids)
	if err != nil {
		return err
	}
	for _, s := range lists {
		if err := r.write(TypeSendUID, s, msg); err != nil {
			return err
		}
	}
	return nil
}

// KickUid closes every session bound to one of uids.
func (r *Router) KickUid(uids ...string) error {
	lists, err := UIDLists(uids)
	if err != nil {
		return err
	}
	for _, s := range lists {
		if err := r.write(TypeKickUID, s, nil); err != nil {
			return err
		}
	}
	return nil
}

// SetSession sets the session's data, kept by its gateway (0..MaxSession bytes,
// and no more than the gateway's SESSION_MAX_SIZE; empty clears it).
func (r *Router) SetSession(sid string, data []byte) error {
	if err := checkSID(sid); err != nil {
		return err
	}
	if len(data) > MaxSession {
		return argErrorf("fooking: session data is at most %d bytes, got %d", MaxSession, len(data))
	}
	return r.write(TypeSessionSet, []byte(sid), data)
}

// ---- backend API v2: queries ----

// IsOnline tells, for each SID, whether the session is connected to a gateway
// (one IS_ONLINE per MaxSIDs SIDs).
func (r *Router) IsOnline(sids []string) (map[string]bool, error) {
	if err := checkSIDs(sids); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(sids))
	for start := 0; start < len(sids); start += MaxSIDs {
		end := start + MaxSIDs
		if end > len(sids) {
			end = len(sids)
		}
		chunk := sids[start:end]
		s := make([]byte, 0, len(chunk)*SIDLen)
		for _, sid := range chunk {
			s = append(s, sid...)
		}
		d, err := r.query(TypeIsOnline, s)
		if err != nil {
			return nil, err
		}
		if err := decodeIsOnline(chunk, d, out); err != nil {
			return nil, r.malformed("%v", err)
		}
	}
	return out, nil
}

// IsUidOnline returns how many sessions are bound to uid (0: offline).
func (r *Router) IsUidOnline(uid string) (int, error) {
	if err := checkUID(uid); err != nil {
		return 0, err
	}
	return r.count(TypeUIDCount, []byte(uid))
}

// GetSidsByUid returns the SIDs of the sessions bound to uid, in no particular
// order (empty, not nil, when there are none).
func (r *Router) GetSidsByUid(uid string) ([]string, error) {
	if err := checkUID(uid); err != nil {
		return nil, err
	}
	d, err := r.query(TypeUIDSIDs, []byte(uid))
	if err != nil {
		return nil, err
	}
	out, err := decodeSIDs(d)
	if err != nil {
		return nil, r.malformed("%v", err)
	}
	return out, nil
}

// GetUidBySid returns the session's uid: "" when it is unbound or not a
// session the router knows (a uid is never empty).
func (r *Router) GetUidBySid(sid string) (string, error) {
	if err := checkSID(sid); err != nil {
		return "", err
	}
	d, err := r.query(TypeSIDUID, []byte(sid))
	if err != nil {
		return "", err
	}
	uid, err := decodeUID(d)
	if err != nil {
		return "", r.malformed("%v", err)
	}
	return uid, nil
}

// GetSession returns the session's data (empty when it has none) and found =
// true; found = false when there is no such session (or its gateway did not
// answer the router in time).
func (r *Router) GetSession(sid string) (data []byte, found bool, err error) {
	if err := checkSID(sid); err != nil {
		return nil, false, err
	}
	d, err := r.query(TypeSessionGet, []byte(sid))
	if err != nil {
		return nil, false, err
	}
	data, found, err = decodeSession(d)
	if err != nil {
		return nil, false, r.malformed("%v", err)
	}
	return data, found, nil
}

// ChCount returns how many sessions are members of channel.
func (r *Router) ChCount(channel string) (int, error) {
	if err := checkChannel(channel); err != nil {
		return 0, err
	}
	return r.count(TypeChCount, []byte(channel))
}

// ChMembers returns the members of channel, SID -> uid, with "" for a member
// that is unbound (a uid is never empty).
func (r *Router) ChMembers(channel string) (map[string]string, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	d, err := r.query(TypeChMembers, []byte(channel))
	if err != nil {
		return nil, err
	}
	out, err := decodeMembers(d)
	if err != nil {
		return nil, r.malformed("%v", err)
	}
	return out, nil
}

// ChSessions returns the session data of the members of channel, SID -> data,
// from their gateways (a member whose gateway did not answer the router in
// time is left out).
func (r *Router) ChSessions(channel string) (map[string][]byte, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	d, err := r.query(TypeChSessions, []byte(channel))
	if err != nil {
		return nil, err
	}
	out, err := decodeSessions(d)
	if err != nil {
		return nil, r.malformed("%v", err)
	}
	return out, nil
}

// Channels returns every channel with members: name -> member count.
func (r *Router) Channels() (map[string]int, error) {
	d, err := r.query(TypeChannels, nil)
	if err != nil {
		return nil, err
	}
	out, err := decodeChannels(d)
	if err != nil {
		return nil, r.malformed("%v", err)
	}
	return out, nil
}

// Info asks the router for its status.
func (r *Router) Info() (*Info, error) {
	if err := r.write(TypeInfo, nil, nil); err != nil {
		return nil, err
	}
	d, err := r.answer(TypeInfo, 16<<20)
	if err != nil {
		return nil, err
	}
	return parseInfo(string(d))
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
		case "uids":
			info.Uids, _ = strconv.Atoi(val)
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

// The decoding of the answers' D below is shared by Router and Redis (which
// gets the same bytes from the bus's scripts). A malformed D is an error
// naming what is wrong.

func malformedf(format string, args ...interface{}) error {
	return fmt.Errorf(format, args...)
}

// decodeIsOnline puts into out, for each of sids, whether its byte of an
// IS_ONLINE answer says online.
func decodeIsOnline(sids []string, d []byte, out map[string]bool) error {
	if len(d) != len(sids) {
		return malformedf("IS_ONLINE answer of %d bytes for %d SIDs", len(d), len(sids))
	}
	for i, sid := range sids {
		if d[i] > 1 {
			return malformedf("IS_ONLINE answer byte %d", d[i])
		}
		out[sid] = d[i] == 1
	}
	return nil
}

// decodeCount reads the u32 of a UID_COUNT or CH_COUNT answer.
func decodeCount(typ uint16, d []byte) (int, error) {
	if len(d) != 4 {
		return 0, malformedf("%s answer of %d bytes, not 4", typeName(typ), len(d))
	}
	return int(binary.BigEndian.Uint32(d)), nil
}

// decodeSIDs reads a UID_SIDS answer (empty, not nil, when there are none).
func decodeSIDs(d []byte) ([]string, error) {
	if len(d)%SIDLen != 0 {
		return nil, malformedf("UID_SIDS answer of %d bytes", len(d))
	}
	out := make([]string, 0, len(d)/SIDLen)
	for i := 0; i < len(d); i += SIDLen {
		out = append(out, string(d[i:i+SIDLen]))
	}
	return out, nil
}

// decodeUID reads a SID_UID answer ("" for none).
func decodeUID(d []byte) (string, error) {
	if len(d) > MaxUID {
		return "", malformedf("SID_UID answer of %d bytes", len(d))
	}
	return string(d), nil
}

// decodeSession reads a SESSION_GET answer.
func decodeSession(d []byte) (data []byte, found bool, err error) {
	switch {
	case len(d) == 1 && d[0] == 0:
		return nil, false, nil
	case len(d) >= 1 && d[0] == 1 && len(d)-1 <= MaxSession:
		return d[1:], true, nil
	case len(d) == 0:
		return nil, false, malformedf("SESSION_GET answer of 0 bytes")
	}
	return nil, false, malformedf("SESSION_GET answer of %d bytes, found = %d", len(d), d[0])
}

// decodeMembers reads a CH_MEMBERS answer: SID -> uid ("" when unbound).
func decodeMembers(d []byte) (map[string]string, error) {
	out := make(map[string]string)
	for i := 0; i < len(d); {
		if len(d)-i < SIDLen+1 {
			return nil, malformedf("CH_MEMBERS answer cut short")
		}
		sid := string(d[i : i+SIDLen])
		n := int(d[i+SIDLen])
		i += SIDLen + 1
		if n > MaxUID || len(d)-i < n {
			return nil, malformedf("CH_MEMBERS answer cut short or a uid over %d bytes", MaxUID)
		}
		out[sid] = string(d[i : i+n])
		i += n
	}
	return out, nil
}

// decodeSessions reads a CH_SESSIONS answer: SID -> data.
func decodeSessions(d []byte) (map[string][]byte, error) {
	out := make(map[string][]byte)
	for i := 0; i < len(d); {
		if len(d)-i < SIDLen+4 {
			return nil, malformedf("CH_SESSIONS answer cut short")
		}
		sid := string(d[i : i+SIDLen])
		n := binary.BigEndian.Uint32(d[i+SIDLen:])
		i += SIDLen + 4
		if n > MaxSession || uint32(len(d)-i) < n {
			return nil, malformedf("CH_SESSIONS answer cut short or data over %d bytes", MaxSession)
		}
		out[sid] = d[i : i+int(n)]
		i += int(n)
	}
	return out, nil
}

// decodeChannels reads a CHANNELS answer: name -> member count.
func decodeChannels(d []byte) (map[string]int, error) {
	out := make(map[string]int)
	for i := 0; i < len(d); {
		n := int(d[i])
		if n == 0 || len(d)-i < 1+n+4 {
			return nil, malformedf("CHANNELS answer cut short or an empty name")
		}
		out[string(d[i+1:i+1+n])] = int(binary.BigEndian.Uint32(d[i+1+n:]))
		i += 1 + n + 4
	}
	return out, nil
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
			return argErrorf("fooking: a SID is %d bytes, got %q", SIDLen, sid)
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

func checkSID(sid string) error { return checkSIDs([]string{sid}) }

func checkUID(uid string) error {
	if len(uid) < 1 || len(uid) > MaxUID {
		return argErrorf("fooking: a uid is 1 to %d bytes, got %d", MaxUID, len(uid))
	}
	return nil
}

// UIDLists encodes uids as uid-list S fields (u8 len | uid, repeated), each uid
// once, each S at most MaxS bytes.
func UIDLists(uids []string) ([][]byte, error) {
	if len(uids) == 0 {
		return nil, argErrorf("fooking: the uid list is empty")
	}
	for _, uid := range uids {
		if err := checkUID(uid); err != nil {
			return nil, err
		}
	}
	var out [][]byte
	var s []byte
	seen := make(map[string]bool, len(uids))
	for _, uid := range uids {
		if seen[uid] {
			continue
		}
		seen[uid] = true
		if len(s)+1+len(uid) > MaxS {
			out = append(out, s)
			s = nil
		}
		s = append(s, byte(len(uid)))
		s = append(s, uid...)
	}
	return append(out, s), nil
}

// excludeList checks the SIDs and concatenates them, each once; at most max.
func excludeList(sids []string, max int) ([]byte, error) {
	if err := checkSIDs(sids); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(sids))
	s := make([]byte, 0, len(sids)*SIDLen)
	for _, sid := range sids {
		if !seen[sid] {
			seen[sid] = true
			s = append(s, sid...)
		}
	}
	if len(seen) > max {
		return nil, argErrorf("fooking: at most %d SIDs can be excluded, got %d", max, len(seen))
	}
	return s, nil
}

func checkChannel(channel string) error {
	if len(channel) < 1 || len(channel) > MaxChannel {
		return argErrorf("fooking: a channel name is 1 to %d bytes, got %d", MaxChannel, len(channel))
	}
	return nil
}

func (r *Router) deadline() {
	if r.Timeout > 0 {
		r.conn.SetDeadline(time.Now().Add(r.Timeout))
	}
}

// query sends a query (S, no D) and returns its answer's D.
func (r *Router) query(typ uint16, s []byte) ([]byte, error) {
	if err := r.write(typ, s, nil); err != nil {
		return nil, err
	}
	max := r.MaxAnswer
	if max <= 0 {
		max = DefaultMaxAnswer
	}
	return r.answer(typ, max)
}

func (r *Router) count(typ uint16, s []byte) (int, error) {
	d, err := r.query(typ, s)
	if err != nil {
		return 0, err
	}
	n, err := decodeCount(typ, d)
	if err != nil {
		return 0, r.malformed("%v", err)
	}
	return n, nil
}

// answer reads the answer to a query of type typ: its D, or a *RouterError for
// an ERROR answer. Anything else (a timeout, a closed connection, another
// type, an S where answers have none, a D over max) closes the connection:
// the answers behind it could no longer be matched with their queries.
func (r *Router) answer(typ uint16, max int) ([]byte, error) {
	if r.broken != nil {
		return nil, r.broken
	}
	r.deadline()
	var hdr [8]byte
	if _, err := io.ReadFull(r.conn, hdr[:]); err != nil {
		return nil, r.fail(fmt.Errorf("fooking router: reading the %s answer: %w", typeName(typ), err))
	}
	t, slen, dlen, err := answerHeader(typ, hdr[:], max)
	if err != nil {
		return nil, r.malformed("%v", err)
	}
	// Read as it comes: a header that promises more than arrives costs no
	// more memory than what arrived.
	var body bytes.Buffer
	if _, err := io.CopyN(&body, r.conn, slen+dlen); err != nil {
		return nil, r.fail(fmt.Errorf("fooking router: reading the %s answer: %w", typeName(typ), err))
	}
	b := body.Bytes()
	d, err := answerBody(typ, t, b[:slen], b[slen:])
	var re *RouterError
	if err != nil && !errors.As(err, &re) {
		return nil, r.malformed("%v", err)
	}
	return d, err
}

// The checks of an answer below are shared by Router and NATS (which gets the
// router's answer message as a NATS reply).

// answerHeader checks the 8-byte header of the answer to a query of type typ:
// its type (typ, or ERROR but to INFO) and a D of at most max bytes. It
// returns the answer's type and the lengths of its S and D.
func answerHeader(typ uint16, hdr []byte, max int) (t uint16, slen, dlen int64, err error) {
	t = binary.BigEndian.Uint16(hdr[0:])
	slen = int64(binary.BigEndian.Uint16(hdr[2:]))
	dlen = int64(binary.BigEndian.Uint32(hdr[4:]))
	if t != typ && (t != TypeError || typ == TypeInfo) {
		return 0, 0, 0, malformedf("expected an %s answer, got type %d", typeName(typ), t)
	}
	if dlen > int64(max) {
		return 0, 0, 0, malformedf("%s answer of %d bytes, over %d", typeName(typ), dlen, max)
	}
	return t, slen, dlen, nil
}

// answerBody reads the S and D of an answer of type t (from answerHeader): the
// D, a *RouterError for an ERROR about typ, or an error naming what is wrong.
func answerBody(typ, t uint16, s, d []byte) ([]byte, error) {
	// INFO's S was always skipped; the v2 answers have none.
	if len(s) != 0 && typ != TypeInfo {
		return nil, malformedf("%s answer with an S of %d bytes", typeName(typ), len(s))
	}
	if t == TypeError {
		if len(d) < 2 || binary.BigEndian.Uint16(d) != typ {
			return nil, malformedf("ERROR answer that is not about %s", typeName(typ))
		}
		return nil, &RouterError{Type: typ, Text: string(d[2:])}
	}
	return d, nil
}

// fail closes the connection after err: every later call returns ErrBroken.
func (r *Router) fail(err error) error {
	if r.broken == nil {
		r.broken = fmt.Errorf("%w (%v)", ErrBroken, err)
		r.conn.Close()
	}
	return err
}

// malformed: an answer that is not what was asked for.
func (r *Router) malformed(format string, args ...interface{}) error {
	return r.fail(fmt.Errorf("fooking router: "+format+" (connection closed)", args...))
}

// write sends header, S and D with one writev, without copying D.
func (r *Router) write(typ uint16, s, d []byte) error {
	if r.broken != nil {
		return r.broken
	}
	hdr := header(typ, len(s), len(d))
	r.deadline()
	bufs := net.Buffers{hdr[:], s, d}
	if _, err := bufs.WriteTo(r.conn); err != nil {
		return fmt.Errorf("fooking router: %w", err)
	}
	return nil
}
