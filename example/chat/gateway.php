<?php
/**
 * gateway.php - the chat example's backend for php-fpm (PHP 8, no extensions).
 *
 * fooking turns every WebSocket message of a browser into one FastCGI request:
 *   $_SERVER['SESSIONID']  the client's session id (16 hex characters)
 *   $_SERVER['EVENT']      0 message, 1 connect, 2 close
 *   $_SERVER['SESSION']    the session data this backend set earlier (absent: none)
 *   php://input            the message (JSON, see README.md)
 * What this script prints is the reply. Reply commands in its headers
 * (FookingReply: X-Fooking-Join, -Leave, -Session, -Publish, -Broadcast) make
 * the gateway change the session and send the body to a channel or to everyone
 * instead of only to this client. What one reply cannot carry goes through the
 * fooking router: the login notice to the other users, the close notice, and
 * the queries (who is logged in, how many, is this session a member).
 *
 * No database: the user lives in its session data, JSON
 *   {"name":"alice","since":1700000000,"ch":[2,3]}
 * (name as typed, login time, channels joined), which the gateway keeps and
 * sends back with every request, the close event included. Logged-in users
 * are the members of the router channel "chat-lobby"; channel N is
 * "chat-channel-N". Names and texts are HTML-escaped here, in everything sent
 * to browsers. gateway.go implements the same protocol.
 *
 * Settings come from the gateway's FASTCGI_PARAMS (or the environment):
 *   ROUTER_HOST, ROUTER_PORT, ROUTER_SECRET   the fooking router (127.0.0.1:9010)
 */
declare(strict_types=1);

require __DIR__ . '/../clients/php/FookingRouter.php';
require __DIR__ . '/../clients/php/FookingReply.php';

const CHANNELS = 5;
const NAME_MAX = 24;      // characters
const TEXT_MAX = 1000;    // characters
const LOBBY = 'chat-lobby';

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

function channel_name(int $ch): string
{
    return 'chat-channel-' . $ch;
}

/**
 * A user's session data (see the top of this file), or null when it is not
 * that of a logged-in user.
 */
function decode_user(mixed $data): ?array
{
    if (!is_string($data) || $data === '') {
        return null;
    }
    $u = json_decode($data, true);
    if (!is_array($u) || !is_string($u['name'] ?? null) || $u['name'] === '') {
        return null;
    }
    $ch = [];
    foreach (is_array($u['ch'] ?? null) ? $u['ch'] : [] as $c) {
        if (is_int($c) && $c >= 1 && $c <= CHANNELS) {
            $ch[$c] = $c;
        }
    }
    sort($ch);
    return ['name' => $u['name'], 'since' => is_int($u['since'] ?? null) ? $u['since'] : 0, 'ch' => $ch];
}

/** The session data of $user: JSON in plain ASCII (\u escapes), safe in a header. */
function encode_user(array $user): string
{
    $ch = array_values(array_unique($user['ch']));
    sort($ch);
    return json_encode(['name' => $user['name'], 'since' => $user['since'], 'ch' => $ch],
                       JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
}

function error_msg(string $text, array $extra = []): string
{
    return json(['type' => 'error', 'text' => esc($text)] + $extra);
}

/**
 * What this request answers: a body, and the reply commands to send with it.
 * Built completely before anything is emitted, so a failure halfway (the
 * router down) leaves no command behind.
 */
final class Reply
{
    public array $join = [];
    public array $leave = [];
    public array $publish = [];
    public bool $broadcast = false;
    public ?string $session = null;

    public function __construct(public string $body = '')
    {
    }

    public function send(): void
    {
        if ($this->join) {
            FookingReply::join(...$this->join);
        }
        if ($this->session !== null) {
            FookingReply::session($this->session);
        }
        if ($this->publish) {
            FookingReply::publish(...$this->publish);
        }
        if ($this->broadcast) {
            FookingReply::broadcast();
        }
        if ($this->leave) {
            FookingReply::leave(...$this->leave);
        }
        if ($this->body !== '') {  // an empty body (and no Content-Length) sends nothing
            header('Content-Type: application/json');
            header('Content-Length: ' . strlen($this->body));
            echo $this->body;
        }
    }
}

final class Chat
{
    private ?FookingRouter $router = null;
    /** This session's user (from its session data), null before a login. */
    private ?array $user;

    public function __construct(private string $sid, ?string $session)
    {
        $this->user = decode_user($session);
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

    /** EVENT=1: a browser connected. */
    public function connect(): Reply
    {
        return new Reply(json(['type' => 'hello', 'id' => $this->sid,
                               'online' => $this->router()->chCount(LOBBY)]));
    }

    /** EVENT=2: the browser is gone, and with it the session (its channels, its data). */
    public function close(): ?Reply
    {
        if ($this->user !== null) {
            $this->router()->chPub(LOBBY, json(stamped(['type' => 'close', 'id' => $this->sid,
                                                         'name' => esc($this->user['name'])])));
        }
        return null;
    }

    /** EVENT=0: one JSON message from the browser. */
    public function message(string $body): Reply
    {
        $req = json_decode($body, true);
        if (!is_array($req) || !is_string($req['type'] ?? null)) {
            return new Reply(error_msg('Bad request: a JSON object with a "type" was expected.'));
        }
        return match ($req['type']) {
            'login' => $this->login($req),
            'join' => $this->join($req),
            'leave' => $this->leave($req),
            'msg' => $this->msg($req),
            default => new Reply(error_msg('Unknown message type.')),
        };
    }

    /**
     * Login (again: rename): the name goes into the session data, the session
     * joins the lobby; the reply is the list of logged-in users, the others get
     * a login notice through the router.
     */
    private function login(array $req): Reply
    {
        $name = clean($req['name'] ?? null, NAME_MAX);
        if ($name === '') {
            return new Reply(error_msg('Please pick a nickname (1 to ' . NAME_MAX . ' characters).'));
        }
        $me = ['name' => $name, 'since' => time(), 'ch' => $this->user['ch'] ?? []];
        // The lobby's members and their session data: this session is not one
        // yet at its first login (its Join is applied with this reply), and has
        // its old name at a rename.
        $list = [];
        foreach ($this->router()->chSessions(LOBBY) as $sid => $data) {
            $sid = (string)$sid;
            $u = decode_user($data);
            if ($sid !== $this->sid && $u !== null) {
                $list[] = ['id' => $sid, 'name' => esc($u['name']), 'since' => $u['since']];
            }
        }
        $list[] = ['id' => $this->sid, 'name' => esc($name), 'since' => $me['since']];
        usort($list, fn($a, $b) => [$a['since'], $a['id']] <=> [$b['since'], $b['id']]);

        $this->router()->chPub(LOBBY, json(stamped(['type' => 'login', 'id' => $this->sid, 'name' => esc($name)])),
                               [$this->sid]);
        $r = new Reply(json(['type' => 'list', 'id' => $this->sid, 'name' => esc($name), 'list' => $list]));
        $r->session = encode_user($me);
        $r->join = [LOBBY];
        return $r;
    }

    /** The channel number 1..5 of a join / leave, or an error reply. */
    private function channelOf(array $req): int|Reply
    {
        $ch = filter_var($req['channel'] ?? null, FILTER_VALIDATE_INT,
                         ['options' => ['min_range' => 1, 'max_range' => CHANNELS]]);
        if ($ch === false) {
            return new Reply(error_msg('There are channels 1 to ' . CHANNELS . '.'));
        }
        if ($this->user === null) {
            return new Reply(error_msg('Log in first.', ['channel' => $ch]));
        }
        return $ch;
    }

    private function notice(string $what, int $ch): string
    {
        return json(stamped(['type' => $what, 'channel' => $ch, 'id' => $this->sid,
                             'name' => esc($this->user['name'])]));
    }

    /**
     * Whether this session is a member of channel $ch: its session data says
     * so, or else the router does. (A request the browser sent before the
     * answer to its previous one carries the session data as it was then: of
     * two joins sent together, each adds its channel to what it saw, and the
     * second reply's data may lack the first channel.)
     */
    private function isMember(int $ch): bool
    {
        if (in_array($ch, $this->user['ch'], true)) {
            return true;
        }
        return array_key_exists($this->sid, $this->router()->chMembers(channel_name($ch)));
    }

    /** Join channel N: Join, then the join notice published to the channel (so to us too). */
    private function join(array $req): Reply
    {
        $ch = $this->channelOf($req);
        if ($ch instanceof Reply) {
            return $ch;
        }
        $r = new Reply($this->notice('join', $ch));
        $r->join = [channel_name($ch)];
        $r->publish = [channel_name($ch)];
        $r->session = encode_user(['ch' => [...$this->user['ch'], $ch]] + $this->user);
        return $r;
    }

    /** Leave channel N: the leave notice published to the channel (so to us too), then Leave. */
    private function leave(array $req): Reply
    {
        $ch = $this->channelOf($req);
        if ($ch instanceof Reply) {
            return $ch;
        }
        $r = new Reply($this->notice('leave', $ch));
        if ($this->isMember($ch)) {
            $r->publish = [channel_name($ch)];
        }                                   // else: the notice to us only
        $r->leave = [channel_name($ch)];
        $r->session = encode_user(['ch' => array_diff($this->user['ch'], [$ch])] + $this->user);
        return $r;
    }

    /** A message: broadcast (channel 0) or published to channel N (members only). */
    private function msg(array $req): Reply
    {
        $ch = filter_var($req['channel'] ?? 0, FILTER_VALIDATE_INT,
                         ['options' => ['min_range' => 0, 'max_range' => CHANNELS]]);
        if ($ch === false) {
            return new Reply(error_msg('There are channels 1 to ' . CHANNELS . '.'));
        }
        if ($this->user === null) {
            return new Reply(error_msg('Log in first.'));
        }
        if ($ch > 0 && !$this->isMember($ch)) {
            return new Reply(error_msg('Join channel-' . $ch . ' to post there.', ['channel' => $ch]));
        }
        $text = clean($req['text'] ?? null, TEXT_MAX);
        if ($text === '') {
            return new Reply();
        }
        $r = new Reply(json(stamped(['type' => 'msg', 'id' => $this->sid, 'name' => esc($this->user['name']),
                                     'channel' => $ch, 'text' => esc($text)])));
        if ($ch === 0) {
            $r->broadcast = true;
        } else {
            $r->publish = [channel_name($ch)];
        }
        return $r;
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
    $chat = new Chat($sid, isset($_SERVER['SESSION']) ? (string)$_SERVER['SESSION'] : null);
    $reply = match ($event) {
        '1' => $chat->connect(),
        '2' => $chat->close(),
        default => $chat->message($body === false ? '' : $body),
    };
    $reply?->send();
} catch (Throwable $e) {
    error_log("chat: $sid: " . $e->getMessage());
    if ($event === '0' && !headers_sent()) {
        foreach ([FookingReply::JOIN, FookingReply::LEAVE, FookingReply::SESSION, FookingReply::PUBLISH,
                  FookingReply::BROADCAST] as $h) {
            header_remove($h);              // nothing of a reply that failed halfway
        }
        (new Reply(error_msg('The server is having trouble; please try again.')))->send();
    }
}
