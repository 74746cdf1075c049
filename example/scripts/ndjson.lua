-- ndjson.lua - newline-delimited messages for fooking.
--
-- Each line a client sends, terminated by "\n" or "\r\n", is one message for
-- the backend (without its terminator); every reply or push is written back
-- as one line ending in "\n". Fits NDJSON (one JSON document per line):
-- replies must not contain a newline themselves.
--
-- Use it with SCRIPT_FILE = "example/scripts/ndjson.lua" in the gateway config
-- (a path relative to the config file's directory), then e.g.
--   printf 'hello\n' | nc 127.0.0.1 <PORT>

local fb = require("fooking.buffer")

-- input holds what the client sent so far; put one message in output.
-- Returns 1 when a line was taken, -1 to wait for more input.
function onRead(conn, requestid, input, output)
    local data = fb.data(input)
    local eol = data:find("\n", 1, true)
    if not eol then
        return -1 -- no complete line yet
    end
    local line = data:sub(1, eol - 1)
    if line:sub(-1) == "\r" then
        line = line:sub(1, -2)
    end
    fb.seek(input, eol)     -- drop the line and its terminator
    fb.append(output, line) -- an empty line sends nothing to the backend
    return 1
end

-- input is a reply or push for this client; output is what gets written.
function onWrite(conn, requestid, input, output)
    fb.append(output, fb.data(input) .. "\n")
    return 1
end
