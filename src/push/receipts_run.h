/* tally-push --verify-receipts, the run itself (receipts_run.c), called by main.c. */
#ifndef PUSH_RECEIPTS_RUN_H
#define PUSH_RECEIPTS_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct push_receipts_run {
    const char *spool;
    const char *collector; /* "" or NULL: the one the spool's state names */
    const uint8_t *head;   /* 32 bytes, the published chain head */
    const char *http_host;
    uint16_t http_port;
    const char *http_tls_ca; /* NULL or "": plain HTTP */
    bool quiet;
    volatile sig_atomic_t *stop; /* set by SIGINT/SIGTERM */
};

/* Reads the (seq, digest) of every durable batch the spool kept (opening, and for that
 * while locking, the spool through libtally; a directory without a spool state is refused,
 * never created), then fetches and checks each batch's receipt in seq order
 * (push_receipt_verify), one progress line a second on stderr unless quiet. Prints
 * `receipts: N verified against head HEX` on stdout and returns 0; or prints the first
 * failure (`tally-push: receipt for ID/SEQ: WHY`, a 404 or 409 included) or why tallyd
 * could not be asked, and returns PUSH_EXIT_FATAL; PUSH_EXIT_USAGE when no collector is
 * given and the spool does not name one. */
int push_receipts_run(const struct push_receipts_run *r);

#endif
