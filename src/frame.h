/* frame.h - the length-prefixed client protocol: a 4-byte big-endian length,
 * then that many bytes, both ways. Pure helpers, no I/O. */
#ifndef FOOKING_FRAME_H
#define FOOKING_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_LEN 4

enum { FRAME_OK = 0, FRAME_AGAIN = -1, FRAME_TOO_BIG = -2 };

/* Decodes the header at p (len bytes available). FRAME_OK with *payload_len set,
 * FRAME_AGAIN when fewer than 4 bytes, FRAME_TOO_BIG when over max. */
int frame_decode(const uint8_t *p, size_t len, size_t max, uint32_t *payload_len);
void frame_encode(uint8_t out[FRAME_HEADER_LEN], uint32_t payload_len);

#endif
