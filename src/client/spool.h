/* The collector's on-disk spool: batches that are not yet durable on the server, the next
 * seq to assign and the newest application cursor. Internal to libtally. */
#ifndef CLIENT_SPOOL_H
#define CLIENT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/client.h"
#include "wire/digest.h"

/* One spooled batch, held in memory as its whole file image. */
struct client_spool_batch {
    uint64_t seq;
    uint32_t votes;  /* ballots of a ballot batch; 0 for a sheet batch */
    uint32_t sheets; /* sheets of a sheet batch; 0 for a ballot batch */
    uint32_t rows;   /* a sheet batch's rows (each sheet's longer array), for the limits */
    uint8_t digest[WIRE_DIGEST_BYTES]; /* wire_batch_digest_msg of the frame's batch */
    uint32_t frame_len;                /* bytes of the wire frame, 4-byte header included */
    uint8_t *image;                    /* owned: the file's bytes */
    const uint8_t *frame;              /* points into image: what is sent on the wire as is */
    /* tallyd acked this very frame under its seq (Ack{seq}) since the spool was opened. In
     * memory only: a reopened spool confirms nothing, its batches are checked again. */
    bool confirmed;
};

struct client_spool {
    int dir_fd;
    int lock_fd;
    char *dir; /* owned: the spool directory as given, for messages */
    char collector_id[TALLY_COLLECTOR_ID_MAX + 1];
    uint64_t next_seq;                  /* seq the next appended batch gets; never reused */
    uint64_t durable_seq;               /* batches up to here are durable and deleted */
    uint64_t durable_votes;             /* votes in batches 1..durable_seq */
    uint64_t pending_votes;             /* votes in batches[] */
    struct client_spool_batch *batches; /* seqs durable_seq+1 .. next_seq-1, in order */
    size_t count;
    size_t cap;
    uint8_t cursor[TALLY_CLIENT_CURSOR_MAX];
    size_t cursor_len;
    uint64_t discarded_seq; /* set by open when a torn newest batch was thrown away */
    uint32_t state_version; /* 1; 2 once a sheet batch was spooled (older libtally refuses) */
    int digests_fd;         /* the durable digests file, open for the spool's life */
    uint64_t digests_len;   /* bytes of whole records in it */
    uint64_t digests_last;  /* seq of its last record, 0 if none */
    char err[256];          /* why the last call failed */
};

/* Opens dir (creating it if missing), locks it, loads the state and every batch file, and
 * deletes leftovers: batches already durable, a torn newest batch, a stale state.tmp. Returns
 * 0 or TALLY_CLIENT_ERR_IO / _CORRUPT / _INVALID with s->err set; on failure s holds
 * nothing to release. */
int client_spool_open(struct client_spool *s, const char *dir, const char *collector_id)
    __attribute__((warn_unused_result));

/* Releases memory, unlocks and closes. Safe on a spool whose open failed. */
void client_spool_close(struct client_spool *s);

/* Writes the batch whose encoded frame (seq must be s->next_seq) is frame[0..frame_len) with
 * its cursor as a new file and fsyncs file and directory; then it is s->batches[count-1].
 * The frame is decoded and checked as open checks it (a ballot batch, or a sheet batch with
 * no ballots), and its digest taken. The first sheet batch of a spool rewrites the state
 * file as version 2 first. Copies frame and cursor. Returns 0, TALLY_CLIENT_ERR_INVALID (a
 * frame open would refuse; nothing written) or TALLY_CLIENT_ERR_IO, after which the file is
 * deleted again; should the delete fail too (a disk gone read-only), a whole file may
 * survive, and a later open loads it as the newest pending batch, its cursor the newest
 * cursor. */
int client_spool_append(struct client_spool *s, const uint8_t *frame, size_t frame_len,
                        const void *cursor, size_t cursor_len) __attribute__((warn_unused_result));

/* Marks every batch up to durable_seq (< next_seq) as durable (the caller knows they are
 * both durable on the server and confirmed): appends their (seq, digest) records to the
 * digests file and fsyncs it, rewrites the state file (tmp, fsync, rename, fsync dir), then
 * deletes their files and memory. Returns 0 or TALLY_CLIENT_ERR_IO. */
int client_spool_release(struct client_spool *s, uint64_t durable_seq)
    __attribute__((warn_unused_result));

/* Calls cb for each record of the digests file, oldest first: every batch released since
 * the spool kept digests (batches made durable by an older libtally have none). Returns 0,
 * TALLY_CLIENT_ERR_IO, or TALLY_CLIENT_ERR_CORRUPT for records out of seq order (err says
 * why; the records before were delivered). */
int client_spool_digests(const struct client_spool *s,
                         void (*cb)(void *arg, uint64_t seq, const uint8_t digest[32]), void *arg,
                         char *err, size_t err_len) __attribute__((warn_unused_result));

/* The spooled batch with this seq, or NULL if it is not pending. */
const struct client_spool_batch *client_spool_get(const struct client_spool *s, uint64_t seq);

/* Records that tallyd acked batch seq as sent by this process. No-op if it is not pending. */
void client_spool_confirm(struct client_spool *s, uint64_t seq);
/* Forgets every confirmation (the server that gave them is not the one answering now). */
void client_spool_unconfirm_all(struct client_spool *s);

/* The highest seq r <= limit such that every pending batch up to r is confirmed: what may be
 * released once the server's durable seq is limit. s->durable_seq if the first is not. */
uint64_t client_spool_confirmed_upto(const struct client_spool *s, uint64_t limit);

#ifdef TALLY_FAULT_INJECTION
/* Test builds only (tests/faults/; never defined for libtally itself): a failure injected
 * into the system calls of this file (open, read, write, fsync, close, rename, unlink, mkdir,
 * fstat, flock, dup: each call counts one). The nth call from this arming (1: the next) is
 * not made and fails with errno err. With FAULT_STICKY every later call fails too, as on a
 * disk that stays full or read-only; with FAULT_SHORT a failing write first writes half its
 * bytes and returns that count, and the next call fails instead. nth 0 disarms. Not
 * thread-safe: one test thread. */
#define CLIENT_SPOOL_FAULT_STICKY 1u
#define CLIENT_SPOOL_FAULT_SHORT 2u
void client_spool_fault_arm(unsigned long nth, int err, unsigned flags);
/* Calls counted since the last arming. */
unsigned long client_spool_fault_calls(void);
/* True once the armed failure has happened. */
bool client_spool_fault_fired(void);
#endif

#endif
