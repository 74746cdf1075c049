-- close_on_push.lua - no onRead (clients speak the length-prefixed protocol);
-- onWrite closes the connection when the message is "close me" (the client
-- goes while the gateway is handing a push to many clients), and leaves other
-- messages to the length-prefixed framing.
local fb = require("fooking.buffer")
local fc = require("fooking.connection")

function onWrite(conn, requestid, input, output)
    if fb.data(input) == "close me" then
        fc.close(conn)
        return 1
    end
    return 0
end
