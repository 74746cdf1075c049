<?php
/**
 * gateway.php - the chat example's backend for php-fpm (PHP 8, phpredis).
 *
 * fooking turns every WebSocket message of a browser into one FastCGI request:
 *   $_SERVER['SESSIONID']  the client's session id (16 hex characters)
 *   $_SERVER['EVENT']      0 message, 1 connect, 2 close
 *   php://input            the message (JSON, see README.md)
 * What this script prints goes back to that client only; messages for other
 * clients (everyone, a channel) go through the fooking router.
 *
 * Settings come from the gateway's FASTCGI_PARAMS (or the environment):
 *   ROUTER_HOST, ROUTER_PORT, ROUTER_SECRET   the fooking router (127.0.0.1:9010)
 *   REDIS_HOST, REDIS_PORT                    Redis, where users live (127.0.0.1:6379)
 *
 * Redis: the set "chatusers" holds the SIDs of logged-in users, the hash
 * "chatuser:<sid>" holds id, name, since and ch1..ch5 (channels joined).
 * Names and texts are HTML-escaped here, in everything sent to browsers.
 * gateway.go implements the same protocol.
 */
declare(strict_types=1);

require __DIR__ . '/../clients/php/FookingRouter.php';

const CHANNELS = 5;
const NAME_MAX = 24;      // characters
const TEXT_MAX = 1000;    // characters

function setting(string $key, string $default): string
{
    $v = $_SERVER[$key] ?? getenv($key);
    return ($v === false || $v === '') ? $default : (string)$v;
}

function esc(string $s): string
{
    return strtr($s, ['&' => '&amp;', '<' => '&lt;', '>' => '&gt;', '"' => '&quot;', "'" => '&#39;']);
}

/** Control characters become spaces, whitespace is trimmed, at most $max characters. */
function clean(mixed $s, int $max): string
{
    if (!is_string($s) || !preg_match('//u', $s)) {
        return '';
    }
    $s = trim(preg_replace('/[\p{Cc}\p{Zl}\p{Zp}]+/u', ' ', $s));
    preg_match('/^.{0,' . $max . '}/us', $s, $m);
    return rtrim($m[0]);
}

function json(array $msg): string
{
    return json_encode($msg, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
}

/** A notice or message with the server's time: ts (Unix seconds) and time ("15:04"). */
function stamped(array $msg): array
{
    $now = time();
    return $msg + ['ts' => $now, 'time' => date('H:i', $now)];
}

function reply(string $body): void
{
    header('Content-Type: application/json');
    header('Content-Length: ' . strlen($body));
    echo $body;
}

function error_reply(string $text, array $extra = []): void
{
    reply(json(['type' => 'error', 'text' => esc($text)] + $extra));
}

final class Chat
{
    private ?Redis $redis = null;
    private ?FookingRouter $router = null;

    public function __construct(private string $sid)
    {
    }

    private function redis(): Redis
    {
        if ($this->redis === null) {
            $r = new Redis();
            $r->pconnect(setting('REDIS_HOST', '127.0.0.1'), (int)setting('REDIS_PORT', '6379'), 2.0);
            $this->redis = $r;
        }
        return $this->redis;
    }

    private function router(): FookingRouter
    {
        if ($this->router === null) {
            $r = new FookingRouter();
            $r->connect(setting('ROUTER_HOST', '127.0.0.1'), (int)setting('ROUTER_PORT', '9010'),
                        setting('ROUTER_SECRET', '') ?: null);
            $this->router = $r;
        }
        return $this->router;
    }

    private static function key(string $sid): string
    {
        return 'chatuser:' . $sid;
    }

    /** The raw (unescaped) name of a logged-in user, or null. */
    private function name(string $sid): ?string
    {
        $name = $this->redis()->hGet(self::key($sid), 'name');
        return is_string($name) ? $name : null;
    }

    /** EVENT=1: a browser connected. */
    public function connect(): void
    {
        reply(json(['type' => 'hello', 'id' => $this->sid, 'online' => (int)$this->redis()->sCard('chatusers')]));
    }

    /** EVENT=2: the browser is gone; the router already dropped it from its channels. */
    public function close(): void
    {
        $name = $this->name($this->sid);
        $this->redis()->del(self::key($this->sid));
        $this->redis()->sRem('chatusers', $this->sid);
        if ($name !== null) {
            $this->router()->sendAll(json(stamped(['type' => 'close', 'id' => $this->sid, 'name' => esc($name)])));
        }
    }

    /** EVENT=0: one JSON message from the browser. */
    public function message(string $body): void
    {
        $req = json_decode($body, true);
        if (!is_array($req) || !is_string($req['type'] ?? null)) {
            error_reply('Bad request: a JSON object with a "type" was expected.');
            return;
        }
        switch ($req['type']) {
            case 'login':
                $this->login($req);
                break;
            case 'join':
            case 'leave':
                $this->channel($req['type'], $req);
                break;
            case 'msg':
                $this->msg($req);
                break;
            default:
                error_reply('Unknown message type.');
        }
    }

    private function login(array $req): void
    {
        $name = clean($req['name'] ?? null, NAME_MAX);
        if ($name === '') {
            error_reply('Please pick a nickname (1 to ' . NAME_MAX . ' characters).');
            return;
        }
        $redis = $this->redis();
        $redis->hMSet(self::key($this->sid), ['id' => $this->sid, 'name' => $name, 'since' => time()]);
        $redis->sAdd('chatusers', $this->sid);

        $list = [];
        foreach ($redis->sMembers('chatusers') ?: [] as $sid) {
            $u = $redis->hMGet(self::key($sid), ['name', 'since']);
            if (!is_string($u['name'] ?? null)) {
                $redis->sRem('chatusers', $sid);   // a hash without its set entry: gone
                continue;
            }
            $list[] = ['id' => $sid, 'name' => esc($u['name']), 'since' => (int)$u['since']];
        }
        usort($list, fn($a, $b) => $a['since'] <=> $b['since']);

        $this->router()->sendAll(json(stamped(['type' => 'login', 'id' => $this->sid, 'name' => esc($name)])));
        reply(json(['type' => 'list', 'id' => $this->sid, 'name' => esc($name), 'list' => $list]));
    }

    /** join / leave channel N (1..5): router channel "chat-channel-N". */
    private function channel(string $what, array $req): void
    {
        $ch = filter_var($req['channel'] ?? null, FILTER_VALIDATE_INT,
                         ['options' => ['min_range' => 1, 'max_range' => CHANNELS]]);
        if ($ch === false) {
            error_reply('There are channels 1 to ' . CHANNELS . '.');
            return;
        }
        $name = $this->name($this->sid);
        if ($name === null) {
            error_reply('Log in first.', ['channel' => $ch]);
            return;
        }
        $channel = 'chat-channel-' . $ch;
        $note = json(stamped(['type' => $what, 'channel' => $ch, 'id' => $this->sid, 'name' => esc($name)]));
        $router = $this->router();
        if ($what === 'join') {
            $this->redis()->hSet(self::key($this->sid), 'ch' . $ch, '1');
            $router->chAdd([$this->sid], $channel);
            // The confirmation goes through the router too, on the same link as the
            // CH_ADD: when the browser sees it, the gateway has the membership.
            $router->sendMsg([$this->sid], $note);
            $router->chPub($channel, $note);
        } else {
            $this->redis()->hDel(self::key($this->sid), 'ch' . $ch);
            $router->chPub($channel, $note);
            $router->chDel([$this->sid], $channel);
            $router->sendMsg([$this->sid], $note);
        }
    }

    private function msg(array $req): void
    {
        $ch = filter_var($req['channel'] ?? 0, FILTER_VALIDATE_INT,
                         ['options' => ['min_range' => 0, 'max_range' => CHANNELS]]);
        if ($ch === false) {
            error_reply('There are channels 1 to ' . CHANNELS . '.');
            return;
        }
        $user = $this->redis()->hMGet(self::key($this->sid), ['name', 'ch' . $ch]);
        if (!is_string($user['name'] ?? null)) {
            error_reply('Log in first.');
            return;
        }
        if ($ch > 0 && ($user['ch' . $ch] ?? false) !== '1') {
            error_reply('Join channel-' . $ch . ' to post there.', ['channel' => $ch]);
            return;
        }
        $text = clean($req['text'] ?? null, TEXT_MAX);
        if ($text === '') {
            return;
        }
        $out = json(stamped(['type' => 'msg', 'id' => $this->sid, 'name' => esc($user['name']),
                             'channel' => $ch, 'text' => esc($text)]));
        if ($ch === 0) {
            $this->router()->sendAll($out);
        } else {
            $this->router()->chPub('chat-channel-' . $ch, $out);
        }
    }
}

$sid = (string)($_SERVER['SESSIONID'] ?? '');
$event = (string)($_SERVER['EVENT'] ?? '0');
if (!preg_match('/^[0-9a-f]{16}$/', $sid)) {
    http_response_code(400);
    error_log('chat: request without a valid SESSIONID');
    exit;
}
$body = file_get_contents('php://input');
try {
    $chat = new Chat($sid);
    match ($event) {
        '1' => $chat->connect(),
        '2' => $chat->close(),
        default => $chat->message($body === false ? '' : $body),
    };
} catch (Throwable $e) {
    error_log("chat: $sid: " . $e->getMessage());
    if ($event === '0' && !headers_sent()) {
        error_reply('The server is having trouble; please try again.');
    }
}
