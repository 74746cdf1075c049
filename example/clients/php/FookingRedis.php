<?php
/**
 * FookingRedis - backend client for fooking over the Redis message bus (PHP 8,
 * phpredis). It needs no router: it publishes the very messages a backend would
 * send to the router (FookingRouter::encode) on the channels the gateways
 * subscribe to, when the gateways run with BUS = "redis://...".
 *
 *   <prefix>all                      SEND_ALL
 *   <prefix>gw:<server>:<worker>     KICK, SEND_MSG, CH_ADD, CH_DEL with only the SIDs
 *                                    of that gateway worker (read out of each SID)
 *   <prefix>ch:<channel>             CH_PUB
 *
 * and reads the presence the gateway workers keep: <prefix>hb:<server>:<worker>
 * ("<clients> <channels>", expires unless refreshed), <prefix>sids:<server>:<worker>
 * (their live SIDs) and <prefix>chans:<server>:<worker> (their channels).
 *
 *   $r = new FookingRedis();
 *   $r->connect('redis://127.0.0.1:6379', 'fooking:');   // the gateways' BUS, BUS_PREFIX
 *   $r->sendMsg([$_SERVER['SESSIONID']], 'hello');
 *   $r->chAdd([$_SERVER['SESSIONID']], 'room1');
 *   $r->chPub('room1', 'someone joined');
 *   var_dump($r->online($sid));
 *   print_r($r->info());
 *
 * Like the router, publishing is fire-and-forget: a message for a gateway worker
 * that is not subscribed (down, or reconnecting to Redis) is lost.
 *
 * The backend API v2 (uids, session data, exclusions, the queries) is not
 * supported on the Redis transport yet: FookingRedis has no bindUid, sendToUid,
 * getSession, ... (calling one is PHP's "undefined method" Error), and
 * sendAll()/chPub() with a non-empty $exclude throw InvalidArgumentException
 * before anything is published. Use FookingRouter for those.
 */

require_once __DIR__ . '/FookingRouter.php';

final class FookingRedis
{
    public const DEFAULT_PREFIX = 'fooking:';

    private ?Redis $redis = null;
    private string $prefix = self::DEFAULT_PREFIX;

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
     * Delivers $msg to every client of every gateway. $exclude is the router
     * transport's (backend API v2): not supported here yet, it must be empty.
     * @throws InvalidArgumentException
     */
    public function sendAll(string $msg, array $exclude = []): void
    {
        self::noExclude('sendAll', $exclude);
        $this->publish([[$this->prefix . 'all', FookingRouter::encode(FookingRouter::SEND_ALL, '', $msg)]]);
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
     * Delivers $msg to every member of $channel. $exclude must be empty (as
     * for sendAll).
     * @throws InvalidArgumentException
     */
    public function chPub(string $channel, string $msg, array $exclude = []): void
    {
        self::noExclude('chPub', $exclude);
        FookingRouter::checkChannel($channel);
        $this->publish([[$this->prefix . 'ch:' . $channel,
                         FookingRouter::encode(FookingRouter::CH_PUB, $channel, $msg)]]);
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
     * Status from the gateway workers' heartbeats, in the shape of FookingRouter::info():
     * ['clients' => int, 'channels' => int (distinct channels with members),
     *  'gateways' => [['server' =>, 'worker' =>, 'clients' =>, 'channels' =>], ...]]
     * (gateways ordered by server, then worker).
     */
    public function info(): array
    {
        $r = $this->redis();
        $hb = $this->prefix . 'hb:';
        try {
            $keys = [];
            $it = null;
            $pattern = addcslashes($hb, '*?[]\\') . '*';
            do {
                $batch = $r->scan($it, $pattern, 1000);
                if (is_array($batch)) {
                    foreach ($batch as $k) {
                        $keys[$k] = true;
                    }
                }
            } while ($it > 0);
            $gateways = [];
            foreach (array_keys($keys) as $k) {
                $k = (string)$k;
                if (preg_match('/^(\d+):(\d+)$/', substr($k, strlen($hb)), $m)) {
                    $gateways[] = ['key' => $k, 'server' => (int)$m[1], 'worker' => (int)$m[2]];
                }
            }
            usort($gateways, fn($a, $b) => [$a['server'], $a['worker']] <=> [$b['server'], $b['worker']]);
            $info = ['clients' => 0, 'channels' => 0, 'gateways' => []];
            if ($gateways === []) {
                return $info;
            }
            $values = $r->mGet(array_column($gateways, 'key'));
            $chans = [];
            foreach ($gateways as $i => $g) {
                $v = $values[$i] ?? false;
                if ($v === false) {
                    continue; /* expired since SCAN */
                }
                $f = explode(' ', trim((string)$v));
                $g = ['server' => $g['server'], 'worker' => $g['worker'],
                      'clients' => (int)($f[0] ?? 0), 'channels' => (int)($f[1] ?? 0)];
                $info['gateways'][] = $g;
                $info['clients'] += $g['clients'];
                $chans[] = $this->prefix . "chans:{$g['server']}:{$g['worker']}";
            }
            if ($chans !== []) {
                $union = $r->sUnion(...$chans);
                $info['channels'] = is_array($union) ? count($union) : 0;
            }
            return $info;
        } catch (RedisException $e) {
            throw new RuntimeException('fooking redis: ' . $e->getMessage(), 0, $e);
        }
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

    /**
     * Splits the SIDs by gateway worker (in order of first appearance), at most
     * 4095 per message, and publishes each message on that worker's channel.
     */
    private static function noExclude(string $call, array $exclude): void
    {
        if ($exclude !== []) {
            throw new InvalidArgumentException("fooking redis: $call with SIDs to exclude is not "
                                               . 'supported on the Redis transport yet (use FookingRouter)');
        }
    }

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
