-- write_zero.lua - no onRead (clients speak the length-prefixed protocol);
-- onWrite returns -1 for replies starting with "drop" (nothing is written)
-- and 0 for the others (written with the length-prefixed framing).
local fb = require("fooking.buffer")

function onWrite(conn, requestid, input, output)
    if fb.data(input):sub(1, 4) == "drop" then
        return -1
    end
    return 0
end
