-- ws_original.lua - a WebSocket server (RFC 6455) written as a fooking Lua
-- protocol script, in the style of the original C++ fooking's script.lua.
--
-- requestid 0: the HTTP upgrade request. The script answers it itself with
-- fc.send (101 Switching Protocols), drops it from the input and returns 1
-- with an empty output, so nothing goes to the backend. The 101 response also
-- carries "X-Fooking-Session: <fc.id(conn)>" so a test can compare the id the
-- script sees with the SESSIONID the backend receives.
-- requestid > 0: masked client frames; the unmasked payload of each complete
-- text/binary message is the message for the backend.
-- onWrite: every reply or push goes out as one unmasked text frame.
--
-- sha1 and base64 are helper modules next to this file, loaded with require:
-- package.path includes the script's own directory.

local fb = require("fooking.buffer")
local fc = require("fooking.connection")
local sha1 = require("sha1")
local base64 = require("base64")

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

-- Fragments of a message not finished yet, by session id (cleared in onClose).
local fragments = {}

-- A close frame (opcode 8) carrying a status code.
local function close_frame(code)
    return string.pack(">BBI2", 0x88, 2, code)
end

local function fail(conn, code)
    fc.send(conn, close_frame(code))
    fc.close(conn)
    return -1
end

local function handshake(conn, input)
    local data = fb.data(input)
    local stop = data:find("\r\n\r\n", 1, true)
    if not stop then
        return -1 -- the request is not complete yet
    end
    local key
    for name, value in data:sub(1, stop + 1):gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        if name:lower() == "sec-websocket-key" then
            key = value:match("^(.-)%s*$")
        end
    end
    fb.seek(input, stop + 3)
    if not key or key == "" then
        fc.send(conn, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        fc.close(conn)
        return -1
    end
    fc.send(conn, "HTTP/1.1 101 Switching Protocols\r\n"
        .. "Upgrade: websocket\r\n"
        .. "Connection: Upgrade\r\n"
        .. "Sec-WebSocket-Accept: " .. base64.encode(sha1.digest(key .. GUID)) .. "\r\n"
        .. "X-Fooking-Session: " .. fc.id(conn) .. "\r\n"
        .. "\r\n")
    return 1 -- handled; the output stays empty: nothing for the backend
end

-- XOR payload with the 4-byte mask, four bytes at a time.
local function unmask(payload, mask)
    local key = string.unpack(">I4", mask)
    local out = {}
    local n = #payload
    local whole = n - n % 4
    for i = 1, whole, 4 do
        out[#out + 1] = string.pack(">I4", string.unpack(">I4", payload, i) ~ key)
    end
    for i = whole + 1, n do
        out[#out + 1] = string.char(payload:byte(i) ~ mask:byte((i - 1) % 4 + 1))
    end
    return table.concat(out)
end

local function read_frame(conn, input, output)
    local size = fb.size(input)
    if size < 2 then
        return -1
    end
    local data = fb.data(input)
    local b1, b2, pos = string.unpack(">BB", data)
    local fin, opcode = b1 & 0x80 ~= 0, b1 & 0x0f
    local len = b2 & 0x7f
    if b2 & 0x80 == 0 or b1 & 0x70 ~= 0 then
        return fail(conn, 1002) -- client frames must be masked; no extensions
    end
    if len == 126 then
        if size < 4 then return -1 end
        len, pos = string.unpack(">I2", data, pos)
    elseif len == 127 then
        if size < 10 then return -1 end
        len, pos = string.unpack(">i8", data, pos)
        if len < 0 then return fail(conn, 1002) end
    end
    if size < pos + 3 + len then
        return -1 -- the frame is not complete yet
    end
    local mask = data:sub(pos, pos + 3)
    local payload = unmask(data:sub(pos + 4, pos + 3 + len), mask)
    fb.seek(input, pos + 3 + len)

    local id = fc.id(conn)
    if opcode == 0x8 then -- close: answer with the same code, then close
        fc.send(conn, string.pack(">BB", 0x88, math.min(#payload, 2)) .. payload:sub(1, 2))
        fc.close(conn)
        return -1
    elseif opcode == 0x9 then -- ping: pong with the same payload
        if #payload > 125 then return fail(conn, 1002) end
        fc.send(conn, string.pack(">BB", 0x8A, #payload) .. payload)
        return 1
    elseif opcode == 0xA then -- pong: nothing to do
        return 1
    elseif opcode == 0x1 or opcode == 0x2 then
        if fragments[id] then return fail(conn, 1002) end
        if not fin then
            fragments[id] = {payload}
            return 1
        end
        fb.append(output, payload)
        return 1
    elseif opcode == 0x0 then
        local parts = fragments[id]
        if not parts then return fail(conn, 1002) end
        parts[#parts + 1] = payload
        if not fin then return 1 end
        fragments[id] = nil
        fb.append(output, table.concat(parts))
        return 1
    end
    return fail(conn, 1002) -- unknown opcode
end

function onRead(conn, requestid, input, output)
    if requestid == 0 then
        return handshake(conn, input)
    end
    return read_frame(conn, input, output)
end

function onWrite(conn, requestid, input, output)
    if requestid == 0 then
        return -1 -- the handshake is not done: a push now is dropped
    end
    local payload = fb.data(input)
    local n = #payload
    local header
    if n < 126 then
        header = string.pack(">BB", 0x81, n)
    elseif n < 65536 then
        header = string.pack(">BBI2", 0x81, 126, n)
    else
        header = string.pack(">BBI8", 0x81, 127, n)
    end
    fb.append(output, header .. payload)
    return 1
end

function onClose(conn)
    fragments[fc.id(conn)] = nil
end
