<?php
/**
 * FookingReply - reply commands for a PHP backend of fooking (PHP 8, no extensions).
 *
 * A FastCGI reply may carry commands as response headers. The gateway applies
 * them for the session that sent the request, when it delivers that reply to
 * the client (so in the client's request order), and never shows them to the
 * client. No router connection is needed for them.
 *
 *   FookingReply::join('a', 'b')      X-Fooking-Join: a, b        the session joins channels a and b
 *   FookingReply::leave('a')          X-Fooking-Leave: a          it leaves channel a
 *   FookingReply::bindUid('42')       X-Fooking-Bind-Uid: 42      binds uid 42
 *   FookingReply::unbindUid()         X-Fooking-Unbind-Uid: 1     unbinds it
 *   FookingReply::session($json)      X-Fooking-Session: <data>   replaces the session data ('' clears it)
 *   FookingReply::publish('room')     X-Fooking-Publish: room     the body goes to the members of room
 *   FookingReply::broadcast()         X-Fooking-Broadcast: 1      the body goes to every client
 *   FookingReply::excludeSelf()       X-Fooking-Exclude-Self: 1   with publish/broadcast: not to the requester
 *   FookingReply::close(4001, 'bye')  X-Fooking-Close: 4001 bye   after this reply, close the client
 *
 * Whatever order the calls come in, the gateway applies one reply as: 1) join,
 * bindUid / unbindUid, session, in the order given; 2) the body (to the
 * requester, or published / broadcast: with publish the requester gets it iff
 * it is a member of one of the channels at that point, with broadcast always,
 * unless excludeSelf); 3) leave; 4) close. So join('room') + publish('room')
 * reaches the new member too, and publish('room') + leave('room') still
 * reaches the leaver. The session data arrives with every later request of the
 * session as $_SERVER['SESSION'] (the close event, EVENT=2, included); uids,
 * memberships and data set this way are what the router's queries (chMembers,
 * chSessions, getSession, ...) see. A command the gateway finds malformed is
 * logged and skipped; the rest of the reply is still delivered.
 *
 * Each method adds one header line (header(..., false): several calls add up)
 * and must run before any output. Arguments are checked first:
 * InvalidArgumentException for a channel that is not 1..255 bytes or holds a
 * comma, CR, LF or NUL or begins or ends with a blank (space, tab); a uid not
 * 1..128 bytes or with CR, LF, NUL or a blank at either end; session data with
 * CR, LF, NUL or a blank at either end, or over 16384 bytes (the gateway's
 * SESSION_MAX_SIZE, 4096 by default, may allow less); a close code other than
 * 1000 and 3000..4999; a close reason over 123 bytes, not UTF-8, or with CR,
 * LF, NUL or a blank at either end. (A header value's blanks at either end are
 * not part of it, so such a value could not arrive as given.) A
 * RuntimeException when the headers are already sent.
 *
 *   require 'FookingReply.php';
 *   FookingReply::join('room1');
 *   FookingReply::session(json_encode(['name' => 'Ann']));
 *   FookingReply::publish('room1');
 *   echo 'Ann joined room1';          // to every member of room1, Ann included
 */
final class FookingReply
{
    public const JOIN = 'X-Fooking-Join';
    public const LEAVE = 'X-Fooking-Leave';
    public const BIND_UID = 'X-Fooking-Bind-Uid';
    public const UNBIND_UID = 'X-Fooking-Unbind-Uid';
    public const SESSION = 'X-Fooking-Session';
    public const PUBLISH = 'X-Fooking-Publish';
    public const BROADCAST = 'X-Fooking-Broadcast';
    public const EXCLUDE_SELF = 'X-Fooking-Exclude-Self';
    public const CLOSE = 'X-Fooking-Close';

    public const MAX_CHANNEL = 255;
    public const MAX_UID = 128;
    public const MAX_SESSION = 16384;
    public const MAX_REASON = 123;

    private function __construct()
    {
    }

    /** The session joins the channels (applied before the body is sent). */
    public static function join(string ...$channels): void
    {
        self::add(self::JOIN, self::channelList('join', $channels));
    }

    /** The session leaves the channels (applied after the body is sent). */
    public static function leave(string ...$channels): void
    {
        self::add(self::LEAVE, self::channelList('leave', $channels));
    }

    /** Binds the session to $uid (replacing the uid it had). */
    public static function bindUid(string $uid): void
    {
        $n = strlen($uid);
        if ($n < 1 || $n > self::MAX_UID) {
            throw new InvalidArgumentException("fooking reply: a uid is 1 to 128 bytes, got $n");
        }
        self::checkText('a uid', $uid);
        self::add(self::BIND_UID, $uid);
    }

    /** Unbinds the session's uid. */
    public static function unbindUid(): void
    {
        self::add(self::UNBIND_UID, '1');
    }

    /** Replaces the session data with $data ('' clears it). */
    public static function session(string $data): void
    {
        $n = strlen($data);
        if ($n > self::MAX_SESSION) {
            throw new InvalidArgumentException('fooking reply: session data is at most '
                                               . self::MAX_SESSION . " bytes, got $n");
        }
        self::checkText('session data', $data);
        self::add(self::SESSION, $data);
    }

    /** The body goes to every member of the channels instead of only to the requester. */
    public static function publish(string ...$channels): void
    {
        self::add(self::PUBLISH, self::channelList('publish', $channels));
    }

    /** The body goes to every client instead of only to the requester. */
    public static function broadcast(): void
    {
        self::add(self::BROADCAST, '1');
    }

    /** With publish() or broadcast(): the body does not go to the requester. */
    public static function excludeSelf(): void
    {
        self::add(self::EXCLUDE_SELF, '1');
    }

    /**
     * After this reply, the gateway closes the client: a WebSocket client gets
     * a close frame with $code (1000, or 3000..4999) and $reason (at most 123
     * bytes of UTF-8); other protocols are simply closed.
     */
    public static function close(int $code = 1000, string $reason = ''): void
    {
        if ($code !== 1000 && ($code < 3000 || $code > 4999)) {
            throw new InvalidArgumentException("fooking reply: a close code is 1000 or 3000 to 4999, got $code");
        }
        $n = strlen($reason);
        if ($n > self::MAX_REASON) {
            throw new InvalidArgumentException("fooking reply: a close reason is at most 123 bytes, got $n");
        }
        if (!preg_match('//u', $reason)) {
            throw new InvalidArgumentException('fooking reply: a close reason is UTF-8 text');
        }
        self::checkText('a close reason', $reason);
        self::add(self::CLOSE, $reason === '' ? (string)$code : "$code $reason");
    }

    /**
     * The channels as one header value ("a, b"), each checked.
     * @throws InvalidArgumentException
     */
    public static function channelList(string $what, array $channels): string
    {
        if ($channels === []) {
            throw new InvalidArgumentException("fooking reply: $what needs at least one channel");
        }
        foreach ($channels as $ch) {
            self::checkChannel($ch);
        }
        return implode(', ', $channels);
    }

    /**
     * One channel name: 1 to 255 bytes, no comma, CR, LF or NUL, no blank at
     * either end.
     * @throws InvalidArgumentException
     */
    public static function checkChannel(string $channel): string
    {
        $n = strlen($channel);
        if ($n < 1 || $n > self::MAX_CHANNEL) {
            throw new InvalidArgumentException("fooking reply: a channel name is 1 to 255 bytes, got $n");
        }
        if (strpbrk($channel, ",\r\n\0") !== false) {
            throw new InvalidArgumentException('fooking reply: a channel name has no comma, CR, LF or NUL, got '
                                               . var_export($channel, true));
        }
        self::checkText('a channel name', $channel);
        return $channel;
    }

    /** No CR, LF or NUL (they would end the header), no blank at either end. */
    private static function checkText(string $what, string $s): void
    {
        if (strpbrk($s, "\r\n\0") !== false) {
            throw new InvalidArgumentException("fooking reply: $what has no CR, LF or NUL");
        }
        if ($s !== '' && (strspn($s, " \t", 0, 1) === 1 || strspn($s, " \t", -1) === 1)) {
            throw new InvalidArgumentException("fooking reply: $what does not begin or end with a blank, got "
                                               . var_export($s, true));
        }
    }

    private static function add(string $name, string $value): void
    {
        if (headers_sent($file, $line)) {
            throw new RuntimeException("fooking reply: cannot add $name, the headers were already sent"
                                       . ($file !== '' ? " (output started at $file:$line)" : ''));
        }
        header("$name: $value", false);
    }
}
