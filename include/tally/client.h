/* libtally: the collector side of the tallyd protocol, for programs that embed it.
 *
 * A collector spools each batch of votes to disk (fsync'ed) before it may be sent, streams
 * spooled batches to tallyd over one TCP connection (TLS 1.3 if configured), and deletes a batch
 * only once tallyd reports it durable in PostgreSQL. After a crash of either side, or a broken
 * connection, it reconnects and resends whatever is not deleted; tallyd applies each (collector,
 * seq) once.
 *
 * When a batch is deleted: tallyd's durable seq (in Welcome, or in an Ack with seq 0) covers
 * it, AND tallyd has acked this very batch by its seq (Ack{seq}, provisional or retransmit) to
 * this process, on the current connection or an earlier one. The durable seq alone says that
 * tallyd holds some content under that seq, not that it is this spool's. A batch covered but
 * not acked so (its ack was lost with a connection, or it was spooled by an earlier process:
 * after a restart nothing counts as acked) is resent, in seq order before anything newer, with
 * its spooled bytes; tallyd re-acks it as a retransmission, which deletes it, or refuses it
 * with ERROR_SEQ_CONFLICT. A deleted batch is never resent.
 *
 * Each batch gets 16 random bytes (Batch.nonce) when it is spooled. They enter the digest
 * tallyd keeps of the batch (src/wire/digest.h), so that digest cannot be recomputed from
 * guessed ballots. The spool keeps the encoded frame, nonce included, and every resend (after
 * a reconnect or a restart) writes those exact bytes: tallyd sees the same digest and re-acks
 * a retransmission. Spools written before nonces existed still load; their batches are resent
 * as they were written, without one.
 *
 * One spool, one source: the seqs of a collector id are numbered by its spool alone. If tallyd
 * holds other content under a seq this client sends (another process, with its own spool or a
 * copy of this one, uses the same collector id), the client stops with
 * TALLY_CLIENT_ERR_SEQ_CONFLICT, even if tallyd already counts that seq as durable.
 *
 * Several servers (a tallyd and its hot standbys on the same database, see tallyd --standby):
 * the config may list them (tally_client_config.servers). One session runs at a time, with one
 * of them. A server that is away or stopping gives way to the next in the list, at once: a
 * connect refused (a standby holds its port without listening), timed out or reset, a
 * connection closed or a Welcome missing before the session began, ERROR_SHUTTING_DOWN or
 * ERROR_INTERNAL, a session lost or stalled. Each server is tried once per round, starting
 * after the one that failed; only when a whole round failed does the client back off (the same
 * back-off as for a single server). A transient error about this collector's own session
 * (ERROR_SEQ_GAP, ERROR_REPLACED) retries the same server after the back-off. A fatal status
 * stays fatal whichever server gave it: no other server is asked. The rules of deletion above
 * do not change with the server: an Ack{seq} counts only within one writer epoch of one listed
 * server (the Welcome of another server, or of a new epoch, unconfirms every batch), and a new
 * session resends every batch not deleted, exactly as on any reconnect. Log lines say which
 * server is used ("server 2 of 3") once the list has more than one.
 *
 * TLS (tally_client_config.tls_cert, tls_key, tls_ca): every session runs TLS 1.3, the client
 * presenting its certificate (tallyd pins it to the collector id) and checking the server's
 * against tls_ca and the name dialled. A handshake that fails, a server certificate refused
 * included, is one transient failure of that server (the next in the list may be fine), logged
 * as one "tls: ..." line; a round in which every server failed on its certificate says so at
 * WARN, and three such rounds in a row (ours refused by the server, or the server's not
 * trusted: the TLS settings of one side are wrong) are fatal, TALLY_CLIENT_ERR_AUTH, spool kept.
 * ERROR_AUTH (the certificate is not the one pinned to this id) and ERROR_COLLECTOR_DISABLED
 * are fatal: TALLY_CLIENT_ERR_AUTH, TALLY_CLIENT_ERR_DISABLED.
 *
 * Keep-alive: a tallyd that closes idle sessions says after how long (Welcome.idle_timeout_ms);
 * a session that sent nothing for a third of it sends a Ping, and tallyd's answer counts as
 * traffic (ERROR_TIMEOUT, should it come anyway, is transient). The Pings go out from
 * tally_client_pump, so a collector that wants to stay connected while idle pumps at least
 * that often.
 *
 * Threading: a struct tally_client is not thread-safe; use it from one thread at a time.
 * Different clients may live on different threads: tally_client_new calls sodium_init(),
 * which is idempotent and thread-safe, and the library has no other global state.
 * Blocking: every call returns within its timeout, except the tally_client_spool* calls (two
 * fsyncs; three for the first sheet batch of a spool), tally_client_durable_digests (reads
 * its file) and name resolution of a server host (getaddrinfo), which may block briefly.
 * Releasing durable batches (inside pump) appends their digests and fsyncs that file too.
 * Signals: the library never raises SIGPIPE (MSG_NOSIGNAL) and changes no signal disposition.
 * A signal that interrupts a wait makes it return TALLY_CLIENT_ERR_INTR, so the caller can
 * check its own flags.
 *
 * Voting tables and tally sheets (docs/consultation.md): tally_client_spool_tables spools
 * votes that name their voting table, tally_client_spool_sheets a batch of tally sheets.
 * Both are spooled, sent, resent and released like any batch. tallyd judges each sheet
 * (Ack.sheets): the outcomes are counted in stats and logged, a rejected sheet at WARN
 * ("sheet T version V rejected: REASON", REASON as tally_client_reason_name), a replacing
 * one at INFO ("sheet T version V replaces version P").
 *
 * Receipts: the spool keeps (seq, digest) of every batch it releases as durable, the digest
 * being the one tallyd keeps (src/wire/digest.h, wire_batch_digest_msg); see
 * tally_client_durable_digests.
 *
 * Spool directory (one per collector; locked with flock while open):
 *   state                  next seq, durable seq, votes, newest cursor, collector id
 *   batch-<seq %020>.pb    one per spooled batch not yet durable
 *   digests                (seq, digest) of each batch released as durable, 40 bytes each
 *   lock                   the flock target
 * See src/client/spool.c for the byte layout. A spool that has held a sheet batch is not
 * opened by a libtally older than libtally.so.2 (its state file says version 2). */
#ifndef TALLY_CLIENT_H
#define TALLY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally/protocol.h"

#define TALLY_CLIENT_WUR __attribute__((warn_unused_result))

/* Return codes: 0 is success, everything else is negative. Codes marked "fatal" are sticky:
 * once one is returned, every later call on the client returns it again; the spool on disk
 * stays valid and a new process can resume from it once the cause is fixed. */
enum tally_client_status {
    TALLY_CLIENT_OK = 0,
    TALLY_CLIENT_ERR_FULL = -1,     /* spool holds max_spooled non-durable batches: pump, retry */
    TALLY_CLIENT_ERR_TIMEOUT = -2,  /* wait_durable: the timeout ran out first */
    TALLY_CLIENT_ERR_INTR = -3,     /* a signal interrupted the wait: check flags, call again */
    TALLY_CLIENT_ERR_INVALID = -4,  /* bad argument; nothing changed */
    TALLY_CLIENT_ERR_IO = -5,       /* fatal: spool I/O failed (disk full, fsync error...) */
    TALLY_CLIENT_ERR_CORRUPT = -6,  /* fatal: spool content is damaged or inconsistent */
    TALLY_CLIENT_ERR_REFUSED = -7,  /* fatal: server refused this collector for good */
    TALLY_CLIENT_ERR_PROTOCOL = -8, /* fatal: server rejected our frames; retrying would repeat */
    TALLY_CLIENT_ERR_FOREIGN = -9,  /* fatal: spool and server disagree on what was sent */
    /* fatal: tallyd holds other content for a seq this client resent (ERROR_SEQ_CONFLICT):
     * another source is using this collector id. Nothing of that batch was applied; the
     * spool is left exactly as it was. Resuming needs the other source stopped and the
     * conflict understood first: resending would be refused again. */
    TALLY_CLIENT_ERR_SEQ_CONFLICT = -10,
    /* fatal: tallyd refused this collector's TLS certificate for its id (ERROR_AUTH): the
     * certificate is not the one pinned to the id (tallyctl add-collector ID --cert FILE), or
     * no TLS was used where tallyd wants it. */
    TALLY_CLIENT_ERR_AUTH = -11,
    /* fatal: the collector is disabled on tallyd (ERROR_COLLECTOR_DISABLED, tallyctl
     * disable-collector); the spool is kept for when it is enabled again. */
    TALLY_CLIENT_ERR_DISABLED = -12,
    /* fatal: the consultation is closed (ERROR_CLOSED, tallyctl close): tallyd takes no new
     * batch. Batches it had applied are durable; those still in the spool were not counted
     * and never will be. */
    TALLY_CLIENT_ERR_CLOSED = -13,
};

/* Longest cursor blob tally_client_spool accepts. */
#define TALLY_CLIENT_CURSOR_MAX 1024u

enum tally_client_log_level {
    TALLY_CLIENT_LOG_DEBUG = 0, /* every reconnect attempt after the first failure */
    TALLY_CLIENT_LOG_INFO,      /* session established (and with which server), torn batch */
    TALLY_CLIENT_LOG_WARN,      /* connection lost or refused, transient server errors: each
                                 * line says which server comes next, and when */
    TALLY_CLIENT_LOG_ERROR,     /* the reason of a fatal status */
};

/* Called from inside library calls with one line of text (no newline); msg is borrowed
 * until the callback returns. Must not call back into the client. */
typedef void (*tally_client_log_cb)(void *arg, enum tally_client_log_level level, const char *msg);

/* Most servers a config may list. */
#define TALLY_CLIENT_SERVERS_MAX 16u

/* One tallyd collector address. */
struct tally_client_server {
    const char *host; /* host name or address (IPv6 without brackets); required */
    uint16_t port;    /* collector port; required */
};

/* The server is given either in host and port or as a list in servers (host NULL, port 0),
 * never both. */
struct tally_client_config {
    const char *host;            /* tallyd host name or address; NULL when servers is set */
    uint16_t port;               /* tallyd collector port; 0 when servers is set */
    const char *collector_id;    /* [A-Za-z0-9._-]{1,63}; required */
    const char *consultation_id; /* NULL or "": whatever consultation tallyd holds */
    const char *spool_dir;       /* created (one level, mode 0700) if missing; required */
    uint32_t window;             /* batches sent but not yet acked; 0: 64 */
    uint32_t max_spooled;        /* non-durable batches kept before spool refuses; 0: 256 */
    int connect_timeout_ms;      /* TCP connect, TLS handshake, Welcome: each; 0: 5000 */
    int stall_timeout_ms;        /* no byte from tallyd while acks are owed; 0: 60000 */
    tally_client_log_cb log_cb;  /* NULL: silent (see tally_client_stats.last_error) */
    void *log_arg;
    /* 1 to TALLY_CLIENT_SERVERS_MAX tallyd of one database (an active one and its standbys),
     * tried in this order, round robin (see the top of this file); NULL (n_servers 0): the one
     * in host and port. Array and strings are copied. */
    const struct tally_client_server *servers;
    size_t n_servers;
    /* TLS 1.3 with a client certificate: PEM files, all three or none (NULL or "": plain
     * TCP). tls_cert may hold the chain after the certificate; tls_key must not be
     * encrypted. The server's certificate must chain to a certificate in tls_ca and name
     * tls_server_name, or else the host dialled: a DNS name (also sent as SNI) or an IP
     * address (its IP subjectAltName). The files are read by tally_client_new, which fails
     * on a missing or unreadable file, a key that does not match the certificate, or only
     * some of the three. Strings are copied. */
    const char *tls_cert;
    const char *tls_key;
    const char *tls_ca;
    const char *tls_server_name; /* NULL: the host dialled */
};

/* Cumulative figures of this collector's durable batches, as tallyd reports them. */
struct tally_client_totals {
    uint64_t batches;
    uint64_t votes;
    uint64_t accepted;
    uint64_t duplicate;
    uint64_t rejected;
    uint64_t sheets; /* sheets in durable sheet batches (0 from a tallyd without sheets) */
    uint64_t sheets_accepted;
    uint64_t sheets_duplicate;
    uint64_t sheets_rejected;
};

/* Reasons tallyd rejects a vote or a sheet for (docs/consultation.md, "Rejection reasons";
 * RejectReason in proto/tally.proto): 1 unknown_project .. 9 bad_sheet; index 0 unused. */
#define TALLY_CLIENT_REASONS 10u

struct tally_client_stats {
    uint64_t batches_spooled;          /* batches ever spooled in this spool dir (= last seq) */
    uint64_t votes_spooled;            /* votes in them */
    uint64_t batches_pending;          /* spooled, not yet durable */
    uint64_t votes_pending;            /* votes in them */
    uint64_t durable_seq;              /* every batch up to this seq is durable, acked, deleted */
    uint64_t acked_seq;                /* highest seq acked this session, or deleted as durable */
    uint64_t sent_seq;                 /* highest seq fully written this session, or deleted */
    uint64_t reconnects;               /* sessions established since tally_client_new, minus one */
    struct tally_client_totals server; /* durable totals last reported by tallyd */
    bool server_known;                 /* a Welcome has been received since tally_client_new */
    bool connected;                    /* a session is established right now (Welcome received) */
    uint32_t server_index;             /* servers[] index dialled or in session (0: host/port) */
    uint32_t max_batch_votes;          /* tallyd's limit from the last Welcome; 0 before */
    uint32_t max_frame_bytes;          /* tallyd's limit from the last Welcome; 0 before */
    int status;                        /* 0, or the sticky fatal status */
    char last_error[512];              /* last failure, fatal or transient; "" if none */
    /* Votes tallyd rejected because their project is outside the collector's circuits
     * (Ack.rejected_not_allowed), summed over the first ack of each batch received since
     * tally_client_new (retransmit acks repeat no counts). Part of server.rejected once
     * durable; unlike server, not carried over from earlier processes. */
    uint64_t rejected_not_allowed;
    uint64_t rejected_acked; /* all rejected votes in those same acks (Ack.rejected) */
    bool tls;                /* sessions run over TLS */
    /* Sheets of sheet batches by outcome (Ack.sheets), summed over the same first acks. */
    uint64_t sheets_accepted;  /* replacing ones included */
    uint64_t sheets_duplicate; /* this version with this content was counted already */
    uint64_t sheets_rejected;
    uint64_t sheets_replaced; /* accepted ones that replaced a lower version */
    /* What was rejected by reason k (TALLY_CLIENT_REASONS, tally_client_reason_name), over
     * the same first acks, as tallyd's batches.rejected_by_reason sums them: votes of ballot
     * batches (Ack.rejected_by_reason) plus sheets of sheet batches (Ack.sheets). */
    uint64_t rejected_by_reason[TALLY_CLIENT_REASONS];
    /* The sheets alone, by reason. */
    uint64_t sheets_rejected_by_reason[TALLY_CLIENT_REASONS];
};

/* Opens (creating if needed) and locks the spool, loads its non-durable batches in seq order,
 * and discards a torn newest batch left by a crash while it was being spooled. Does not
 * connect: the first tally_client_pump does. cfg and its strings are copied. Returns NULL on
 * failure with a message in err (err_len bytes, may be 0): invalid config, spool locked by
 * another process, spool corrupt, or I/O error. */
struct tally_client *tally_client_new(const struct tally_client_config *cfg, char *err,
                                      size_t err_len) TALLY_CLIENT_WUR;

/* Closes the connection and the spool and frees c. Spooled batches stay on disk; nothing is
 * flushed because nothing needs to be. NULL is a no-op. */
void tally_client_free(struct tally_client *c);

/* Appends one batch of n votes (ballots[i] voted for projects[i]) under the next seq, with a
 * fresh random nonce, written to the spool and fsync'ed (file and directory) before return;
 * it is sent by later pumps, always as the very bytes spooled here.
 * cursor (cursor_len <= TALLY_CLIENT_CURSOR_MAX bytes, opaque, may be NULL when 0) is kept with
 * the batch: after a crash tally_client_last_cursor returns the newest one, so the application
 * knows where its input stands. Arrays and cursor are copied. *seq_out (may be NULL) gets the
 * seq. Returns 0; TALLY_CLIENT_ERR_FULL when max_spooled batches are not yet durable (nothing
 * written: pump and retry); TALLY_CLIENT_ERR_INVALID for n == 0, n > the server's
 * max_batch_votes once known, or a cursor too long; or a fatal status. After
 * TALLY_CLIENT_ERR_IO (a full or failing disk: the message names the path and errno) the
 * batch may still be on disk, whole: after a restart tally_client_last_cursor says whether it
 * was kept, so an application that resumes from the cursor neither loses nor repeats a vote. */
int tally_client_spool(struct tally_client *c, const uint64_t *ballots, const uint32_t *projects,
                       size_t n, const void *cursor, size_t cursor_len,
                       uint64_t *seq_out) TALLY_CLIENT_WUR;

/* Like tally_client_spool, for votes that may name their voting table. tables[0..n_tables)
 * is the batch's dictionary of table ids ([A-Za-z0-9._-]{1,63}, at most 4096);
 * vote_tables (NULL, or n entries) gives each vote's table: 0 for none, k for
 * tables[k - 1]. vote_tables NULL or all 0 spools exactly what tally_client_spool does (the
 * dictionary is then not sent). Returns as tally_client_spool; TALLY_CLIENT_ERR_INVALID too
 * for an id of another form, an index past the dictionary, more than 4096 ids, or tables
 * given without vote_tables. Arrays and strings are copied. */
int tally_client_spool_tables(struct tally_client *c, const uint64_t *ballots,
                              const uint32_t *projects, const uint32_t *vote_tables, size_t n,
                              const char *const *tables, size_t n_tables, const void *cursor,
                              size_t cursor_len, uint64_t *seq_out) TALLY_CLIENT_WUR;

/* One voting table's tally sheet: n rows of (projects[i], votes[i]), blank and null ballots.
 * A sheet of (table_id, version) that tallyd counts already is a duplicate if its content is
 * the same (rows in any order, rows of 0 votes ignored), sheet_conflict if not; a higher
 * version replaces a lower one. */
struct tally_client_sheet {
    const char *table_id; /* [A-Za-z0-9._-]{1,63} */
    uint32_t version;     /* 1, 2, ...; tallyd rejects 0 as bad_sheet */
    const uint32_t *projects;
    const uint32_t *votes;
    size_t n; /* rows; may be 0 (a table with only blank and null ballots) */
    uint32_t blank, null_ballots;
};

/* Spools one sheet batch of sheets[0..n) (1 to 256 sheets, whose rows together do not exceed
 * the server's max_batch_votes once known), with a fresh nonce, like tally_client_spool:
 * fsync'ed before return, sent as spooled, cursor kept. tallyd judges each sheet on its own
 * (stats, log). Returns as tally_client_spool; TALLY_CLIENT_ERR_INVALID for n 0 or over 256,
 * a table id of another form, rows over the limit, or NULL arrays with rows. Copied. */
int tally_client_spool_sheets(struct tally_client *c, const struct tally_client_sheet *sheets,
                              size_t n, const void *cursor, size_t cursor_len,
                              uint64_t *seq_out) TALLY_CLIENT_WUR;

/* Calls cb(arg, seq, digest) for every batch this spool released as durable, oldest first:
 * digest is the batch's content digest as tallyd keeps it (wire_batch_digest_msg), borrowed
 * until cb returns; cb must not call back into the client. Batches made durable by a
 * libtally older than libtally.so.2 (before the spool kept digests) simply have no record.
 * Returns 0, TALLY_CLIENT_ERR_IO, or TALLY_CLIENT_ERR_CORRUPT when the file is damaged
 * (records out of seq order; open checks only its tail); the records before the failure
 * were delivered, the reason is logged at WARN, and the client's status does not change. */
int tally_client_durable_digests(const struct tally_client *c,
                                 void (*cb)(void *arg, uint64_t seq, const uint8_t digest[32]),
                                 void *arg) TALLY_CLIENT_WUR;

/* The name of rejection reason k ("unknown_project" .. "bad_sheet", as in
 * docs/consultation.md), or "unknown" for 0 and values past them. Static. */
const char *tally_client_reason_name(unsigned k);

/* Copies the newest cursor ever spooled in this spool dir (it survives restarts and the
 * deletion of durable batches) into buf. *out_len gets its length, 0 if none was ever stored.
 * Returns 0, or TALLY_CLIENT_ERR_INVALID if len is too small (*out_len still set). */
int tally_client_last_cursor(const struct tally_client *c, void *buf, size_t len,
                             size_t *out_len) TALLY_CLIENT_WUR;

/* Does the network work: connects or reconnects when due (the next server at once while a
 * round of the list goes on; after a failed round, or with a single server, backoff 100 ms
 * doubling to 5 s, with jitter), says Hello, resends every batch not yet deleted, sends new
 * batches while fewer than `window` are unacked, reads acks and deletes batches once durable
 * and acked (see the top of this file). Waits at most timeout_ms (0: only what is possible at
 * once) and returns after the first round that did something. Transient failures (server
 * away, connection lost, server shutting down or replaced, SEQ_GAP) are handled here, moving
 * on to the next server where the top of this file says so, and only show in stats and the
 * log. A durable seq may cover batches not yet resent on this session: those acked to this
 * process before are deleted and not resent; the others are resent and deleted on their ack. A
 * durable seq beyond the last seq ever spooled is TALLY_CLIENT_ERR_FOREIGN; ERROR_SEQ_CONFLICT
 * from tallyd is TALLY_CLIENT_ERR_SEQ_CONFLICT (the spool is kept as it is). Returns 0;
 * TALLY_CLIENT_ERR_INTR if a signal interrupted the wait; or a fatal status. */
int tally_client_pump(struct tally_client *c, int timeout_ms) TALLY_CLIENT_WUR;

/* Pumps until every spooled batch is durable and tallyd's durable totals have been heard at
 * least once since tally_client_new (so stats.server is current). Returns 0;
 * TALLY_CLIENT_ERR_TIMEOUT after timeout_ms; TALLY_CLIENT_ERR_INTR on a signal; or a fatal
 * status. */
int tally_client_wait_durable(struct tally_client *c, int timeout_ms) TALLY_CLIENT_WUR;

/* True when nothing spooled is waiting to become durable. */
bool tally_client_is_durable(const struct tally_client *c);

/* Fills *out with a snapshot of the client's counters. */
void tally_client_stats(const struct tally_client *c, struct tally_client_stats *out);

/* Static description of a status code ("spool full", ...). */
const char *tally_client_strerror(int status);

/* True if id is a valid collector id: [A-Za-z0-9._-]{1,63}. */
bool tally_client_id_is_valid(const char *id);

#endif
