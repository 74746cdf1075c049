<?php
/**
 * FookingRedis - backend client for fooking over the Redis message bus (PHP 8,
 * phpredis). It needs no router: it publishes the very messages a backend would
 * send to the router (FookingRouter::encode) on the channels the gateways
 * subscribe to, when the gateways run with BUS = "redis://...".
 *
 *   <prefix>all                      SEND_ALL, SEND_ALL_EX
 *   <prefix>gw:<server>:<worker>     KICK, SEND_MSG, CH_ADD, CH_DEL, BIND, UNBIND,
 *                                    SESSION_SET with only the SIDs of that gateway
 *                                    worker (read out of each SID)
 *   <prefix>ch:<channel>             CH_PUB, CH_PUB_EX
 *
 * SEND_UID and KICK_UID, the backend API v2 queries and info() run the Lua
 * scripts a router with BUS runs (SCRIPTS, the same text: EVALSHA, EVAL when
 * Redis does not have it yet) over the presence the gateway workers keep:
 * <prefix>hb:<server>:<worker> ("<clients> <channels>", expires unless
 * refreshed), sids:, chans:, sidu: (SID -> uid), sess: (SID -> data) of each
 * worker, u:<uid> and chm:<channel> (SIDs), and the registry <prefix>workers.
 *
 *   $r = new FookingRedis();
 *   $r->connect('redis://127.0.0.1:6379', 'fooking:');   // the gateways' BUS, BUS_PREFIX
 *   $r->sendMsg([$_SERVER['SESSIONID']], 'hello');
 *   $r->chAdd([$_SERVER['SESSIONID']], 'room1');
 *   $r->chPub('room1', 'someone joined');
 *   $r->bindUid($_SERVER['SESSIONID'], 'user42');
 *   var_dump($r->online($sid), $r->isUidOnline('user42'));
 *   print_r($r->info());
 *
 * Like the router, publishing is fire-and-forget: a message for a gateway worker
 * that is not subscribed (down, or reconnecting to Redis) is lost. The gateway
 * workers apply a command when its message reaches them and write the change to
 * Redis after that: a query right behind a command may not see it yet.
 *
 * Errors: a bad argument is an InvalidArgumentException and nothing is
 * published; an answer over $maxAnswer is a FookingRouterError (as a router
 * refuses one over ROUTER_ANSWER_MAX); Redis failing (unreachable, an error
 * reply) or an answer that is not what was asked for is a RuntimeException.
 */

require_once __DIR__ . '/FookingRouter.php';

final class FookingRedis
{
    public const DEFAULT_PREFIX = 'fooking:';

    /*
     * The scripts of the stateless router (src/router_bus.c), byte for byte:
     * the same text has the same SHA1, so Redis caches it once for the routers
     * and the backends. info: ARGV prefix. uids (SEND_UID, KICK_UID): prefix,
     * type, D, the uids; it publishes once per worker holding any of them, S
     * cut to the uids it holds. The queries: prefix, the largest answer, the
     * query's S (ch_records: and "sidu:" for CH_MEMBERS, "sess:" for
     * CH_SESSIONS); each returns the answer's D, or 0 over the largest answer.
     */
    /** wid(sid): "<server>:<worker>" of a SID, nil unless 16 lowercase hex digits. */
    private const LUA_WID = <<<'LUA'
        local function wid(s)
          if #s ~= 16 or not string.find(s, '^[0-9a-f]+$') then return nil end
          local low = tonumber(string.sub(s, 11, 16), 16)
          return (math.floor(low / 2048) % 8192) .. ':' .. (math.floor(low / 64) % 32)
        end

        LUA;
    /** What every v2 script starts with: alive(), online(), bound(), live(), u16(), u32(). */
    private const LUA_COMMON = self::LUA_WID . <<<'LUA'
        local p = ARGV[1]
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

        LUA;
    public const SCRIPTS = [
        'info' => <<<'LUA'
            local p = ARGV[1]
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

            LUA,
        'uids' => self::LUA_COMMON . <<<'LUA'
            local t, d = tonumber(ARGV[2]), ARGV[3]
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

            LUA,
        'is_online' => self::LUA_COMMON . <<<'LUA'
            local s, out = ARGV[3], {}
            for i = 1, #s, 16 do out[#out + 1] = online(string.sub(s, i, i + 15)) and '\1' or '\0' end
            return table.concat(out)

            LUA,
        'uid_count' => self::LUA_COMMON . <<<'LUA'
            return u32(#live(p .. 'u:' .. ARGV[3], bound(ARGV[3])))

            LUA,
        'uid_sids' => self::LUA_COMMON . <<<'LUA'
            local l, out = live(p .. 'u:' .. ARGV[3], bound(ARGV[3])), {}
            if #l * 16 > tonumber(ARGV[2]) then return 0 end
            for i, e in ipairs(l) do out[i] = e[1] end
            return table.concat(out)

            LUA,
        'sid_uid' => self::LUA_COMMON . <<<'LUA'
            local id = online(ARGV[3])
            if not id then return '' end
            return redis.call('HGET', p .. 'sidu:' .. id, ARGV[3]) or ''

            LUA,
        'session_get' => self::LUA_COMMON . <<<'LUA'
            local id = online(ARGV[3])
            if not id then return '\0' end
            return '\1' .. (redis.call('HGET', p .. 'sess:' .. id, ARGV[3]) or '')

            LUA,
        'ch_count' => self::LUA_COMMON . <<<'LUA'
            return u32(#live(p .. 'chm:' .. ARGV[3], online))

            LUA,
        'ch_records' => self::LUA_COMMON . <<<'LUA'
            local max, h, out, n = tonumber(ARGV[2]), ARGV[4], {}, 0
            for _, e in ipairs(live(p .. 'chm:' .. ARGV[3], online)) do
              local v = redis.call('HGET', p .. h .. e[2], e[1]) or ''
              local r = h == 'sidu:' and e[1] .. string.char(#v) .. v or e[1] .. u32(#v) .. v
              n = n + #r
              if n > max then return 0 end
              out[#out + 1] = r
            end
            return table.concat(out)

            LUA,
        'channels' => self::LUA_COMMON . <<<'LUA'
            local max, seen, out, n = tonumber(ARGV[2]), {}, {}, 0
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

            LUA,
    ];

    /** Largest answer a query accepts (bytes of D); a bigger one is a FookingRouterError. */
    public int $maxAnswer = FookingRouter::MAX_ANSWER;

    private ?Redis $redis = null;
    private string $prefix = self::DEFAULT_PREFIX;
    /** @var array<string, string> script name => SHA1 */
    private array $sha = [];

    /**
     * Connects to "redis://[[user]:password@]host[:port][/db]" (the gateways' BUS);
     * $prefix is their BUS_PREFIX.
     * @throws RuntimeException when Redis cannot be reached or refuses the password
     */
    public function connect(string $url = 'redis://127.0.0.1:6379',
                            string $prefix = self::DEFAULT_PREFIX, float $timeout = 5.0): void
    {
        $u = parse_url($url);
        if ($u === false || ($u['scheme'] ?? '') !== 'redis' || ($u['host'] ?? '') === '') {
            throw new InvalidArgumentException("fooking redis: bad URL (redis://[:password@]host:port[/db]): $url");
        }
        $host = trim($u['host'], '[]');
        $port = (int)($u['port'] ?? 6379);
        $redis = new Redis();
        try {
            if (!$redis->connect($host, $port, $timeout)) {
                throw new RuntimeException("fooking redis: cannot connect to $host:$port");
            }
            $redis->setOption(Redis::OPT_READ_TIMEOUT, $timeout);
            if (isset($u['pass']) && $u['pass'] !== '') {
                $pass = rawurldecode($u['pass']);
                $user = rawurldecode($u['user'] ?? '');
                if (!$redis->auth($user !== '' ? [$user, $pass] : $pass)) {
                    throw new RuntimeException("fooking redis: $host:$port refused the password");
                }
            }
            $db = (int)trim($u['path'] ?? '', '/');
            if ($db !== 0 && !$redis->select($db)) {
                throw new RuntimeException("fooking redis: $host:$port: cannot select db $db");
            }
        } catch (RedisException $e) {
            throw new RuntimeException("fooking redis: $host:$port: " . $e->getMessage(), 0, $e);
        }
        $this->close();
        $this->redis = $redis;
        $this->prefix = $prefix;
    }

    /** Uses a connection the application already has (no phpredis OPT_PREFIX on it). */
    public function setRedis(Redis $redis, string $prefix = self::DEFAULT_PREFIX): void
    {
        $this->redis = $redis;
        $this->prefix = $prefix;
    }

    public function close(): void
    {
        if ($this->redis !== null) {
            try {
                $this->redis->close();
            } catch (RedisException $e) {
            }
            $this->redis = null;
        }
    }

    /** Closes these clients. */
    public function kick(array $sids): void
    {
        $this->sidsCommand(FookingRouter::KICK, $sids, '');
    }

    /** Delivers $msg to these clients. */
    public function sendMsg(array $sids, string $msg): void
    {
        $this->sidsCommand(FookingRouter::SEND_MSG, $sids, $msg);
    }

    /**
     * Delivers $msg to every client of every gateway but the SIDs in $exclude
     * (SEND_ALL without exclusions, SEND_ALL_EX with; at most 4095 SIDs).
     * @throws InvalidArgumentException
     */
    public function sendAll(string $msg, array $exclude = []): void
    {
        $m = $exclude === [] ? FookingRouter::encode(FookingRouter::SEND_ALL, '', $msg)
            : FookingRouter::encode(FookingRouter::SEND_ALL_EX,
                                    FookingRouter::excludeList($exclude, FookingRouter::MAX_SIDS), $msg);
        $this->publish([[$this->prefix . 'all', $m]]);
    }

    /** These clients join $channel. */
    public function chAdd(array $sids, string $channel): void
    {
        $this->sidsCommand(FookingRouter::CH_ADD, $sids, FookingRouter::checkChannel($channel));
    }

    /** These clients leave $channel. */
    public function chDel(array $sids, string $channel): void
    {
        $this->sidsCommand(FookingRouter::CH_DEL, $sids, FookingRouter::checkChannel($channel));
    }

    /**
     * Delivers $msg to every member of $channel but the SIDs in $exclude
     * (CH_PUB without exclusions, CH_PUB_EX with: at most min(4095, (65534 -
     * strlen($channel)) / 16) SIDs).
     * @throws InvalidArgumentException
     */
    public function chPub(string $channel, string $msg, array $exclude = []): void
    {
        FookingRouter::checkChannel($channel);
        $m = $exclude === [] ? FookingRouter::encode(FookingRouter::CH_PUB, $channel, $msg)
            : FookingRouter::encode(FookingRouter::CH_PUB_EX,
                                    FookingRouter::chPubExS($channel, $exclude), $msg);
        $this->publish([[$this->prefix . 'ch:' . $channel, $m]]);
    }

    /* ---- backend API v2: commands (published, no answer) ---- */

    /** Binds the session to $uid (replacing the uid it had). */
    public function bindUid(string $sid, string $uid): void
    {
        FookingRouter::checkUid($uid);
        $this->sidsCommand(FookingRouter::BIND, [$sid], $uid);
    }

    /** The session loses its uid. */
    public function unbindUid(string $sid): void
    {
        $this->sidsCommand(FookingRouter::UNBIND, [$sid], '');
    }

    /**
     * Delivers $msg to every session bound to one of $uids (a uid or a list),
     * each session once: the router's script publishes once to each gateway
     * worker holding any of them.
     * @throws InvalidArgumentException
     */
    public function sendToUid(string|array $uids, string $msg): void
    {
        $this->uidsCommand(FookingRouter::SEND_UID, $uids, $msg);
    }

    /** Closes every session bound to $uid (a uid or a list of them). */
    public function kickUid(string|array $uid): void
    {
        $this->uidsCommand(FookingRouter::KICK_UID, $uid, '');
    }

    /**
     * Sets the session's data, kept by its gateway (0..16384 bytes, and no more
     * than the gateway's SESSION_MAX_SIZE; '' clears it).
     * @throws InvalidArgumentException
     */
    public function setSession(string $sid, string $data): void
    {
        if (strlen($data) > FookingRouter::MAX_SESSION) {
            throw new InvalidArgumentException('fooking: session data is at most '
                                               . FookingRouter::MAX_SESSION . ' bytes, got ' . strlen($data));
        }
        $this->sidsCommand(FookingRouter::SESSION_SET, [$sid], $data);
    }

    /* ---- backend API v2: queries (one script each, as a router with BUS runs) ---- */

    /** [sid => bool]: whether each session is connected to a gateway. */
    public function isOnline(string|array $sids): array
    {
        $sids = self::checkHexSids(is_string($sids) ? [$sids] : $sids);
        if ($sids === []) {
            return [];
        }
        $d = $this->query(FookingRouter::IS_ONLINE, 'is_online', implode('', $sids));
        return self::decoded(fn() => FookingRouter::decodeIsOnline($sids, $d));
    }

    /** How many sessions are bound to $uid (0: none, the uid is offline). */
    public function isUidOnline(string $uid): int
    {
        $d = $this->query(FookingRouter::UID_COUNT, 'uid_count', FookingRouter::checkUid($uid));
        return self::decoded(fn() => FookingRouter::decodeCount(FookingRouter::UID_COUNT, $d));
    }

    /** The SIDs of the sessions bound to $uid (in no particular order). */
    public function getSidsByUid(string $uid): array
    {
        $d = $this->query(FookingRouter::UID_SIDS, 'uid_sids', FookingRouter::checkUid($uid));
        return self::decoded(fn() => FookingRouter::decodeSids($d));
    }

    /** The session's uid; null when it is unbound or not connected. */
    public function getUidBySid(string $sid): ?string
    {
        $d = $this->query(FookingRouter::SID_UID, 'sid_uid', self::checkHexSids([$sid])[0]);
        return self::decoded(fn() => FookingRouter::decodeUid($d));
    }

    /** The session's data ('' when it has none); null when there is no such session. */
    public function getSession(string $sid): ?string
    {
        $d = $this->query(FookingRouter::SESSION_GET, 'session_get', self::checkHexSids([$sid])[0]);
        return self::decoded(fn() => FookingRouter::decodeSession($d));
    }

    /** How many sessions are members of $channel. */
    public function chCount(string $channel): int
    {
        $d = $this->query(FookingRouter::CH_COUNT, 'ch_count', FookingRouter::checkChannel($channel));
        return self::decoded(fn() => FookingRouter::decodeCount(FookingRouter::CH_COUNT, $d));
    }

    /** [sid => uid, or null when unbound] of the members of $channel. */
    public function chMembers(string $channel): array
    {
        $d = $this->query(FookingRouter::CH_MEMBERS, 'ch_records',
                          FookingRouter::checkChannel($channel), 'sidu:');
        return self::decoded(fn() => FookingRouter::decodeMembers($d));
    }

    /** [sid => data] of the members of $channel. */
    public function chSessions(string $channel): array
    {
        $d = $this->query(FookingRouter::CH_SESSIONS, 'ch_records',
                          FookingRouter::checkChannel($channel), 'sess:');
        return self::decoded(fn() => FookingRouter::decodeSessions($d));
    }

    /** [channel name => member count] of every channel with members. */
    public function channels(): array
    {
        $d = $this->query(FookingRouter::CHANNELS, 'channels', '');
        return self::decoded(fn() => FookingRouter::decodeChannels($d));
    }

    /**
     * True when the session is connected: its SID is in the live set of the gateway
     * worker named by the SID, and that worker's heartbeat has not expired.
     */
    public function online(string $sid): bool
    {
        [$server, $worker] = self::gatewayOf($sid);
        $r = $this->redis();
        try {
            $res = $r->multi(Redis::PIPELINE)
                     ->sIsMember($this->prefix . "sids:$server:$worker", $sid)
                     ->exists($this->prefix . "hb:$server:$worker")
                     ->exec();
        } catch (RedisException $e) {
            throw new RuntimeException('fooking redis: ' . $e->getMessage(), 0, $e);
        }
        if (!is_array($res) || count($res) !== 2) {
            throw new RuntimeException('fooking redis: SISMEMBER failed');
        }
        return (bool)$res[0] && (int)$res[1] > 0;
    }

    /**
     * Status, from the registry of gateway workers and their heartbeats, in the
     * shape of FookingRouter::info() (the router's INFO script):
     * ['clients' => int, 'channels' => int (distinct channels with members),
     *  'uids' => int (distinct bound uids),
     *  'gateways' => [['server' =>, 'worker' =>, 'clients' =>, 'channels' =>], ...]]
     * (gateways ordered by server, then worker).
     */
    public function info(): array
    {
        $text = $this->script('info', []);
        if (!is_string($text)) {
            throw new RuntimeException('fooking redis: INFO: the script answered ' . gettype($text));
        }
        return FookingRouter::parseInfo($text);
    }

    /** [server id, worker id] of a SID (16 hex digits: ... 13 bits server, 5 bits worker, 6 bits seq). */
    public static function gatewayOf(string $sid): array
    {
        if (strlen($sid) !== FookingRouter::SID_LEN || !ctype_xdigit($sid)) {
            throw new InvalidArgumentException('fooking redis: a SID is 16 hex digits, got '
                                               . var_export($sid, true));
        }
        $v = hexdec(substr($sid, -6)); /* the low 24 bits hold both ids */
        return [($v >> 11) & 0x1fff, ($v >> 6) & 0x1f];
    }

    /** The SIDs, each checked to be 16 hex digits (what names its gateway worker). */
    private static function checkHexSids(array $sids): array
    {
        $sids = FookingRouter::checkSids($sids);
        foreach ($sids as $sid) {
            self::gatewayOf($sid);
        }
        return $sids;
    }

    /**
     * SEND_UID, KICK_UID: the uids script, once per uid list a router would get
     * (so the S it publishes fits its 16 bits), each uid once.
     */
    private function uidsCommand(int $type, string|array $uids, string $d): void
    {
        $lists = [];
        foreach (FookingRouter::uidLists($uids) as $s) {
            $list = [];
            for ($i = 0, $n = strlen($s); $i < $n; $i += 1 + ord($s[$i])) {
                $list[] = substr($s, $i + 1, ord($s[$i]));
            }
            $lists[] = $list;
        }
        foreach ($lists as $list) {
            $this->script('uids', [(string)$type, $d, ...$list]);
        }
    }

    /** A query's answer D: its script's string, FookingRouterError when over $maxAnswer. */
    private function query(int $type, string $name, string $s, ?string $hash = null): string
    {
        $args = [(string)$this->maxAnswer, $s];
        if ($hash !== null) {
            $args[] = $hash;
        }
        $d = $this->script($name, $args);
        if ($d === 0) {
            $e = new FookingRouterError("fooking redis: query $type refused: answer over the maximum "
                                        . "({$this->maxAnswer} bytes)", $type);
            $e->text = 'answer over the maximum';
            throw $e;
        }
        if (!is_string($d)) {
            throw new RuntimeException("fooking redis: query $type: the script answered " . gettype($d));
        }
        return $d;
    }

    /** A decoder's result; a malformed answer is a RuntimeException. */
    private static function decoded(callable $f): mixed
    {
        try {
            return $f();
        } catch (UnexpectedValueException $e) {
            throw new RuntimeException('fooking redis: ' . $e->getMessage(), 0, $e);
        }
    }

    /**
     * Runs SCRIPTS[$name] with ARGV = prefix, ...$args: EVALSHA, and EVAL when
     * Redis does not have the script (NOSCRIPT). Returns its reply.
     */
    private function script(string $name, array $args): mixed
    {
        $r = $this->redis();
        $text = self::SCRIPTS[$name];
        $sha = $this->sha[$name] ??= sha1($text);
        $argv = [$this->prefix, ...$args];
        try {
            $r->clearLastError();
            $res = $r->evalSha($sha, $argv, 0);
            if ($res === false && str_starts_with((string)$r->getLastError(), 'NOSCRIPT')) {
                $r->clearLastError();
                $res = $r->eval($text, $argv, 0);
            }
        } catch (RedisException $e) {
            throw new RuntimeException("fooking redis: $name script: " . $e->getMessage(), 0, $e);
        }
        $err = $r->getLastError();
        if ($res === false && $err !== null) {
            throw new RuntimeException("fooking redis: $name script: $err");
        }
        return $res;
    }

    /**
     * Splits the SIDs by gateway worker (in order of first appearance), at most
     * 4095 per message, and publishes each message on that worker's channel.
     */
    private function sidsCommand(int $type, array $sids, string $d): void
    {
        $groups = [];
        foreach (FookingRouter::checkSids($sids) as $sid) {
            [$server, $worker] = self::gatewayOf($sid);
            $groups["$server:$worker"][] = $sid;
        }
        $msgs = [];
        foreach ($groups as $gw => $list) {
            foreach (array_chunk($list, FookingRouter::MAX_SIDS) as $chunk) {
                $msgs[] = [$this->prefix . 'gw:' . $gw, FookingRouter::encode($type, implode('', $chunk), $d)];
            }
        }
        $this->publish($msgs);
    }

    /** PUBLISHes [channel, message] pairs in order, pipelined when there are several. */
    private function publish(array $msgs): void
    {
        if ($msgs === []) {
            return;
        }
        $r = $this->redis();
        try {
            if (count($msgs) === 1) {
                $ok = $r->publish($msgs[0][0], $msgs[0][1]) !== false;
            } else {
                $p = $r->multi(Redis::PIPELINE);
                foreach ($msgs as [$channel, $msg]) {
                    $p->publish($channel, $msg);
                }
                $res = $p->exec();
                $ok = is_array($res) && count($res) === count($msgs) && !in_array(false, $res, true);
            }
        } catch (RedisException $e) {
            throw new RuntimeException('fooking redis: PUBLISH: ' . $e->getMessage(), 0, $e);
        }
        if (!$ok) {
            throw new RuntimeException('fooking redis: PUBLISH failed: ' . ($r->getLastError() ?? ''));
        }
    }

    private function redis(): Redis
    {
        if ($this->redis === null) {
            throw new RuntimeException('fooking redis: not connected');
        }
        return $this->redis;
    }
}
