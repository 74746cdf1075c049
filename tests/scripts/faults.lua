-- faults.lua - a line protocol (one message per "\n"-terminated line, replies
-- written as lines) whose commands make the script misbehave on purpose:
--   boom            onRead raises an error
--   bye             fc.send a goodbye line, then fc.close
--   spin            an endless loop
--   keep            keeps this call's input and output buffers in globals
--   keep-quiet      the same, with an empty output (nothing for the backend)
--   use-output      appends to the output buffer kept by "keep" (an earlier call)
--   use-input       reads the input buffer kept by "keep" (maybe another client's)
--   use-conn        fc.send to the connection kept by "keep"
--   rid TEXT        the message is TEXT#<requestid>
--   anything else   the line itself is the message
local fb = require("fooking.buffer")
local fc = require("fooking.connection")

kept_input, kept_output, kept_conn = nil, nil, nil

function onRead(conn, requestid, input, output)
    local data = fb.data(input)
    local eol = data:find("\n", 1, true)
    if not eol then
        return -1
    end
    local line = data:sub(1, eol - 1)
    fb.seek(input, eol)
    if line == "boom" then
        error("boom requested")
    elseif line == "bye" then
        fc.send(conn, "goodbye\n")
        fc.close(conn)
        return 1
    elseif line == "spin" then
        while true do end
    elseif line == "keep" or line == "keep-quiet" then
        kept_input, kept_output, kept_conn = input, output, conn
        if line == "keep" then
            fb.append(output, "kept")
        end
        return 1
    elseif line == "use-output" then
        fb.append(kept_output, "stale")
        fb.append(output, "used output")
        return 1
    elseif line == "use-input" then
        fb.append(output, "used input " .. fb.size(kept_input))
        return 1
    elseif line == "use-conn" then
        fc.send(kept_conn, "stale\n")
        fb.append(output, "used conn")
        return 1
    elseif line:sub(1, 4) == "rid " then
        fb.append(output, line:sub(5) .. "#" .. requestid)
        return 1
    end
    fb.append(output, line)
    return 1
end

function onWrite(conn, requestid, input, output)
    fb.append(output, fb.data(input) .. "\n")
    return 1
end
