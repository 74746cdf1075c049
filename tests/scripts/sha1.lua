-- sha1.lua - SHA-1 (FIPS 180-4) in pure Lua 5.3 with the integer bit operators.
-- Loaded by ws_original.lua with require("sha1"): proves that package.path
-- holds the script's own directory.
local M = {}

local MASK = 0xffffffff

local function rol(x, n)
    return ((x << n) | (x >> (32 - n))) & MASK
end

-- The 20-byte binary digest of the string msg.
function M.digest(msg)
    local len = #msg
    -- 0x80, zeros up to 56 mod 64, then the bit length as a 64-bit big-endian integer
    msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. string.pack(">I8", len * 8)
    local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
    local w = {}
    for chunk = 1, #msg, 64 do
        for i = 0, 15 do
            w[i] = string.unpack(">I4", msg, chunk + i * 4)
        end
        for i = 16, 79 do
            w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1)
        end
        local a, b, c, d, e = h0, h1, h2, h3, h4
        for i = 0, 79 do
            local f, k
            if i < 20 then
                f, k = (b & c) | (~b & d), 0x5A827999
            elseif i < 40 then
                f, k = b ~ c ~ d, 0x6ED9EBA1
            elseif i < 60 then
                f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
            else
                f, k = b ~ c ~ d, 0xCA62C1D6
            end
            local t = (rol(a, 5) + (f & MASK) + e + k + w[i]) & MASK
            a, b, c, d, e = t, a, rol(b, 30), c, d
        end
        h0 = (h0 + a) & MASK
        h1 = (h1 + b) & MASK
        h2 = (h2 + c) & MASK
        h3 = (h3 + d) & MASK
        h4 = (h4 + e) & MASK
    end
    return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

-- The digest as 40 lowercase hex characters.
function M.hex(msg)
    return (M.digest(msg):gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

return M
