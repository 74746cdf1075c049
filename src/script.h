/* script.h - Lua protocol scripts, compatible with the original fooking API:
 * globals onConnect(conn), onClose(conn), onRead(conn, requestid, input, output),
 * onWrite(conn, requestid, input, output); modules "fooking.buffer" (size, data,
 * append, seek) and "fooking.connection" (buffer, send, id, close). */
#ifndef FOOKING_SCRIPT_H
#define FOOKING_SCRIPT_H

#include <event2/buffer.h>

struct client;
struct script;

/* Loads and runs the script file once. NULL on error (message in err). */
struct script *script_load(const char *path, char *err, size_t errlen);
/* A script is shared by the worker and by every client accepted while it was
 * the worker's script: after a reload that changes or removes SCRIPT_FILE,
 * clients keep the protocol they were accepted with until they close. */
struct script *script_ref(struct script *s);
void script_unref(struct script *s);
int script_has_read(const struct script *s);
int script_has_write(const struct script *s);

/* Result of a call: the handler's integer, or SCRIPT_FAILED when the script
 * raised an error (logged with the SID; the caller closes that client). */
#define SCRIPT_FAILED (-1000000)

/* onConnect / onClose; no-ops when the script does not define them. */
int script_on_connect(struct script *s, struct client *c);
void script_on_close(struct script *s, struct client *c);
/* onRead(conn, requestid, input, output). */
int script_on_read(struct script *s, struct client *c, unsigned requestid, struct evbuffer *input,
                   struct evbuffer *output);
/* onWrite(conn, requestid, input, output). */
int script_on_write(struct script *s, struct client *c, unsigned requestid, struct evbuffer *input,
                    struct evbuffer *output);

#endif
