<?php
/**
 * FookingRouter - backend client for the fooking router (PHP 8, no extensions).
 *
 * Every message is "u16 type | u16 slen | u32 len" (big-endian), then S, then D.
 * Commands are fire-and-forget: the router never answers them, so a PHP request
 * can connect, send and exit. Only info() waits for a reply.
 *
 *   $r = new FookingRouter();
 *   $r->connect('127.0.0.1', 9010, getenv('ROUTER_SECRET') ?: null);
 *   $r->sendMsg([$_SERVER['SESSIONID']], 'hello');
 *   $r->chAdd([$_SERVER['SESSIONID']], 'room1');
 *   $r->chPub('room1', 'someone joined');
 *   print_r($r->info());
 */
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

    public const SID_LEN = 16;
    /** slen is a u16: at most 4095 SIDs of 16 bytes per message. */
    public const MAX_SIDS = 4095;
    public const MAX_CHANNEL = 255;

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

    /** Delivers $msg to every client of every gateway. */
    public function sendAll(string $msg): void
    {
        $this->write(self::SEND_ALL, '', $msg);
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

    /** Delivers $msg to every member of $channel. */
    public function chPub(string $channel, string $msg): void
    {
        $this->write(self::CH_PUB, self::checkChannel($channel), $msg);
    }

    /**
     * Router status:
     * ['clients' => int, 'channels' => int,
     *  'gateways' => [['server' => int, 'worker' => int, 'clients' => int, 'channels' => int], ...]]
     */
    public function info(): array
    {
        $this->write(self::INFO, '', '');
        $hdr = unpack('ntype/nslen/Nlen', $this->read(8));
        $this->read($hdr['slen']);
        $text = $this->read($hdr['len']);
        if ($hdr['type'] !== self::INFO) {
            throw new RuntimeException("fooking router: expected an INFO reply, got type {$hdr['type']}");
        }
        $info = ['clients' => 0, 'channels' => 0, 'gateways' => []];
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
