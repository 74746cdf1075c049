/* command.h - the worker's executor of router-protocol commands: whatever
 * link delivered them (router or bus), KICK, SEND_MSG, SEND_ALL, CH_ADD, CH_DEL
 * and CH_PUB are carried out here on the worker's clients. */
#ifndef FOOKING_COMMAND_H
#define FOOKING_COMMAND_H

struct worker;
struct link;
struct rmsg;

/* Carries out m on w's clients. from is the link that delivered it: its name
 * is the sender in logs, and a CH_ADD that no session here takes is given back
 * to it (link_ops.ch_unwanted). */
void command_run(struct worker *w, struct link *from, const struct rmsg *m);
/* Carries out what command_run holds back to send together (a run of
 * SEND_ALLs). A link calls it when it has handed over all it read. */
void command_flush(struct worker *w);

#endif
