-- fallback.lua - onRead returning 0: lines starting with "!" are messages of
-- this script, anything else is read as a length-prefixed message (4-byte
-- big-endian length + body). No onWrite: every reply is length-prefixed.
local fb = require("fooking.buffer")

function onRead(conn, requestid, input, output)
    local data = fb.data(input)
    if data:sub(1, 1) ~= "!" then
        return 0
    end
    local eol = data:find("\n", 1, true)
    if not eol then
        return -1
    end
    fb.append(output, data:sub(2, eol - 1))
    fb.seek(input, eol)
    return 1
end
