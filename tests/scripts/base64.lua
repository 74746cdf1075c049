-- base64.lua - base64 encoding (RFC 4648, with padding) in pure Lua 5.3.
local M = {}

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.encode(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = (a << 16) | ((b or 0) << 8) | (c or 0)
        local quad = {}
        for j = 1, 4 do
            local v = (n >> (6 * (4 - j))) & 63
            quad[j] = ALPHABET:sub(v + 1, v + 1)
        end
        if not b then
            quad[3], quad[4] = "=", "="
        elseif not c then
            quad[4] = "="
        end
        out[#out + 1] = table.concat(quad)
    end
    return table.concat(out)
end

return M
