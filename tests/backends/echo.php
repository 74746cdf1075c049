<?php
/* echo.php - the php-fpm test backend of fooking's integration tests.
 *
 * What it does is chosen by the message (the request body), so a test can drive it:
 *   EVENT=1 (connect)     -> "welcome <SESSIONID>"
 *   EVENT=2 (close)       -> appends "<SESSIONID> closed\n" to the file named by the
 *                            static param EVENT_LOG (if set); empty reply
 *   "params..."           -> JSON object of every string entry of $_SERVER
 *                            (SESSIONID, EVENT, REMOTE_ADDR, REMOTE_PORT,
 *                            CONTENT_LENGTH, the FASTCGI_PARAMS, ...)
 *   "sleep N..."          -> sleeps N seconds (may be fractional), then echoes
 *   "stderr..."           -> writes a line to FastCGI STDERR, then echoes
 *   "big N"               -> replies N bytes of "x"
 *   anything else         -> echoes the body back byte-exact
 * Binary-safe: the body is never trimmed, the reply has an exact Content-Length,
 * output buffering is off. */

while (ob_get_level() > 0) {
    ob_end_clean();
}

$body = file_get_contents('php://input');
if ($body === false) {
    $body = '';
}
$sid = $_SERVER['SESSIONID'] ?? ($_SERVER['HTTP_SESSIONID'] ?? '');
$event = $_SERVER['EVENT'] ?? ($_SERVER['HTTP_EVENT'] ?? '0');

function reply(string $out): void
{
    header('Content-Type: application/octet-stream');
    header('Content-Length: ' . strlen($out));
    echo $out;
}

if ($event === '1') {
    reply("welcome " . $sid);
    exit;
}
if ($event === '2') {
    $log = $_SERVER['EVENT_LOG'] ?? '';
    if ($log !== '') {
        file_put_contents($log, $sid . " closed\n", FILE_APPEND | LOCK_EX);
    }
    reply('');
    exit;
}

if (strncmp($body, 'params', 6) === 0) {
    $out = [];
    foreach ($_SERVER as $k => $v) {
        if (is_string($v)) {
            $out[$k] = $v;
        }
    }
    reply(json_encode($out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE));
    exit;
}
if (strncmp($body, 'sleep ', 6) === 0) {
    $n = (float)substr($body, 6, 16);
    if ($n > 0) {
        usleep((int)($n * 1000000));
    }
    reply($body);
    exit;
}
if (strncmp($body, 'stderr', 6) === 0) {
    /* error_log() with no ini error_log goes to the SAPI logger, which php-fpm
     * sends as FCGI_STDERR records (fastcgi.logging=1 by default). */
    error_log('echo.php stderr test message');
    reply($body);
    exit;
}
if (strncmp($body, 'big ', 4) === 0) {
    reply(str_repeat('x', max(0, (int)substr($body, 4, 16))));
    exit;
}
reply($body);
