/* tally-push --sheets FILE, the run itself (sheets_run.c), called by main.c. */
#ifndef PUSH_SHEETS_RUN_H
#define PUSH_SHEETS_RUN_H

#include <signal.h>
#include <stdbool.h>

struct tally_client;

struct push_sheets_run {
    struct tally_client *client;
    int fd;           /* the sheets file, read to its end */
    const char *name; /* for messages */
    const char *spool;
    bool quiet;
    volatile sig_atomic_t *stop; /* set by SIGINT/SIGTERM */
    /* main.c's judgement of a libtally status: 0 to go on, else the exit status (the reason
     * printed). */
    int (*check)(void *arg, int rc);
    void *arg;
};

/* Reads the file whole (every bad line printed with its number; one bad line and nothing is
 * sent: PUSH_EXIT_MALFORMED), waits for tallyd's Welcome (its row limit), skips the sheets a
 * resumed run of this very file spooled already, and spools the rest, PUSH_SHEETS_PER_BATCH
 * sheets or the server's max_batch_votes rows a batch, in the order their first rows stand.
 * Returns 0 once all are spooled (not yet durable), or an exit status. */
int push_sheets_run(const struct push_sheets_run *r);

#endif
