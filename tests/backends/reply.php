<?php
/* reply.php - php-fpm test backend for the reply commands (FookingReply).
 * tests/backends/goreply does the same in Go; tests/integration/test_reply_clients.py
 * drives both through a gateway.
 *
 *   EVENT=1  -> joins channel "connected", sets the session data to "connected",
 *               replies "welcome <SESSIONID>"
 *   EVENT=2  -> appends "<SESSIONID> <SESSION>\n" to the file named by the static
 *               param EVENT_LOG; empty reply
 *   message  -> a JSON object of commands, called in this order (which is not the
 *               order the gateway applies them in):
 *                 "leave": [..], "publish": [..], "exclude_self": true,
 *                 "broadcast": true, "close": [code, reason], "unbind": true,
 *                 "bind": "uid", "session": "data", "join": [..]
 *               and replies "body" (text; nothing when absent), or with
 *               "params": true the JSON {"SESSIONID", "SESSION", "UID"} of the
 *               request's params (null when absent). A command the library
 *               refuses is a reply "error: <class>: <message>".
 */
declare(strict_types=1);

require __DIR__ . '/../../example/clients/php/FookingReply.php';

$sid = $_SERVER['SESSIONID'] ?? '';
$event = $_SERVER['EVENT'] ?? '0';

function reply(string $out): void
{
    if ($out === '') {
        return;
    }
    header('Content-Type: text/plain');
    header('Content-Length: ' . strlen($out));
    echo $out;
}

if ($event === '1') {
    FookingReply::join('connected');
    FookingReply::session('connected');
    reply("welcome $sid");
    exit;
}
if ($event === '2') {
    $log = $_SERVER['EVENT_LOG'] ?? '';
    if ($log !== '') {
        file_put_contents($log, $sid . ' ' . ($_SERVER['SESSION'] ?? '') . "\n", FILE_APPEND | LOCK_EX);
    }
    exit;
}

$req = json_decode(file_get_contents('php://input') ?: '', true);
if (!is_array($req)) {
    reply('error: not a JSON object');
    exit;
}
try {
    if (isset($req['leave'])) {
        FookingReply::leave(...$req['leave']);
    }
    if (isset($req['publish'])) {
        FookingReply::publish(...$req['publish']);
    }
    if (!empty($req['exclude_self'])) {
        FookingReply::excludeSelf();
    }
    if (!empty($req['broadcast'])) {
        FookingReply::broadcast();
    }
    if (isset($req['close'])) {
        FookingReply::close(...$req['close']);
    }
    if (!empty($req['unbind'])) {
        FookingReply::unbindUid();
    }
    if (isset($req['bind'])) {
        FookingReply::bindUid($req['bind']);
    }
    if (isset($req['session'])) {
        FookingReply::session($req['session']);
    }
    if (isset($req['join'])) {
        FookingReply::join(...$req['join']);
    }
} catch (Exception $e) {
    header_remove();
    reply('error: ' . get_class($e) . ': ' . $e->getMessage());
    exit;
}
if (!empty($req['params'])) {
    reply(json_encode(['SESSIONID' => $sid, 'SESSION' => $_SERVER['SESSION'] ?? null,
                       'UID' => $_SERVER['UID'] ?? null], JSON_UNESCAPED_SLASHES));
} else {
    reply((string)($req['body'] ?? ''));
}
