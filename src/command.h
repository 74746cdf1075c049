/* command.h - the worker's executor of router-protocol commands: whatever
 * link delivered them (router or bus), KICK, SEND_MSG, SEND_ALL, CH_ADD, CH_DEL
 * and CH_PUB are carried out here on the worker's clients. */
#ifndef FOOKING_COMMAND_H
#define FOOKING_COMMAND_H

struct worker;
struct rmsg;

/* Carries out m on w's clients; source names the sender in logs. */
void worker_command(struct worker *w, const struct rmsg *m, const char *source);

#endif
