/* Internal to ingest: building the tally from what start-up recovery streams. The hooks
 * run on the store thread; the result is handed to the loop once, under ingest's mailbox
 * lock, and never touched by the store thread again. */
#ifndef INGEST_STARTUP_H
#define INGEST_STARTUP_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct tally;

struct ingest_rebuild {
    uint64_t expected_ballots; /* size the ballot set for at least this many */
    struct tally *tally;       /* built by begin(); NULL on failure */
    uint64_t dup_tokens;       /* stored tokens seen twice (a damaged record) */
    uint64_t orphan_digests;   /* batch rows past their collector's watermark */
    char failure[160];         /* why begin() gave up, "" otherwise */
};

/* Hooks for store_worker_config.hooks, with arg = the ingest_rebuild. A second begin()
 * (start-up retried after a lost session) starts over. */
struct store_recover_hooks ingest_rebuild_hooks(struct ingest_rebuild *r);

#endif
