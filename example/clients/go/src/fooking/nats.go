package fooking

// NATS is the transport for gateways that run with BUS = "nats://...": a
// backend publishes the very messages a router with that BUS would publish
// (each payload one router-protocol message, Encode) on the subjects the
// gateway workers subscribe to, under their BUS_PREFIX:
//
//	<prefix>all                      SEND_ALL, SEND_ALL_EX
//	<prefix>gw.<server>.<worker>     KICK, SEND_MSG, CH_ADD, CH_DEL, BIND, UNBIND,
//	                                 SESSION_SET with only the SIDs of that gateway
//	                                 worker (read out of each SID), at most MaxSIDs
//	<prefix>ch.<channel>             CH_PUB, CH_PUB_EX
//	<prefix>u.<uid>                  SEND_UID, KICK_UID: one message per distinct
//	                                 uid, S = that uid alone (u8 len | uid)
//
// A channel name or uid in a subject is escaped (NATSName): every byte outside
// [A-Za-z0-9_-] is written %XX (uppercase hex), so '.', '*', '>', spaces and
// '%' cannot break the subject; the empty name is "%".
//
// Commands need nothing but the NATS servers. Info and the queries do need a
// router on the bus: they are NATS requests on <prefix>api, which the routers
// with this BUS serve in the queue group "fooking-routers" (one router takes
// each request): the request is the router-protocol query message, the reply
// the router's answer message (possibly ERROR, which is a *RouterError, as from
// Router). With no router on the bus a query fails at once with an error
// wrapping ErrNoRouter (and nats.ErrNoResponders); a router that does not
// answer within Timeout gives an error wrapping ErrNoRouter and
// nats.ErrTimeout.
//
// The workers apply a command when its message reaches them: a query right
// behind a command may not see it yet (the router asks the workers, and its
// question can overtake the command). Errors: a bad argument matches
// ErrInvalidArgument and nothing is published; a message over the server's
// max_payload is an error wrapping nats.ErrMaxPayload, and nothing of the call
// is published; an answer over MaxAnswer is a *RouterError.
//
// It uses nats.go (Debian: golang-github-nats-io-go-nats-dev), so build with
// GO111MODULE=off GOPATH=<this GOPATH>:/usr/share/gocode.
//
//	n, err := fooking.ConnectNATS("nats://127.0.0.1:4222", fooking.DefaultBusPrefix)
//	if err != nil { ... }
//	defer n.Close()
//	n.SendMsg([]string{sid}, []byte("hello"))
//	online, err := n.Online(sid) // through a router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSQueueGroup is the queue group of the routers' <prefix>api subscription.
const NATSQueueGroup = "fooking-routers"

// ErrNoRouter is wrapped by the error of a query that no router answered: none
// is subscribed to <prefix>api (with nats.ErrNoResponders), or none answered
// within NATS.Timeout (with nats.ErrTimeout).
var ErrNoRouter = errors.New("fooking nats: no router answered on the bus")

// noRouterError: a query no router answered; it matches ErrNoRouter and
// wraps nats.go's error (nats.ErrNoResponders, nats.ErrTimeout).
type noRouterError struct {
	msg string
	err error
}

func (e *noRouterError) Error() string {
	return "fooking nats: " + e.msg + ": " + e.err.Error()
}
func (e *noRouterError) Is(target error) bool { return target == ErrNoRouter }
func (e *noRouterError) Unwrap() error        { return e.err }

// NATS publishes commands on the NATS message bus and sends queries to the
// routers there. It is safe for concurrent use (set Timeout and MaxAnswer
// before sharing it).
type NATS struct {
	busCommands // Kick, SendMsg, SendAll, ChAdd, ChDel, ChPub, BindUid, UnbindUid, SendToUid, KickUid, SetSession
	nc          *nats.Conn
	prefix      string
	owned       bool
	// Timeout bounds each query's wait for a router's answer (0:
	// DefaultNATSTimeout).
	Timeout time.Duration
	// MaxAnswer bounds the answer D a query accepts (0: DefaultMaxAnswer); a
	// bigger one is a *RouterError.
	MaxAnswer int
}

// DefaultNATSTimeout is how long a query waits for a router's answer unless
// NATS.Timeout says otherwise: above the routers' own deadline for the
// gateway workers (2 s).
const DefaultNATSTimeout = 5 * time.Second

// ConnectNATS connects to the gateways' BUS:
// "nats://host:port[,host:port...]", "nats://user:password@host:port,..." or
// "nats://token@host:port,..." (each server may repeat "nats://"); prefix is
// their BUS_PREFIX (DefaultBusPrefix unless they set one). The servers are
// tried in the order given, as the gateways do, and after a lost connection
// it reconnects for ever (publishes meanwhile are buffered by nats.go). opts
// are added after those (e.g. nats.Secure for TLS).
func ConnectNATS(url, prefix string, opts ...nats.Option) (*NATS, error) {
	if err := checkNATSPrefix(prefix); err != nil {
		return nil, err
	}
	servers, user, pass, token, err := ParseNATSURL(url)
	if err != nil {
		return nil, err
	}
	o := []nats.Option{nats.Name("fooking go backend"), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.Timeout(5 * time.Second)}
	if user != "" || pass != "" {
		o = append(o, nats.UserInfo(user, pass))
	}
	if token != "" {
		o = append(o, nats.Token(token))
	}
	nc, err := nats.Connect(strings.Join(servers, ","), append(o, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("fooking nats: %w", err)
	}
	n := &NATS{nc: nc, prefix: prefix, owned: true}
	n.busCommands = busCommands{n}
	return n, nil
}

// NewNATS uses a connection the application already has.
func NewNATS(nc *nats.Conn, prefix string) *NATS {
	n := &NATS{nc: nc, prefix: prefix}
	n.busCommands = busCommands{n}
	return n
}

// Close flushes what was published and closes the connection ConnectNATS made
// (a connection given to NewNATS is left open).
func (n *NATS) Close() error {
	if n.owned {
		n.nc.Close()
	}
	return nil
}

// Flush waits until the server has received everything published so far (one
// round trip, at most Timeout). Commands do not wait: nats.go sends them in
// the background.
func (n *NATS) Flush() error {
	if err := n.nc.FlushTimeout(n.timeout()); err != nil {
		return fmt.Errorf("fooking nats: flush: %w", err)
	}
	return nil
}

// Conn is the NATS connection.
func (n *NATS) Conn() *nats.Conn { return n.nc }

// ParseNATSURL splits a fooking NATS BUS URL as the gateways do (it takes
// what they take): the servers (each "nats://host:port"), and the user and
// password ("user:pass@") or the token ("token@") before the first '@'. A
// malformed URL is an error matching ErrInvalidArgument.
func ParseNATSURL(url string) (servers []string, user, pass, token string, err error) {
	const authMax, hostMax, serversMax = 255, 291, 16
	if !strings.HasPrefix(url, "nats://") {
		return nil, "", "", "", argErrorf("fooking nats: the URL must start with nats://, got %q", url)
	}
	p := url[len("nats://"):]
	if at := strings.IndexByte(p, '@'); at >= 0 {
		cred := p[:at]
		if len(cred) == 0 || len(cred) > authMax {
			return nil, "", "", "", argErrorf("fooking nats: the credentials before '@' must be 1..%d bytes", authMax)
		}
		if u, pw, ok := strings.Cut(cred, ":"); ok {
			user, pass = u, pw
		} else {
			token = cred
		}
		p = p[at+1:]
	}
	for _, s := range strings.Split(p, ",") {
		s = strings.TrimPrefix(s, "nats://")
		colon := strings.LastIndexByte(s, ':') // "[::1]:4222"
		if len(s) == 0 || colon <= 0 || len(s) > hostMax {
			return nil, "", "", "", argErrorf("fooking nats: each server must be host:port, got %q", s)
		}
		port, err := strconv.Atoi(s[colon+1:])
		if err != nil || port < 1 || port > 65535 {
			return nil, "", "", "", argErrorf("fooking nats: bad port in %q", s)
		}
		if strings.ContainsAny(s, "/@ ?") {
			return nil, "", "", "", argErrorf("fooking nats: bad server %q", s)
		}
		if len(servers) == serversMax {
			return nil, "", "", "", argErrorf("fooking nats: at most %d servers", serversMax)
		}
		servers = append(servers, "nats://"+s)
	}
	return servers, user, pass, token, nil
}

// checkNATSPrefix: what the gateways accept as BUS_PREFIX with a NATS BUS.
func checkNATSPrefix(prefix string) error {
	bad := len(prefix) > 127 || strings.HasPrefix(prefix, ".") || strings.Contains(prefix, "..")
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		bad = bad || c == '*' || c == '>' || c <= ' ' || c >= 127
	}
	if bad {
		return argErrorf("fooking nats: a BUS_PREFIX is up to 127 printable bytes without spaces, "+
			"'*', '>', a leading '.' or \"..\", got %q", prefix)
	}
	return nil
}

// NATSName is a name (channel, uid) as it stands in a subject: bytes outside
// [A-Za-z0-9_-] as %XX (uppercase hex), the empty name as "%".
func NATSName(name string) string {
	if name == "" {
		return "%"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// ---- backend API v2: commands (published, no answer) ----

// ---- backend API v2: queries (a router on the bus answers) ----

// IsOnline tells, for each SID, whether the session is connected to a gateway
// (one IS_ONLINE per MaxSIDs SIDs).
func (n *NATS) IsOnline(sids []string) (map[string]bool, error) {
	if err := checkHexSIDs(sids...); err != nil {
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
		d, err := n.query(TypeIsOnline, s)
		if err != nil {
			return nil, err
		}
		if err := decodeIsOnline(chunk, d, out); err != nil {
			return nil, fmt.Errorf("fooking nats: %w", err)
		}
	}
	return out, nil
}

// Online tells whether the session is connected (IsOnline of one SID).
func (n *NATS) Online(sid string) (bool, error) {
	m, err := n.IsOnline([]string{sid})
	if err != nil {
		return false, err
	}
	return m[sid], nil
}

// IsUidOnline returns how many sessions are bound to uid (0: offline).
func (n *NATS) IsUidOnline(uid string) (int, error) {
	return n.count(TypeUIDCount, uid, checkUID)
}

// GetSidsByUid returns the SIDs of the sessions bound to uid, in no particular
// order (empty, not nil, when there are none).
func (n *NATS) GetSidsByUid(uid string) ([]string, error) {
	if err := checkUID(uid); err != nil {
		return nil, err
	}
	d, err := n.query(TypeUIDSIDs, []byte(uid))
	if err != nil {
		return nil, err
	}
	return natsDecoded(decodeSIDs(d))
}

// GetUidBySid returns the session's uid: "" when it is unbound or not connected.
func (n *NATS) GetUidBySid(sid string) (string, error) {
	if err := checkHexSIDs(sid); err != nil {
		return "", err
	}
	d, err := n.query(TypeSIDUID, []byte(sid))
	if err != nil {
		return "", err
	}
	return natsDecoded(decodeUID(d))
}

// GetSession returns the session's data (empty when it has none) and found =
// true; found = false when there is no such session (or its gateway did not
// answer the router in time).
func (n *NATS) GetSession(sid string) (data []byte, found bool, err error) {
	if err := checkHexSIDs(sid); err != nil {
		return nil, false, err
	}
	d, err := n.query(TypeSessionGet, []byte(sid))
	if err != nil {
		return nil, false, err
	}
	data, found, err = decodeSession(d)
	if err != nil {
		return nil, false, fmt.Errorf("fooking nats: %w", err)
	}
	return data, found, nil
}

// ChCount returns how many sessions are members of channel.
func (n *NATS) ChCount(channel string) (int, error) {
	return n.count(TypeChCount, channel, checkChannel)
}

// ChMembers returns the members of channel, SID -> uid, with "" for a member
// that is unbound.
func (n *NATS) ChMembers(channel string) (map[string]string, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	d, err := n.query(TypeChMembers, []byte(channel))
	if err != nil {
		return nil, err
	}
	return natsDecoded(decodeMembers(d))
}

// ChSessions returns the session data of the members of channel, SID -> data.
func (n *NATS) ChSessions(channel string) (map[string][]byte, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	d, err := n.query(TypeChSessions, []byte(channel))
	if err != nil {
		return nil, err
	}
	return natsDecoded(decodeSessions(d))
}

// Channels returns every channel with members: name -> member count.
func (n *NATS) Channels() (map[string]int, error) {
	d, err := n.query(TypeChannels, nil)
	if err != nil {
		return nil, err
	}
	return natsDecoded(decodeChannels(d))
}

// Info is a router's INFO: the sum of what every gateway worker on the bus
// holds, as Router.Info gives it.
func (n *NATS) Info() (*Info, error) {
	d, err := n.request(TypeInfo, nil, 16<<20)
	if err != nil {
		return nil, err
	}
	return parseInfo(string(d))
}

func natsDecoded[T any](v T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, fmt.Errorf("fooking nats: %w", err)
	}
	return v, nil
}

func (n *NATS) timeout() time.Duration {
	if n.Timeout > 0 {
		return n.Timeout
	}
	return DefaultNATSTimeout
}

func (n *NATS) count(typ uint16, arg string, check func(string) error) (int, error) {
	if err := check(arg); err != nil {
		return 0, err
	}
	d, err := n.query(typ, []byte(arg))
	if err != nil {
		return 0, err
	}
	return natsDecoded(decodeCount(typ, d))
}

// query asks a router (S, no D): the answer's D, a *RouterError for its ERROR
// answer or one over MaxAnswer.
func (n *NATS) query(typ uint16, s []byte) ([]byte, error) {
	max := n.MaxAnswer
	if max <= 0 {
		max = DefaultMaxAnswer
	}
	return n.request(typ, s, max)
}

// request sends the query message on <prefix>api and reads the router's
// answer with the checks of Router's (answerHeader, answerBody).
func (n *NATS) request(typ uint16, s []byte, max int) ([]byte, error) {
	subj := n.prefix + "api"
	timeout := n.timeout()
	m, err := n.nc.Request(subj, Encode(typ, s, nil), timeout)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, &noRouterError{fmt.Sprintf("%s: no router is subscribed to %s (queries need a "+
			"router with this BUS; commands do not)", typeName(typ), subj), err}
	case errors.Is(err, nats.ErrTimeout):
		return nil, &noRouterError{fmt.Sprintf("%s: no router answered on %s within %v",
			typeName(typ), subj, timeout), err}
	case err != nil:
		return nil, fmt.Errorf("fooking nats: %s: %w", typeName(typ), err)
	}
	msg := m.Data
	if len(msg) < 8 {
		return nil, fmt.Errorf("fooking nats: %s answer of %d bytes, shorter than a header",
			typeName(typ), len(msg))
	}
	if t := binary.BigEndian.Uint16(msg); t == typ && int64(binary.BigEndian.Uint32(msg[4:])) > int64(max) {
		return nil, &RouterError{Type: typ, Text: fmt.Sprintf("answer over the maximum (%d bytes)", max)}
	}
	t, slen, dlen, err := answerHeader(typ, msg, max)
	if err != nil {
		return nil, fmt.Errorf("fooking nats: %w", err)
	}
	if int64(len(msg)) != 8+slen+dlen {
		return nil, fmt.Errorf("fooking nats: %s answer of %d bytes, its header says %d",
			typeName(typ), len(msg), 8+slen+dlen)
	}
	d, err := answerBody(typ, t, msg[8:8+slen], msg[8+slen:])
	var re *RouterError
	if err != nil && !errors.As(err, &re) {
		return nil, fmt.Errorf("fooking nats: %w", err)
	}
	return d, err
}

// uidsCommand publishes SEND_UID / KICK_UID once per distinct uid, on its
// subject, with S = that uid: what a router does with the uid lists.
func (n *NATS) uidsCommand(typ uint16, uids []string, d []byte) error {
	if _, err := UIDLists(uids); err != nil { // the checks of every transport
		return err
	}
	var msgs []pubMsg
	seen := make(map[string]bool, len(uids))
	for _, uid := range uids {
		if seen[uid] {
			continue
		}
		seen[uid] = true
		s := append([]byte{byte(len(uid))}, uid...)
		msgs = append(msgs, pubMsg{n.prefix + "u." + NATSName(uid), Encode(typ, s, d)})
	}
	return n.publish(msgs)
}

// publish publishes the messages in order; none when one of them is over the
// server's max_payload.
func (n *NATS) publish(msgs []pubMsg) error {
	if max := n.nc.MaxPayload(); max > 0 {
		for _, m := range msgs {
			if int64(len(m.msg)) > max {
				return fmt.Errorf("fooking nats: a %d-byte message on %s: %w (%d bytes): nothing was published",
					len(m.msg), m.channel, nats.ErrMaxPayload, max)
			}
		}
	}
	for _, m := range msgs {
		if err := n.nc.Publish(m.channel, m.msg); err != nil {
			return fmt.Errorf("fooking nats: publish on %s: %w", m.channel, err)
		}
	}
	return nil
}

func (n *NATS) gwSubject(server, worker int) string {
	return fmt.Sprintf("%sgw.%d.%d", n.prefix, server, worker)
}
func (n *NATS) allSubject() string              { return n.prefix + "all" }
func (n *NATS) chSubject(channel string) string { return n.prefix + "ch." + NATSName(channel) }
