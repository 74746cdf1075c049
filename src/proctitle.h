/* proctitle.h - process titles shown by ps ("fooking: master ...", "fooking: worker 1"). */
#ifndef FOOKING_PROCTITLE_H
#define FOOKING_PROCTITLE_H

/* Must be called from main() before anything reads environ or argv again. */
void proctitle_init(int argc, char **argv);
void proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
