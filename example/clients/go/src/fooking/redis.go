package fooking

// Redis is the router-less transport: when the gateways run with
// BUS = "redis://...", a backend publishes the very messages it would send to the
// router (Encode) on the channels the gateway workers subscribe to:
//
//	<prefix>all                      SEND_ALL
//	<prefix>gw:<server>:<worker>     KICK, SEND_MSG, CH_ADD, CH_DEL with only the SIDs
//	                                 of that gateway worker (read out of each SID)
//	<prefix>ch:<channel>             CH_PUB
//
// and reads the presence the workers keep: <prefix>hb:<server>:<worker>
// ("<clients> <channels>", expires unless refreshed), <prefix>sids:<server>:<worker>
// (their live SIDs) and <prefix>chans:<server>:<worker> (their channels).
//
// The backend API v2 (uids, session data, exclusions, the queries) is not
// supported on the Redis transport yet: Redis has no BindUid, SendToUid,
// GetSession, ... (a compile error, not a surprise at run time), and SendAll
// and ChPub with SIDs to exclude return an error wrapping ErrNotOnRedis,
// publishing nothing. Use Router for those.
//
// It uses redigo (Debian: golang-github-gomodule-redigo-dev), so build with
// GO111MODULE=off GOPATH=<this GOPATH>:/usr/share/gocode.
//
//	r, err := fooking.ConnectRedis("redis://127.0.0.1:6379", fooking.DefaultBusPrefix)
//	if err != nil { ... }
//	defer r.Close()
//	r.SendMsg([]string{sid}, []byte("hello"))
//	online, err := r.Online(sid)

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// DefaultBusPrefix is the gateways' default BUS_PREFIX.
const DefaultBusPrefix = "fooking:"

// ErrNotOnRedis is wrapped by the error of a backend API v2 call the Redis
// transport does not support yet.
var ErrNotOnRedis = errors.New("not supported on the Redis transport yet")

// Redis publishes commands on the Redis message bus. Unlike Router it is safe
// for concurrent use: every call takes a connection from a pool.
type Redis struct {
	pool   *redis.Pool
	prefix string
	owned  bool
}

// ConnectRedis connects to "redis://[[user]:password@]host[:port][/db]" (the
// gateways' BUS); prefix is their BUS_PREFIX (DefaultBusPrefix unless they set one).
func ConnectRedis(url, prefix string) (*Redis, error) {
	pool := &redis.Pool{
		MaxIdle:     4,
		IdleTimeout: 4 * time.Minute,
		Dial: func() (redis.Conn, error) {
			return redis.DialURL(url, redis.DialConnectTimeout(5*time.Second),
				redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
		},
		TestOnBorrow: func(c redis.Conn, idle time.Time) error {
			if time.Since(idle) < time.Minute {
				return nil
			}
			_, err := c.Do("PING")
			return err
		},
	}
	c := pool.Get()
	_, err := c.Do("PING")
	c.Close()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("fooking redis: %w", err)
	}
	return &Redis{pool: pool, prefix: prefix, owned: true}, nil
}

// NewRedis uses a pool the application already has.
func NewRedis(pool *redis.Pool, prefix string) *Redis {
	return &Redis{pool: pool, prefix: prefix}
}

// Close closes the pool ConnectRedis made (a pool given to NewRedis is left open).
func (r *Redis) Close() error {
	if r.owned {
		return r.pool.Close()
	}
	return nil
}

// Kick closes these clients.
func (r *Redis) Kick(sids []string) error { return r.sidsCommand(TypeKick, sids, nil) }

// SendMsg delivers msg to these clients.
func (r *Redis) SendMsg(sids []string, msg []byte) error {
	return r.sidsCommand(TypeSendMsg, sids, msg)
}

// SendAll delivers msg to every client of every gateway. exclude is the
// router transport's (backend API v2): here it must be empty, or nothing is
// published and the error wraps ErrNotOnRedis.
func (r *Redis) SendAll(msg []byte, exclude ...string) error {
	if len(exclude) > 0 {
		return fmt.Errorf("fooking redis: SendAll with SIDs to exclude: %w", ErrNotOnRedis)
	}
	return r.publish([]pubMsg{{r.prefix + "all", Encode(TypeSendAll, nil, msg)}})
}

// ChAdd makes these clients join channel.
func (r *Redis) ChAdd(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return r.sidsCommand(TypeChAdd, sids, []byte(channel))
}

// ChDel makes these clients leave channel.
func (r *Redis) ChDel(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return r.sidsCommand(TypeChDel, sids, []byte(channel))
}

// ChPub delivers msg to every member of channel; exclude must be empty (as for
// SendAll).
func (r *Redis) ChPub(channel string, msg []byte, exclude ...string) error {
	if len(exclude) > 0 {
		return fmt.Errorf("fooking redis: ChPub with SIDs to exclude: %w", ErrNotOnRedis)
	}
	if err := checkChannel(channel); err != nil {
		return err
	}
	return r.publish([]pubMsg{{r.prefix + "ch:" + channel, Encode(TypeChPub, []byte(channel), msg)}})
}

// Online tells whether the session is connected: its SID is in the live set of
// the gateway worker named by the SID, and that worker's heartbeat has not expired.
func (r *Redis) Online(sid string) (bool, error) {
	server, worker, err := GatewayOf(sid)
	if err != nil {
		return false, err
	}
	gw := fmt.Sprintf("%d:%d", server, worker)
	c := r.pool.Get()
	defer c.Close()
	c.Send("SISMEMBER", r.prefix+"sids:"+gw, sid)
	c.Send("EXISTS", r.prefix+"hb:"+gw)
	res, err := redis.Ints(c.Do(""))
	if err != nil {
		return false, fmt.Errorf("fooking redis: %w", err)
	}
	return len(res) == 2 && res[0] == 1 && res[1] > 0, nil
}

// Info is the status from the gateway workers' heartbeats, as Router.Info gives
// it: Channels counts distinct channels with members; Gateways are ordered by
// server, then worker.
func (r *Redis) Info() (*Info, error) {
	c := r.pool.Get()
	defer c.Close()
	hb := r.prefix + "hb:"
	pattern := globEscape(hb) + "*"
	seen := map[string]bool{}
	var gws []GatewayInfo
	var keys []interface{}
	for cursor := "0"; ; {
		v, err := redis.Values(c.Do("SCAN", cursor, "MATCH", pattern, "COUNT", 1000))
		if err != nil {
			return nil, fmt.Errorf("fooking redis: SCAN: %w", err)
		}
		var batch []string
		if _, err := redis.Scan(v, &cursor, &batch); err != nil {
			return nil, fmt.Errorf("fooking redis: SCAN: %w", err)
		}
		for _, k := range batch {
			if seen[k] {
				continue
			}
			seen[k] = true
			s, w, ok := strings.Cut(k[len(hb):], ":")
			server, err1 := strconv.Atoi(s)
			worker, err2 := strconv.Atoi(w)
			if !ok || err1 != nil || err2 != nil || server < 0 || worker < 0 {
				continue
			}
			gws = append(gws, GatewayInfo{Server: server, Worker: worker})
		}
		if cursor == "0" {
			break
		}
	}
	info := &Info{}
	if len(gws) == 0 {
		return info, nil
	}
	sort.Slice(gws, func(i, j int) bool {
		if gws[i].Server != gws[j].Server {
			return gws[i].Server < gws[j].Server
		}
		return gws[i].Worker < gws[j].Worker
	})
	for _, g := range gws {
		keys = append(keys, fmt.Sprintf("%s%d:%d", hb, g.Server, g.Worker))
	}
	vals, err := redis.Values(c.Do("MGET", keys...))
	if err != nil {
		return nil, fmt.Errorf("fooking redis: MGET: %w", err)
	}
	var chans []interface{}
	for i, g := range gws {
		if i >= len(vals) || vals[i] == nil {
			continue // expired since SCAN
		}
		v, _ := redis.String(vals[i], nil)
		f := strings.Fields(v)
		if len(f) > 0 {
			g.Clients, _ = strconv.Atoi(f[0])
		}
		if len(f) > 1 {
			g.Channels, _ = strconv.Atoi(f[1])
		}
		info.Gateways = append(info.Gateways, g)
		info.Clients += g.Clients
		chans = append(chans, fmt.Sprintf("%schans:%d:%d", r.prefix, g.Server, g.Worker))
	}
	if len(chans) > 0 {
		union, err := redis.Values(c.Do("SUNION", chans...))
		if err != nil {
			return nil, fmt.Errorf("fooking redis: SUNION: %w", err)
		}
		info.Channels = len(union)
	}
	return info, nil
}

// GatewayOf reads the server id and worker id out of a SID (16 hex digits:
// 40 bits time, 13 bits server, 5 bits worker, 6 bits sequence).
func GatewayOf(sid string) (server, worker int, err error) {
	if len(sid) != SIDLen {
		return 0, 0, argErrorf("fooking: a SID is %d hex digits, got %q", SIDLen, sid)
	}
	v, err := strconv.ParseUint(sid, 16, 64)
	if err != nil {
		return 0, 0, argErrorf("fooking: a SID is %d hex digits, got %q", SIDLen, sid)
	}
	return int(v>>11) & 0x1fff, int(v>>6) & 0x1f, nil
}

type pubMsg struct {
	channel string
	msg     []byte
}

// sidsCommand splits the SIDs by gateway worker (in order of first appearance),
// at most MaxSIDs per message, and publishes each on that worker's channel.
func (r *Redis) sidsCommand(typ uint16, sids []string, d []byte) error {
	if err := checkSIDs(sids); err != nil {
		return err
	}
	var order []string
	groups := map[string][]string{}
	for _, sid := range sids {
		server, worker, err := GatewayOf(sid)
		if err != nil {
			return err
		}
		gw := fmt.Sprintf("%d:%d", server, worker)
		if _, ok := groups[gw]; !ok {
			order = append(order, gw)
		}
		groups[gw] = append(groups[gw], sid)
	}
	var msgs []pubMsg
	for _, gw := range order {
		for _, s := range joinSIDs(groups[gw]) {
			msgs = append(msgs, pubMsg{r.prefix + "gw:" + gw, Encode(typ, s, d)})
		}
	}
	return r.publish(msgs)
}

// publish PUBLISHes the messages in order, pipelined on one connection.
func (r *Redis) publish(msgs []pubMsg) error {
	if len(msgs) == 0 {
		return nil
	}
	c := r.pool.Get()
	defer c.Close()
	for _, m := range msgs {
		if err := c.Send("PUBLISH", m.channel, m.msg); err != nil {
			return fmt.Errorf("fooking redis: PUBLISH: %w", err)
		}
	}
	replies, err := redis.Values(c.Do(""))
	if err != nil {
		return fmt.Errorf("fooking redis: PUBLISH: %w", err)
	}
	for _, rep := range replies {
		if e, ok := rep.(redis.Error); ok {
			return fmt.Errorf("fooking redis: PUBLISH: %w", e)
		}
	}
	return nil
}

// globEscape quotes the glob characters of a key prefix for SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, ch := range []byte(s) {
		switch ch {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(ch)
	}
	return b.String()
}
