package fooking

// Redis is the router-less transport: when the gateways run with
// BUS = "redis://...", a backend publishes the very messages it would send to the
// router (Encode) on the channels the gateway workers subscribe to:
//
//	<prefix>all                      SEND_ALL, SEND_ALL_EX
//	<prefix>gw:<server>:<worker>     KICK, SEND_MSG, CH_ADD, CH_DEL, BIND, UNBIND,
//	                                 SESSION_SET with only the SIDs of that gateway
//	                                 worker (read out of each SID)
//	<prefix>ch:<channel>             CH_PUB, CH_PUB_EX
//
// SendToUid and KickUid, the backend API v2 queries and Info run the Lua
// scripts a router with BUS runs (BusScripts, the same text: EVALSHA, EVAL
// when Redis does not have it yet) over the presence the workers keep:
// <prefix>hb:<server>:<worker> ("<clients> <channels>", expires unless
// refreshed), sids:, chans:, sidu: (SID -> uid), sess: (SID -> data) of each
// worker, u:<uid> and chm:<channel> (SIDs), and the registry <prefix>workers.
//
// The workers apply a command when its message reaches them and write the
// change to Redis after that: a query right behind a command may not see it
// yet. Errors: a bad argument matches ErrInvalidArgument and nothing is
// published; an answer over MaxAnswer is a *RouterError (as a router refuses
// one over ROUTER_ANSWER_MAX); Redis failing is another error.
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
	"fmt"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

// DefaultBusPrefix is the gateways' default BUS_PREFIX.
const DefaultBusPrefix = "fooking:"

// Redis publishes commands on the Redis message bus. Unlike Router it is safe
// for concurrent use: every call takes a connection from a pool (set
// MaxAnswer before sharing it).
type Redis struct {
	busCommands // Kick, SendMsg, SendAll, ChAdd, ChDel, ChPub, BindUid, UnbindUid, SendToUid, KickUid, SetSession
	pool        *redis.Pool
	prefix      string
	owned       bool
	// MaxAnswer bounds the answer D a query accepts (0: DefaultMaxAnswer); a
	// bigger one is a *RouterError.
	MaxAnswer int
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
	r := &Redis{pool: pool, prefix: prefix, owned: true}
	r.busCommands = busCommands{r}
	return r, nil
}

// NewRedis uses a pool the application already has.
func NewRedis(pool *redis.Pool, prefix string) *Redis {
	r := &Redis{pool: pool, prefix: prefix}
	r.busCommands = busCommands{r}
	return r
}

// Close closes the pool ConnectRedis made (a pool given to NewRedis is left open).
func (r *Redis) Close() error {
	if r.owned {
		return r.pool.Close()
	}
	return nil
}

// ---- backend API v2: commands (published, no answer) ----

// ---- backend API v2: queries (one script each, as a router with BUS runs) ----

// IsOnline tells, for each SID, whether the session is connected to a gateway.
func (r *Redis) IsOnline(sids []string) (map[string]bool, error) {
	if err := checkHexSIDs(sids...); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(sids))
	if len(sids) == 0 {
		return out, nil
	}
	s := make([]byte, 0, len(sids)*SIDLen)
	for _, sid := range sids {
		s = append(s, sid...)
	}
	d, err := r.query(TypeIsOnline, "is_online", s, "")
	if err != nil {
		return nil, err
	}
	if err := decodeIsOnline(sids, d, out); err != nil {
		return nil, fmt.Errorf("fooking redis: %w", err)
	}
	return out, nil
}

// IsUidOnline returns how many sessions are bound to uid (0: offline).
func (r *Redis) IsUidOnline(uid string) (int, error) {
	return r.count(TypeUIDCount, "uid_count", uid, checkUID)
}

// GetSidsByUid returns the SIDs of the sessions bound to uid, in no particular
// order (empty, not nil, when there are none).
func (r *Redis) GetSidsByUid(uid string) ([]string, error) {
	if err := checkUID(uid); err != nil {
		return nil, err
	}
	d, err := r.query(TypeUIDSIDs, "uid_sids", []byte(uid), "")
	if err != nil {
		return nil, err
	}
	return wrapDecoded(decodeSIDs(d))
}

// GetUidBySid returns the session's uid: "" when it is unbound or not connected.
func (r *Redis) GetUidBySid(sid string) (string, error) {
	if err := checkHexSIDs(sid); err != nil {
		return "", err
	}
	d, err := r.query(TypeSIDUID, "sid_uid", []byte(sid), "")
	if err != nil {
		return "", err
	}
	return wrapDecoded(decodeUID(d))
}

// GetSession returns the session's data (empty when it has none) and found =
// true; found = false when there is no such session.
func (r *Redis) GetSession(sid string) (data []byte, found bool, err error) {
	if err := checkHexSIDs(sid); err != nil {
		return nil, false, err
	}
	d, err := r.query(TypeSessionGet, "session_get", []byte(sid), "")
	if err != nil {
		return nil, false, err
	}
	data, found, err = decodeSession(d)
	if err != nil {
		return nil, false, fmt.Errorf("fooking redis: %w", err)
	}
	return data, found, nil
}

// ChCount returns how many sessions are members of channel.
func (r *Redis) ChCount(channel string) (int, error) {
	return r.count(TypeChCount, "ch_count", channel, checkChannel)
}

// ChMembers returns the members of channel, SID -> uid, with "" for a member
// that is unbound.
func (r *Redis) ChMembers(channel string) (map[string]string, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	d, err := r.query(TypeChMembers, "ch_records", []byte(channel), "sidu:")
	if err != nil {
		return nil, err
	}
	return wrapDecoded(decodeMembers(d))
}

// ChSessions returns the session data of the members of channel, SID -> data.
func (r *Redis) ChSessions(channel string) (map[string][]byte, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	d, err := r.query(TypeChSessions, "ch_records", []byte(channel), "sess:")
	if err != nil {
		return nil, err
	}
	return wrapDecoded(decodeSessions(d))
}

// Channels returns every channel with members: name -> member count.
func (r *Redis) Channels() (map[string]int, error) {
	d, err := r.query(TypeChannels, "channels", nil, "")
	if err != nil {
		return nil, err
	}
	return wrapDecoded(decodeChannels(d))
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

// Info is the status from the registry of gateway workers and their
// heartbeats (the router's INFO script), as Router.Info gives it: Channels
// counts distinct channels with members, Uids distinct bound uids; Gateways
// are ordered by server, then worker.
func (r *Redis) Info() (*Info, error) {
	v, err := r.script("info")
	if err != nil {
		return nil, err
	}
	text, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("fooking redis: INFO: the script answered %T", v)
	}
	info, err := parseInfo(string(text))
	if err != nil {
		return nil, fmt.Errorf("fooking redis: %w", err)
	}
	return info, nil
}

// BusScripts returns the Lua scripts Redis runs for SendToUid, KickUid, the
// queries and Info, by name: the text of the stateless router's (src/router_bus.c).
func BusScripts() map[string]string {
	out := make(map[string]string, len(busScriptText))
	for k, v := range busScriptText {
		out[k] = v
	}
	return out
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

// checkHexSIDs checks that every SID is 16 hex digits (what names its worker).
func checkHexSIDs(sids ...string) error {
	for _, sid := range sids {
		if _, _, err := GatewayOf(sid); err != nil {
			return err
		}
	}
	return nil
}

func wrapDecoded[T any](v T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, fmt.Errorf("fooking redis: %w", err)
	}
	return v, nil
}

// uidsCommand runs the uids script (SEND_UID, KICK_UID) once per uid list a
// router would get, so the S it publishes fits its 16 bits; each uid once.
func (r *Redis) uidsCommand(typ uint16, uids []string, d []byte) error {
	lists, err := UIDLists(uids)
	if err != nil {
		return err
	}
	for _, s := range lists {
		args := []interface{}{strconv.Itoa(int(typ)), d}
		for i := 0; i < len(s); i += 1 + int(s[i]) {
			args = append(args, s[i+1:i+1+int(s[i])])
		}
		if _, err := r.script("uids", args...); err != nil {
			return err
		}
	}
	return nil
}

func (r *Redis) count(typ uint16, name, arg string, check func(string) error) (int, error) {
	if err := check(arg); err != nil {
		return 0, err
	}
	d, err := r.query(typ, name, []byte(arg), "")
	if err != nil {
		return 0, err
	}
	return wrapDecoded(decodeCount(typ, d))
}

// query runs a query's script: its answer D, a *RouterError when it is over
// MaxAnswer.
func (r *Redis) query(typ uint16, name string, s []byte, hash string) ([]byte, error) {
	max := r.MaxAnswer
	if max <= 0 {
		max = DefaultMaxAnswer
	}
	args := []interface{}{strconv.Itoa(max), s}
	if hash != "" {
		args = append(args, hash)
	}
	v, err := r.script(name, args...)
	if err != nil {
		return nil, err
	}
	switch d := v.(type) {
	case []byte:
		return d, nil
	case int64:
		if d == 0 {
			return nil, &RouterError{Type: typ, Text: fmt.Sprintf("answer over the maximum (%d bytes)", max)}
		}
	}
	return nil, fmt.Errorf("fooking redis: %s: the script answered %T", typeName(typ), v)
}

// script runs busScripts[name] with ARGV = prefix, args...: EVALSHA, and EVAL
// when Redis does not have the script (NOSCRIPT).
func (r *Redis) script(name string, args ...interface{}) (interface{}, error) {
	c := r.pool.Get()
	defer c.Close()
	v, err := busScripts[name].Do(c, append([]interface{}{r.prefix}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("fooking redis: %s script: %w", name, err)
	}
	return v, nil
}

type pubMsg struct {
	channel string
	msg     []byte
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

// The stateless router's scripts (src/router_bus.c), byte for byte: the same
// text has the same SHA1, so Redis caches one copy for the routers and the
// backends. luaInfo: ARGV prefix. luaUIDs (SEND_UID, KICK_UID): prefix, type,
// D, the uids; it publishes once per worker holding any of them, S cut to the
// uids it holds. The queries: prefix, the largest answer, the query's S
// (luaChRecords: and "sidu:" for CH_MEMBERS, "sess:" for CH_SESSIONS); each
// returns the answer's D, or 0 over the largest answer.
const (
	// luaWID: wid(sid) is "<server>:<worker>" of a SID, nil unless 16 lowercase hex digits.
	luaWID = `local function wid(s)
  if #s ~= 16 or not string.find(s, '^[0-9a-f]+$') then return nil end
  local low = tonumber(string.sub(s, 11, 16), 16)
  return (math.floor(low / 2048) % 8192) .. ':' .. (math.floor(low / 64) % 32)
end
`
	// luaCommon: what every v2 script starts with.
	luaCommon = luaWID + `local p = ARGV[1]
local hb = {}
local function alive(id)
  local v = hb[id]
  if v == nil then v = redis.call('EXISTS', p .. 'hb:' .. id) == 1; hb[id] = v end
  return v
end
local function online(s)
  local id = wid(s)
  if id and alive(id) and redis.call('SISMEMBER', p .. 'sids:' .. id, s) == 1 then
    return id end
  return nil
end
local function bound(uid)
  return function(s)
    local id = online(s)
    if id and redis.call('HGET', p .. 'sidu:' .. id, s) == uid then return id end
    return nil
  end
end
local function live(k, ok)
  local out = {}
  for _, s in ipairs(redis.call('SMEMBERS', k)) do
    local id = ok(s)
    if id then out[#out + 1] = {s, id} else redis.call('SREM', k, s) end
  end
  return out
end
local function u16(n) return string.char(math.floor(n / 256) % 256, n % 256) end
local function u32(n) return u16(math.floor(n / 65536)) .. u16(n % 65536) end
`
	luaInfo = `local p = ARGV[1]
local rows, seen, nch, total, uids, nu = {}, {}, 0, 0, {}, 0
for _, id in ipairs(redis.call('SMEMBERS', p .. 'workers')) do
  local v = redis.call('GET', p .. 'hb:' .. id)
  if not v then
    redis.call('SREM', p .. 'workers', id)
  else
    local s, w = string.match(id, '^(%d+):(%d+)$')
    local cl, ch = string.match(v, '^(%d+) (%d+)')
    if s and cl then
      rows[#rows + 1] = {tonumber(s), tonumber(w), cl, ch}
      total = total + tonumber(cl)
      for _, c in ipairs(redis.call('SMEMBERS', p .. 'chans:' .. id)) do
        if not seen[c] then seen[c] = true; nch = nch + 1 end
      end
      for _, u in ipairs(redis.call('HVALS', p .. 'sidu:' .. id)) do
        if not uids[u] then uids[u] = true; nu = nu + 1 end
      end
    end
  end
end
table.sort(rows, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
local out = {'clients: ' .. total .. '\r\nchannels: ' .. nch .. '\r\nuids: ' .. nu .. '\r\n'}
for _, r in ipairs(rows) do
  out[#out + 1] = 'gateway: ' .. r[1] .. '\t' .. r[2] .. '\t' .. r[3] .. '\t' .. r[4] .. '\r\n'
end
return table.concat(out)
`
	luaUIDs = luaCommon + `local t, d = tonumber(ARGV[2]), ARGV[3]
local groups, order, done = {}, {}, {}
for i = 4, #ARGV do
  local uid = ARGV[i]
  if not done[uid] then
    done[uid] = true
    local got = {}
    for _, e in ipairs(live(p .. 'u:' .. uid, bound(uid))) do
      local id = e[2]
      if not got[id] then
        got[id] = true
        local g = groups[id]
        if not g then g = {}; groups[id] = g; order[#order + 1] = id end
        g[#g + 1] = string.char(#uid) .. uid
      end
    end
  end
end
for _, id in ipairs(order) do
  local s = table.concat(groups[id])
  redis.call('PUBLISH', p .. 'gw:' .. id, u16(t) .. u16(#s) .. u32(#d) .. s .. d)
end
return #order
`
	luaIsOnline = luaCommon + `local s, out = ARGV[3], {}
for i = 1, #s, 16 do out[#out + 1] = online(string.sub(s, i, i + 15)) and '\1' or '\0' end
return table.concat(out)
`
	luaUIDCount = luaCommon + `return u32(#live(p .. 'u:' .. ARGV[3], bound(ARGV[3])))
`
	luaUIDSIDs = luaCommon + `local l, out = live(p .. 'u:' .. ARGV[3], bound(ARGV[3])), {}
if #l * 16 > tonumber(ARGV[2]) then return 0 end
for i, e in ipairs(l) do out[i] = e[1] end
return table.concat(out)
`
	luaSIDUID = luaCommon + `local id = online(ARGV[3])
if not id then return '' end
return redis.call('HGET', p .. 'sidu:' .. id, ARGV[3]) or ''
`
	luaSessionGet = luaCommon + `local id = online(ARGV[3])
if not id then return '\0' end
return '\1' .. (redis.call('HGET', p .. 'sess:' .. id, ARGV[3]) or '')
`
	luaChCount = luaCommon + `return u32(#live(p .. 'chm:' .. ARGV[3], online))
`
	luaChRecords = luaCommon + `local max, h, out, n = tonumber(ARGV[2]), ARGV[4], {}, 0
for _, e in ipairs(live(p .. 'chm:' .. ARGV[3], online)) do
  local v = redis.call('HGET', p .. h .. e[2], e[1]) or ''
  local r = h == 'sidu:' and e[1] .. string.char(#v) .. v or e[1] .. u32(#v) .. v
  n = n + #r
  if n > max then return 0 end
  out[#out + 1] = r
end
return table.concat(out)
`
	luaChannels = luaCommon + `local max, seen, out, n = tonumber(ARGV[2]), {}, {}, 0
for _, id in ipairs(redis.call('SMEMBERS', p .. 'workers')) do
  if alive(id) then
    for _, ch in ipairs(redis.call('SMEMBERS', p .. 'chans:' .. id)) do
      if not seen[ch] then
        seen[ch] = true
        local m = #live(p .. 'chm:' .. ch, online)
        if m > 0 then
          n = n + 5 + #ch
          if n > max then return 0 end
          out[#out + 1] = string.char(#ch) .. ch .. u32(m)
        end
      end
    end
  end
end
return table.concat(out)
`
)

var busScripts = map[string]*redis.Script{
	"info":        redis.NewScript(0, luaInfo),
	"uids":        redis.NewScript(0, luaUIDs),
	"is_online":   redis.NewScript(0, luaIsOnline),
	"uid_count":   redis.NewScript(0, luaUIDCount),
	"uid_sids":    redis.NewScript(0, luaUIDSIDs),
	"sid_uid":     redis.NewScript(0, luaSIDUID),
	"session_get": redis.NewScript(0, luaSessionGet),
	"ch_count":    redis.NewScript(0, luaChCount),
	"ch_records":  redis.NewScript(0, luaChRecords),
	"channels":    redis.NewScript(0, luaChannels),
}

var busScriptText = map[string]string{
	"info":        luaInfo,
	"uids":        luaUIDs,
	"is_online":   luaIsOnline,
	"uid_count":   luaUIDCount,
	"uid_sids":    luaUIDSIDs,
	"sid_uid":     luaSIDUID,
	"session_get": luaSessionGet,
	"ch_count":    luaChCount,
	"ch_records":  luaChRecords,
	"channels":    luaChannels,
}

func (r *Redis) gwSubject(server, worker int) string {
	return fmt.Sprintf("%sgw:%d:%d", r.prefix, server, worker)
}
func (r *Redis) allSubject() string              { return r.prefix + "all" }
func (r *Redis) chSubject(channel string) string { return r.prefix + "ch:" + channel }
