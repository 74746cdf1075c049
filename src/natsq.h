/* natsq.h - the queries of the NATS bus, as a codec (no I/O).
 *
 * A router asks every gateway worker at once and adds up what they hold:
 *   request, on <prefix>q, with a reply subject:
 *       u32 max | the backend's query message (header, S, D)
 *     max is the largest answer D the router takes (ROUTER_ANSWER_MAX).
 *   each worker's answer, on the reply subject: a message of the query's type
 *       S = u16 server id | u8 worker id | u8 status (NATSQ_OK, NATSQ_OVER)
 *       D = the worker's part (below)
 * Parts are what the router's own answer would be, from one worker's sessions:
 * IS_ONLINE one byte per SID (ORed), UID_COUNT and CH_COUNT a u32 (added),
 * UID_SIDS, CH_MEMBERS and CH_SESSIONS records (joined), SID_UID a uid or
 * nothing and SESSION_GET u8 found | data (the one that has it), CHANNELS
 * records (added by name). INFO's part is
 *       u32 clients | u32 channels | u32 uids | u8 names | names
 * where names (when the u8 is 1) are the channel names and then the uids, each
 * u8 length | bytes, so that the router counts each once across workers; a
 * worker whose names would pass NATSQ_INFO_NAMES sends the counts alone, and
 * INFO then adds its counts (an upper bound). */
#ifndef FOOKING_NATSQ_H
#define FOOKING_NATSQ_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#define NATSQ_REQ_HEAD   4 /* u32 max */
#define NATSQ_ANSWER_S   4 /* u16 server | u8 worker | u8 status */
#define NATSQ_INFO_HEAD  13
#define NATSQ_INFO_NAMES (256u << 10)
enum { NATSQ_OK = 0, NATSQ_OVER = 1 };

/* An answer's S. */
void natsq_answer_s(unsigned char out[NATSQ_ANSWER_S], unsigned server, unsigned worker,
                    int status);
/* Reads an answer's S: 0, or -1 when it is not NATSQ_ANSWER_S bytes. */
int natsq_answer_s_parse(const unsigned char *s, size_t slen, unsigned *server, unsigned *worker,
                         int *status);

struct natsq_merge;
/* For a query of type (IS_ONLINE .. CHANNELS, or INFO), answers up to max
 * bytes; nsids: IS_ONLINE's SIDs. NULL when out of memory. */
struct natsq_merge *natsq_merge_new(int type, size_t max, size_t nsids);
/* Adds one worker's part. 0, or -1 when it is malformed (ignored). */
int natsq_merge_add(struct natsq_merge *m, unsigned server, unsigned worker, int status,
                    const unsigned char *d, size_t len);
/* The answer's D into out: 0, 1 when it would pass max (or a worker said
 * so), -1 out of memory. */
int natsq_merge_result(struct natsq_merge *m, struct evbuffer *out);
void natsq_merge_free(struct natsq_merge *m);

#endif
