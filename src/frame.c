/* frame.c - length-prefixed framing (see frame.h). */
#include "frame.h"

int frame_decode(const uint8_t *p, size_t len, size_t max, uint32_t *payload_len)
{
    if (len < FRAME_HEADER_LEN)
        return FRAME_AGAIN;
    uint32_t n = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    *payload_len = n;
    return n > max ? FRAME_TOO_BIG : FRAME_OK;
}

void frame_encode(uint8_t out[FRAME_HEADER_LEN], uint32_t n)
{
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
}
