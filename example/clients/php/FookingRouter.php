<?php
/**
 * FookingRouter - backend client for the fooking router (PHP 8, no extensions).
 *
 * Every message is "u16 type | u16 slen | u32 len" (big-endian), then S, then D.
 * Commands are fire-and-forget: the router never answers them, so a PHP request
 * can connect, send and exit. info() and the backend API v2 queries (isOnline,
 * isUidOnline, getSidsByUid, getUidBySid, getSession, chCount, chMembers,
 * chSessions, channels) wait for their answer; a query sees the effect of every
 * command sent before it on the same connection.
 *
 * Errors: a bad argument is an InvalidArgumentException and nothing is sent; a
 * query the router refuses (its ERROR answer) is a FookingRouterError, and the
 * connection goes on; a read that times out, a closed connection or an answer
 * that is not what was asked for is a RuntimeException, and the connection is
 * closed (its answers could no longer be told apart).
 *
 *   $r = new FookingRouter();
 *   $r->connect('127.0.0.1', 9010, getenv('ROUTER_SECRET') ?: null);
 *   $r->sendMsg([$_SERVER['SESSIONID']], 'hello');
 *   $r->chAdd([$_SERVER['SESSIONID']], 'room1');
 *   $r->chPub('room1', 'someone joined');
 *   $r->bindUid($_SERVER['SESSIONID'], 'user42');
 *   $r->sendToUid('user42', 'hello on every device');
 *   print_r($r->info());
 */

/**
 * The router refused a query (its ERROR answer): getCode() is the refused
 * query's type, getMessage() names the router's text. The connection is fine.
 */
class FookingRouterError extends RuntimeException
{
    /** The router's words, as it sent them. */
    public string $text = '';
}

final class FookingRouter
{
    public const KICK = 4;
    public const SEND_MSG = 5;
    public const SEND_ALL = 6;
    public const CH_ADD = 7;
    public const CH_DEL = 8;
    public const CH_PUB = 9;
    public const INFO = 12;
    public const SECRET = 13;
    /* Backend API v2: commands. */
    public const BIND = 16;
    public const UNBIND = 17;
    public const SEND_UID = 18;
    public const KICK_UID = 19;
    public const SESSION_SET = 20;
    public const SEND_ALL_EX = 21;
    public const CH_PUB_EX = 22;
    /* Backend API v2: queries, answered with a message of the same type. */
    public const IS_ONLINE = 23;
    public const UID_COUNT = 24;
    public const UID_SIDS = 25;
    public const SID_UID = 26;
    public const SESSION_GET = 27;
    public const CH_COUNT = 28;
    public const CH_MEMBERS = 29;
    public const CH_SESSIONS = 30;
    public const CHANNELS = 31;
    /** The answer to a refused query: D = u16 type of the query | text. */
    public const ERROR = 32;

    public const SID_LEN = 16;
    /** slen is a u16: at most 4095 SIDs of 16 bytes per message. */
    public const MAX_SIDS = 4095;
    public const MAX_CHANNEL = 255;
    public const MAX_UID = 128;
    /** Largest session data the router forwards (a gateway's SESSION_MAX_SIZE may be lower). */
    public const MAX_SESSION = 16384;
    /** slen is a u16: the most bytes S can hold. */
    public const MAX_S = 65535;
    /** Largest answer read (the router's largest ROUTER_ANSWER_MAX); bigger is a protocol error. */
    public const MAX_ANSWER = 1 << 30;

    private const NAMES = [
        self::INFO => 'INFO', self::IS_ONLINE => 'IS_ONLINE', self::UID_COUNT => 'UID_COUNT',
        self::UID_SIDS => 'UID_SIDS', self::SID_UID => 'SID_UID',
        self::SESSION_GET => 'SESSION_GET', self::CH_COUNT => 'CH_COUNT',
        self::CH_MEMBERS => 'CH_MEMBERS', self::CH_SESSIONS => 'CH_SESSIONS',
        self::CHANNELS => 'CHANNELS',
    ];

    /** @var resource|null */
    private $sock = null;

    /**
     * Connects; with a secret (ROUTER_SECRET of the router), presents it first.
     * @throws RuntimeException when the router cannot be reached
     */
    public function connect(string $host, int $port, ?string $secret = null,
                            float $timeout = 5.0): void
    {
        $this->close();
        $addr = (str_contains($host, ':') ? "tcp://[$host]" : "tcp://$host") . ":$port";
        $sock = @stream_socket_client($addr, $errno, $errstr, $timeout);
        if ($sock === false) {
            throw new RuntimeException("fooking router $host:$port: $errstr ($errno)");
        }
        stream_set_timeout($sock, (int)$timeout, (int)(fmod($timeout, 1.0) * 1e6));
        $this->sock = $sock;
        if ($secret !== null && $secret !== '') {
            $this->write(self::SECRET, '', $secret);
        }
    }

    public function close(): void
    {
        if ($this->sock !== null) {
            fclose($this->sock);
            $this->sock = null;
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    /** Closes these clients. */
    public function kick(array $sids): void
    {
        $this->sidsCommand(self::KICK, $sids, '');
    }

    /** Delivers $msg to these clients. */
    public function sendMsg(array $sids, string $msg): void
    {
        $this->sidsCommand(self::SEND_MSG, $sids, $msg);
    }

    /**
     * Delivers $msg to every client of every gateway but the SIDs in $exclude
     * (SEND_ALL without exclusions, SEND_ALL_EX with; at most 4095 SIDs).
     * @throws InvalidArgumentException
     */
    public function sendAll(string $msg, array $exclude = []): void
    {
        if ($exclude === []) {
            $this->write(self::SEND_ALL, '', $msg);
            return;
        }
        $this->write(self::SEND_ALL_EX, self::excludeList($exclude, self::MAX_SIDS), $msg);
    }

    /** These clients join $channel. */
    public function chAdd(array $sids, string $channel): void
    {
        $this->sidsCommand(self::CH_ADD, $sids, self::checkChannel($channel));
    }

    /** These clients leave $channel. */
    public function chDel(array $sids, string $channel): void
    {
        $this->sidsCommand(self::CH_DEL, $sids, self::checkChannel($channel));
    }

    /**
     * Delivers $msg to every member of $channel but the SIDs in $exclude (CH_PUB
     * without exclusions, CH_PUB_EX with). S holds the channel too, so at most
     * min(4095, (65534 - strlen($channel)) / 16) SIDs: 4079 for a 255-byte name.
     * @throws InvalidArgumentException
     */
    public function chPub(string $channel, string $msg, array $exclude = []): void
    {
        self::checkChannel($channel);
        if ($exclude === []) {
            $this->write(self::CH_PUB, $channel, $msg);
            return;
        }
        $this->write(self::CH_PUB_EX, self::chPubExS($channel, $exclude), $msg);
    }

    /**
     * The S of a CH_PUB_EX: u8 n, the channel, the SIDs to exclude (each once,
     * as many as fit).
     * @throws InvalidArgumentException
     */
    public static function chPubExS(string $channel, array $exclude): string
    {
        self::checkChannel($channel);
        $max = min(self::MAX_SIDS, intdiv(self::MAX_S - 1 - strlen($channel), self::SID_LEN));
        return chr(strlen($channel)) . $channel . self::excludeList($exclude, $max);
    }

    /* ---- backend API v2: commands (no answer) ---- */

    /** Binds the session to $uid (replacing the uid it had). */
    public function bindUid(string $sid, string $uid): void
    {
        self::checkSid($sid);
        $this->write(self::BIND, $sid, self::checkUid($uid));
    }

    /** The session loses its uid. */
    public function unbindUid(string $sid): void
    {
        $this->write(self::UNBIND, self::checkSid($sid), '');
    }

    /**
     * Delivers $msg to every session bound to one of $uids (a uid or a list),
     * each session once: a uid listed twice is sent once, and a list whose S
     * would pass 65535 bytes goes as several messages.
     * @throws InvalidArgumentException
     */
    public function sendToUid(string|array $uids, string $msg): void
    {
        foreach (self::uidLists($uids) as $s) {
            $this->write(self::SEND_UID, $s, $msg);
        }
    }

    /** Closes every session bound to $uid (a uid or a list of them). */
    public function kickUid(string|array $uid): void
    {
        foreach (self::uidLists($uid) as $s) {
            $this->write(self::KICK_UID, $s, '');
        }
    }

    /**
     * Sets the session's data, kept by its gateway (0..16384 bytes, and no more
     * than the gateway's SESSION_MAX_SIZE; '' clears it).
     * @throws InvalidArgumentException
     */
    public function setSession(string $sid, string $data): void
    {
        self::checkSid($sid);
        if (strlen($data) > self::MAX_SESSION) {
            throw new InvalidArgumentException('fooking: session data is at most ' . self::MAX_SESSION
                                               . ' bytes, got ' . strlen($data));
        }
        $this->write(self::SESSION_SET, $sid, $data);
    }

    /* ---- backend API v2: queries ---- */

    /**
     * [sid => bool]: whether each session is connected to a gateway (one
     * IS_ONLINE per 4095 SIDs). PHP turns a key that is a decimal integer
     * ("1234567890123456") into an int: compare with (string)$key.
     * @throws InvalidArgumentException|FookingRouterError|RuntimeException
     */
    public function isOnline(string|array $sids): array
    {
        $sids = self::checkSids(is_string($sids) ? [$sids] : $sids);
        $out = [];
        foreach (array_chunk($sids, self::MAX_SIDS) as $chunk) {
            $d = $this->query(self::IS_ONLINE, implode('', $chunk));
            $out += $this->decoded(fn() => self::decodeIsOnline($chunk, $d));
        }
        return $out;
    }

    /** How many sessions are bound to $uid (0: none, the uid is offline). */
    public function isUidOnline(string $uid): int
    {
        $d = $this->query(self::UID_COUNT, self::checkUid($uid));
        return $this->decoded(fn() => self::decodeCount(self::UID_COUNT, $d));
    }

    /** The SIDs of the sessions bound to $uid (in no particular order). */
    public function getSidsByUid(string $uid): array
    {
        $d = $this->query(self::UID_SIDS, self::checkUid($uid));
        return $this->decoded(fn() => self::decodeSids($d));
    }

    /** The session's uid; null when it is unbound or not a session the router knows. */
    public function getUidBySid(string $sid): ?string
    {
        $d = $this->query(self::SID_UID, self::checkSid($sid));
        return $this->decoded(fn() => self::decodeUid($d));
    }

    /**
     * The session's data ('' when it has none); null when there is no such
     * session (or its gateway did not answer the router in time).
     */
    public function getSession(string $sid): ?string
    {
        $d = $this->query(self::SESSION_GET, self::checkSid($sid));
        return $this->decoded(fn() => self::decodeSession($d));
    }

    /** How many sessions are members of $channel. */
    public function chCount(string $channel): int
    {
        $d = $this->query(self::CH_COUNT, self::checkChannel($channel));
        return $this->decoded(fn() => self::decodeCount(self::CH_COUNT, $d));
    }

    /** [sid => uid, or null when unbound] of the members of $channel. */
    public function chMembers(string $channel): array
    {
        $d = $this->query(self::CH_MEMBERS, self::checkChannel($channel));
        return $this->decoded(fn() => self::decodeMembers($d));
    }

    /**
     * [sid => data] of the members of $channel, from their gateways (a member
     * whose gateway did not answer the router in time is left out).
     */
    public function chSessions(string $channel): array
    {
        $d = $this->query(self::CH_SESSIONS, self::checkChannel($channel));
        return $this->decoded(fn() => self::decodeSessions($d));
    }

    /** [channel name => member count] of every channel with members. */
    public function channels(): array
    {
        $d = $this->query(self::CHANNELS, '');
        return $this->decoded(fn() => self::decodeChannels($d));
    }

    /**
     * Router status:
     * ['clients' => int, 'channels' => int, 'uids' => int,
     *  'gateways' => [['server' => int, 'worker' => int, 'clients' => int, 'channels' => int], ...]]
     * 'uids' (distinct bound uids) is 0 from a router that sends no uids line
     * (one from before v2, or a BUS router from before the bus served v2).
     */
    public function info(): array
    {
        $this->write(self::INFO, '', '');
        $text = $this->answer(self::INFO);
        return self::parseInfo($text);
    }

    /**
     * $uids (a uid or a list) as uid-list S fields ("u8 len | uid" repeated),
     * each uid once, each S at most 65535 bytes.
     * @throws InvalidArgumentException
     */
    public static function uidLists(string|array $uids): array
    {
        $uids = is_string($uids) ? [$uids] : $uids;
        if ($uids === []) {
            throw new InvalidArgumentException('fooking: the uid list is empty');
        }
        $out = [];
        $s = '';
        $seen = [];
        foreach ($uids as $uid) {
            if (!is_string($uid)) {
                throw new InvalidArgumentException('fooking: a uid is a string, got '
                                                   . var_export($uid, true));
            }
            self::checkUid($uid);
            if (isset($seen["u$uid"])) {
                continue;
            }
            $seen["u$uid"] = true;
            $e = chr(strlen($uid)) . $uid;
            if (strlen($s) + strlen($e) > self::MAX_S) {
                $out[] = $s;
                $s = '';
            }
            $s .= $e;
        }
        $out[] = $s;
        return $out;
    }

    /**
     * The uid, checked to be 1 to 128 bytes.
     * @throws InvalidArgumentException
     */
    public static function checkUid(string $uid): string
    {
        $n = strlen($uid);
        if ($n < 1 || $n > self::MAX_UID) {
            throw new InvalidArgumentException("fooking: a uid is 1 to 128 bytes, got $n");
        }
        return $uid;
    }

    /**
     * One SID, checked to be 16 characters.
     * @throws InvalidArgumentException
     */
    public static function checkSid(string $sid): string
    {
        return self::checkSids([$sid])[0];
    }

    /** The SIDs to exclude, each once, concatenated; at most $max of them. */
    public static function excludeList(array $sids, int $max): string
    {
        $sids = array_values(array_unique(self::checkSids($sids)));
        if (count($sids) > $max) {
            throw new InvalidArgumentException("fooking: at most $max SIDs can be excluded, got "
                                               . count($sids));
        }
        return implode('', $sids);
    }

    /** Sends a query and returns its answer's D. */
    private function query(int $type, string $s): string
    {
        $this->write($type, $s, '');
        return $this->answer($type);
    }

    /**
     * Reads the answer to a query of $type: its D, or FookingRouterError for an
     * ERROR answer. Anything else (a timeout, a closed connection, another type,
     * an S where answers have none) closes the connection: the answers behind
     * could no longer be matched with their queries.
     */
    private function answer(int $type): string
    {
        $name = self::NAMES[$type] ?? "type $type";
        try {
            $hdr = unpack('ntype/nslen/Nlen', $this->read(8));
            if ($hdr['len'] > self::MAX_ANSWER) {
                $this->protocolError("$name answer of {$hdr['len']} bytes, over " . self::MAX_ANSWER);
            }
            $s = $this->read($hdr['slen']);
            $d = $this->read($hdr['len']);
        } catch (RuntimeException $e) {
            $this->close();
            throw new RuntimeException("fooking router: reading the $name answer: "
                                       . preg_replace('/^fooking router: /', '', $e->getMessage()), 0, $e);
        }
        if ($hdr['type'] === self::ERROR && $type !== self::INFO) {
            if (strlen($d) < 2 || $s !== '' || unpack('n', $d)[1] !== $type) {
                $this->protocolError("ERROR answer that is not about $name");
            }
            $e = new FookingRouterError("fooking router: $name refused: " . substr($d, 2), $type);
            $e->text = substr($d, 2);
            throw $e;
        }
        if ($hdr['type'] !== $type) {
            $this->protocolError("expected an $name answer, got type {$hdr['type']}");
        }
        // INFO's S was always skipped; the v2 answers have none.
        if ($s !== '' && $type !== self::INFO) {
            $this->protocolError("$name answer with an S of " . strlen($s) . ' bytes');
        }
        return $d;
    }


    /*
     * Decoding of the answers' D, shared with FookingRedis (which gets the
     * same bytes from the bus's scripts). A malformed D is an
     * UnexpectedValueException naming what is wrong.
     */

    /** [sid => bool] of an IS_ONLINE answer for the SIDs $sids. */
    public static function decodeIsOnline(array $sids, string $d): array
    {
        if (strlen($d) !== count($sids)) {
            self::malformed('IS_ONLINE answer of ' . strlen($d) . ' bytes for '
                            . count($sids) . ' SIDs');
        }
        $out = [];
        foreach (array_values($sids) as $i => $sid) {
            $b = ord($d[$i]);
            if ($b > 1) {
                self::malformed("IS_ONLINE answer byte $b");
            }
            $out[$sid] = $b === 1;
        }
        return $out;
    }

    /** The u32 of a UID_COUNT or CH_COUNT answer. */
    public static function decodeCount(int $type, string $d): int
    {
        if (strlen($d) !== 4) {
            self::malformed(self::NAMES[$type] . ' answer of ' . strlen($d) . ' bytes, not 4');
        }
        return unpack('N', $d)[1];
    }

    /** The SIDs of a UID_SIDS answer. */
    public static function decodeSids(string $d): array
    {
        if (strlen($d) % self::SID_LEN !== 0) {
            self::malformed('UID_SIDS answer of ' . strlen($d) . ' bytes');
        }
        return $d === '' ? [] : str_split($d, self::SID_LEN);
    }

    /** The uid of a SID_UID answer, null for none. */
    public static function decodeUid(string $d): ?string
    {
        if (strlen($d) > self::MAX_UID) {
            self::malformed('SID_UID answer of ' . strlen($d) . ' bytes');
        }
        return $d === '' ? null : $d;
    }

    /** The data of a SESSION_GET answer, null for "no such session". */
    public static function decodeSession(string $d): ?string
    {
        $n = strlen($d);
        if ($n === 1 && $d[0] === "\x00") {
            return null;
        }
        if ($n < 1 || $d[0] !== "\x01" || $n - 1 > self::MAX_SESSION) {
            self::malformed("SESSION_GET answer of $n bytes"
                            . ($n > 0 ? ', found = ' . ord($d[0]) : ''));
        }
        return substr($d, 1);
    }

    /** [sid => uid or null] of a CH_MEMBERS answer. */
    public static function decodeMembers(string $d): array
    {
        $out = [];
        for ($i = 0, $n = strlen($d); $i < $n;) {
            if ($n - $i < self::SID_LEN + 1) {
                self::malformed('CH_MEMBERS answer cut short');
            }
            $sid = substr($d, $i, self::SID_LEN);
            $len = ord($d[$i + self::SID_LEN]);
            $i += self::SID_LEN + 1;
            if ($len > self::MAX_UID || $n - $i < $len) {
                self::malformed('CH_MEMBERS answer cut short or a uid over 128 bytes');
            }
            $out[$sid] = $len === 0 ? null : substr($d, $i, $len);
            $i += $len;
        }
        return $out;
    }

    /** [sid => data] of a CH_SESSIONS answer. */
    public static function decodeSessions(string $d): array
    {
        $out = [];
        for ($i = 0, $n = strlen($d); $i < $n;) {
            if ($n - $i < self::SID_LEN + 4) {
                self::malformed('CH_SESSIONS answer cut short');
            }
            $sid = substr($d, $i, self::SID_LEN);
            $len = unpack('N', $d, $i + self::SID_LEN)[1];
            $i += self::SID_LEN + 4;
            if ($len > self::MAX_SESSION || $n - $i < $len) {
                self::malformed('CH_SESSIONS answer cut short or data over '
                                     . self::MAX_SESSION . ' bytes');
            }
            $out[$sid] = substr($d, $i, $len);
            $i += $len;
        }
        return $out;
    }

    /** [name => members] of a CHANNELS answer. */
    public static function decodeChannels(string $d): array
    {
        $out = [];
        for ($i = 0, $n = strlen($d); $i < $n;) {
            $len = ord($d[$i]);
            if ($len === 0 || $n - $i < 1 + $len + 4) {
                self::malformed('CHANNELS answer cut short or an empty name');
            }
            $name = substr($d, $i + 1, $len);
            $out[$name] = unpack('N', $d, $i + 1 + $len)[1];
            $i += 1 + $len + 4;
        }
        return $out;
    }

    /** The INFO text as info() returns it. */
    public static function parseInfo(string $text): array
    {
        $info = ['clients' => 0, 'channels' => 0, 'uids' => 0, 'gateways' => []];
        foreach (explode("\r\n", $text) as $line) {
            $kv = explode(': ', $line, 2);
            if (count($kv) !== 2) {
                continue;
            }
            if ($kv[0] === 'gateway') {
                $f = array_map('intval', explode("\t", $kv[1]));
                $info['gateways'][] = ['server' => $f[0], 'worker' => $f[1] ?? 0,
                                       'clients' => $f[2] ?? 0, 'channels' => $f[3] ?? 0];
            } else {
                $info[$kv[0]] = (int)$kv[1];
            }
        }
        return $info;
    }

    private static function malformed(string $what): never
    {
        throw new UnexpectedValueException($what);
    }

    /** $f() (a decoder); a malformed answer closes the connection. */
    private function decoded(callable $f): mixed
    {
        try {
            return $f();
        } catch (UnexpectedValueException $e) {
            $this->protocolError($e->getMessage());
        }
    }

    /** An answer that is not what was asked for: the connection is closed. */
    private function protocolError(string $what): never
    {
        $this->close();
        throw new RuntimeException("fooking router: $what (connection closed)");
    }

    /** One message per 4095 SIDs: the router forwards each as it comes. */
    private function sidsCommand(int $type, array $sids, string $d): void
    {
        foreach (array_chunk(self::checkSids($sids), self::MAX_SIDS) as $chunk) {
            $this->write($type, implode('', $chunk), $d);
        }
    }

    /*
     * The message encoding, shared with FookingRedis (which publishes the same
     * messages on Redis instead of writing them to a router).
     */

    /** One router-protocol message: "u16 type | u16 slen | u32 len" (big-endian), S, D. */
    public static function encode(int $type, string $s, string $d): string
    {
        return pack('nnN', $type, strlen($s), strlen($d)) . $s . $d;
    }

    /**
     * The SIDs as a list, each checked to be 16 characters.
     * @throws InvalidArgumentException
     */
    public static function checkSids(array $sids): array
    {
        foreach ($sids as $sid) {
            if (!is_string($sid) || strlen($sid) !== self::SID_LEN) {
                throw new InvalidArgumentException('fooking: a SID is 16 characters, got '
                                                   . var_export($sid, true));
            }
        }
        return array_values($sids);
    }

    /**
     * The channel name, checked to be 1 to 255 bytes.
     * @throws InvalidArgumentException
     */
    public static function checkChannel(string $channel): string
    {
        $n = strlen($channel);
        if ($n < 1 || $n > self::MAX_CHANNEL) {
            throw new InvalidArgumentException("fooking: a channel name is 1 to 255 bytes, got $n");
        }
        return $channel;
    }

    private function write(int $type, string $s, string $d): void
    {
        if ($this->sock === null) {
            throw new RuntimeException('fooking router: not connected');
        }
        $buf = self::encode($type, $s, $d);
        while ($buf !== '') {
            $n = @fwrite($this->sock, $buf);
            if ($n === false || $n === 0) {
                throw new RuntimeException('fooking router: write failed (connection closed?)');
            }
            $buf = substr($buf, $n);
        }
    }

    private function read(int $n): string
    {
        $out = '';
        while (strlen($out) < $n) {
            $chunk = fread($this->sock, $n - strlen($out));
            if ($chunk === false || $chunk === '') {
                $meta = stream_get_meta_data($this->sock);
                throw new RuntimeException('fooking router: ' . ($meta['timed_out'] ? 'read timed out'
                                                                                    : 'connection closed'));
            }
            $out .= $chunk;
        }
        return $out;
    }
}
