/* The collector spool on disk: one fsync'ed file per non-durable batch plus a small state
 * file, so a collector killed at any moment loses nothing and never reuses a seq.
 * Owns the directory, its files and the in-memory copies of pending batches; does not
 * know about sockets or the session (conn.c, session.c).
 *
 * batch-<seq %020llu>.pb, little-endian:
 *   "TLYB" u32 version | u64 seq | u32 votes | u32 frame_len | u32 cursor_len | u32 sheets
 *   frame (the wire frame as sent: 4-byte BE length + Frame{batch}) | cursor
 *   16-byte BLAKE2b of everything before
 * version 1: a ballot batch (votes > 0, sheets 0: the word was always written 0), with or
 * without voting tables, which live in the frame: an older libtally loads and resends such
 * a file unchanged. version 2: a sheet batch (votes 0, sheets > 0), written since issue 10.
 * The frame is kept encoded, Batch.nonce included, and sent as is: nothing here or in
 * client.c encodes a spooled batch again, so a resend carries the same nonce and digest.
 * Frames spooled before Batch.nonce existed have none; they load and are resent unchanged,
 * which is why the layout (and SPOOL_VERSION) did not change with it.
 * state (replaced atomically: state.tmp, fsync, rename, fsync dir):
 *   "TLYS" u32 version | u64 next_seq | u64 durable_seq | u64 durable_votes
 *   u32 id_len | u32 cursor_len | collector id | cursor | 16-byte BLAKE2b of everything before
 * version 1, or 2 once a sheet batch was spooled: the same layout, written so that an older
 * libtally refuses the spool ("bad header") instead of taking a version-2 batch file it
 * cannot read for a torn one and deleting it.
 * digests (append-only): one 40-byte record per batch released as durable, in seq order:
 *   u64 seq | 32-byte digest (wire_batch_digest_msg, what tallyd keeps: receipts need it)
 * appended and fsync'ed before the state file that releases the batches is written, so a
 * record exists for every batch the state calls durable; open drops a torn last record and
 * records past the state's durable seq (a crash between the two). Batches released before
 * this file existed have no record: it starts empty on the first open by this version.
 */
#include "core/endian.h"
#include "core/xalloc.h"
#include "client/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "wire/digest.h"
#include "wire/wire.h"

#define BATCH_MAGIC 0x42594c54u /* "TLYB" read little-endian */
#define STATE_MAGIC 0x53594c54u /* "TLYS" */
#define SPOOL_VERSION 1u
#define SPOOL_VERSION_SHEETS 2u
#define DIGEST_RECORD (8u + WIRE_DIGEST_BYTES)
#define DIGESTS_NAME "digests"
#define BATCH_HEADER 32u
#define STATE_HEADER 40u
#define SUM_BYTES 16u
#define BATCH_NAME_LEN 29u /* "batch-" + 20 digits + ".pb" */
/* Far above any frame tallyd accepts; only guards against reading a huge foreign file. */
#define FILE_MAX ((size_t)1 << 30)

/* Every system call on the spool goes through SYS (SYS_WRITE for write, SYS_CLOSE for a close
 * whose result counts), so that a test build can fail any one of them (spool.h). In a normal
 * build each is the bare call. */
#ifdef TALLY_FAULT_INJECTION
static struct {
    unsigned long nth, calls;
    unsigned long then; /* a short write's next call, which fails too */
    int err;
    unsigned flags;
    bool fired;
} fault;

void client_spool_fault_arm(unsigned long nth, int err, unsigned flags)
{
    fault.nth = nth;
    fault.calls = 0;
    fault.then = 0;
    fault.err = err;
    fault.flags = flags;
    fault.fired = false;
}

unsigned long client_spool_fault_calls(void)
{
    return fault.calls;
}

bool client_spool_fault_fired(void)
{
    return fault.fired;
}

static bool fault_hit(void)
{
    if (!fault.nth)
        return false;
    fault.calls++;
    if (fault.calls == fault.nth || fault.calls == fault.then ||
        ((fault.flags & CLIENT_SPOOL_FAULT_STICKY) && fault.calls > fault.nth)) {
        fault.fired = true;
        errno = fault.err;
        return true;
    }
    return false;
}

/* A write that fails with CLIENT_SPOOL_FAULT_SHORT writes half its bytes and reports that
 * much, and the call after it fails: a disk filling up mid-write. */
static ssize_t fault_write(int fd, const void *p, size_t len)
{
    if (!fault_hit())
        return write(fd, p, len);
    if (!(fault.flags & CLIENT_SPOOL_FAULT_SHORT) || len < 2)
        return -1;
    fault.then = fault.calls + 1;
    return write(fd, p, len / 2);
}
#define SYS(call) (fault_hit() ? -1 : (call))
#define SYS_WRITE(fd, p, len) fault_write(fd, p, len)
/* close releases the descriptor even when it reports an error, so the fault comes after. */
#define SYS_CLOSE(fd) (close(fd) < 0 || fault_hit() ? -1 : 0)
#else
#define SYS(call) (call)
#define SYS_WRITE(fd, p, len) write(fd, p, len)
#define SYS_CLOSE(fd) close(fd)
#endif

static void checksum(uint8_t out[SUM_BYTES], const uint8_t *data, size_t len)
{
    crypto_generichash(out, SUM_BYTES, data, len, NULL, 0);
}

static bool checksum_ok(const uint8_t *data, size_t len_with_sum)
{
    uint8_t sum[SUM_BYTES];
    checksum(sum, data, len_with_sum - SUM_BYTES);
    return sodium_memcmp(sum, data + len_with_sum - SUM_BYTES, SUM_BYTES) == 0;
}

static int spool_fail(struct client_spool *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int spool_fail(struct client_spool *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return code;
}

static void batch_name(char out[BATCH_NAME_LEN + 1], uint64_t seq)
{
    snprintf(out, BATCH_NAME_LEN + 1, "batch-%020" PRIu64 ".pb", seq);
}

/* Parses "batch-<20 digits>.pb"; returns 0 with *seq, or -1 for any other name. */
static int batch_name_parse(const char *name, uint64_t *seq)
{
    if (strlen(name) != BATCH_NAME_LEN || memcmp(name, "batch-", 6) != 0 ||
        strcmp(name + 26, ".pb") != 0)
        return -1;
    uint64_t v = 0;
    for (int i = 6; i < 26; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *seq = v;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = SYS_WRITE(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads a whole file below dir_fd into a malloc'ed buffer. Returns 0, or -1 with errno
 * (ENOENT when it does not exist, EFBIG when it is absurdly large). */
static int read_file_at(int dir_fd, const char *name, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = NULL;
    int fd = SYS(openat(dir_fd, name, O_RDONLY | O_CLOEXEC));
    if (fd < 0)
        return -1;
    struct stat st;
    if (SYS(fstat(fd, &st)) < 0)
        goto fail;
    if ((uint64_t)st.st_size > FILE_MAX) {
        errno = EFBIG;
        goto fail;
    }
    size_t len = (size_t)st.st_size;
    buf = xmalloc(len);
    size_t got = 0;
    while (got < len) {
        ssize_t n = SYS(read(fd, buf + got, len - got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break; /* shrank under us: the checks on the content will say it is short */
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *out_len = got;
    return 0;
fail:
    free(buf);
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Decodes a spooled frame and fills b's votes, sheets, rows and digest from it: a ballot
 * batch of at least one vote, or a sheet batch (no ballots, projects or tables) of at most
 * WIRE_MAX_BATCH_SHEETS sheets, under this seq. Returns 0, or -1 with a reason in why. */
static int frame_describe(const uint8_t *frame, size_t frame_len, uint64_t seq,
                          struct client_spool_batch *b, const char **why)
{
    size_t payload;
    if (wire_frame_peek(frame, frame_len, frame_len, &payload) != WIRE_OK ||
        payload + 4 != frame_len) {
        *why = "bad frame header";
        return -1;
    }
    struct arena a;
    arena_init(&a, payload * 2 + 256);
    Tally__Frame *f;
    int ok = wire_frame_decode(frame + 4, payload, &a, &f) == WIRE_OK &&
             f->msg_case == TALLY__FRAME__MSG_BATCH && f->batch->seq == seq &&
             f->batch->n_ballots == f->batch->n_projects && f->batch->n_ballots <= UINT32_MAX &&
             f->batch->nonce.len <= WIRE_NONCE_MAX;
    if (ok) {
        const Tally__Batch *m = f->batch;
        uint64_t rows = 0;
        for (size_t i = 0; i < m->n_sheets; i++)
            rows += m->sheets[i]->n_projects > m->sheets[i]->n_votes ? m->sheets[i]->n_projects
                                                                     : m->sheets[i]->n_votes;
        if (m->n_sheets)
            ok = !m->n_ballots && !m->n_tables && !m->n_vote_tables &&
                 m->n_sheets <= WIRE_MAX_BATCH_SHEETS && rows <= UINT32_MAX;
        else
            ok = m->n_ballots > 0;
        if (ok) {
            b->votes = (uint32_t)m->n_ballots;
            b->sheets = (uint32_t)m->n_sheets;
            b->rows = (uint32_t)rows;
            wire_batch_digest_msg(m, b->digest);
        }
    }
    arena_cleanup(&a);
    if (!ok) {
        *why = "frame is not this batch";
        return -1;
    }
    return 0;
}

/* Checks a batch file image against its name's seq; on success fills b (image not owned
 * yet). Returns 0, or -1 with a reason in why. */
static int batch_image_check(const uint8_t *img, size_t len, uint64_t seq,
                             struct client_spool_batch *b, const char **why)
{
    if (len < BATCH_HEADER + SUM_BYTES) {
        *why = "file too short";
        return -1;
    }
    uint32_t version = le32_get(img + 4);
    if (le32_get(img) != BATCH_MAGIC ||
        (version != SPOOL_VERSION && version != SPOOL_VERSION_SHEETS)) {
        *why = "bad magic or version";
        return -1;
    }
    uint32_t votes = le32_get(img + 16), frame_len = le32_get(img + 20),
             cursor_len = le32_get(img + 24), sheets = le32_get(img + 28);
    if ((uint64_t)BATCH_HEADER + frame_len + cursor_len + SUM_BYTES != len) {
        *why = "length does not match header";
        return -1;
    }
    if (!checksum_ok(img, len)) {
        *why = "checksum mismatch";
        return -1;
    }
    /* Version 1 files have always held 0 in the sheets word, and never a sheet. */
    bool shape = version == SPOOL_VERSION ? votes > 0 && sheets == 0 : votes == 0 && sheets > 0;
    if (le64_get(img + 8) != seq || cursor_len > TALLY_CLIENT_CURSOR_MAX || !shape) {
        *why = "header does not match file name";
        return -1;
    }
    /* The checksum proves the bytes are what we wrote; decoding proves we wrote a batch
     * tallyd can take, so nothing unsendable is ever retried forever. */
    const uint8_t *frame = img + BATCH_HEADER;
    if (frame_describe(frame, frame_len, seq, b, why) < 0)
        return -1;
    if (b->votes != votes || b->sheets != sheets) {
        *why = "frame is not this batch";
        return -1;
    }
    b->seq = seq;
    b->frame_len = frame_len;
    b->frame = frame;
    b->confirmed = false;
    return 0;
}

static const uint8_t *batch_cursor(const struct client_spool_batch *b, size_t *len)
{
    *len = le32_get(b->image + 24);
    return b->image + BATCH_HEADER + b->frame_len;
}

static int state_write(struct client_spool *s, uint64_t durable_seq, uint64_t durable_votes)
{
    size_t id_len = strlen(s->collector_id);
    size_t len = STATE_HEADER + id_len + s->cursor_len + SUM_BYTES;
    uint8_t *img = xmalloc(len);
    le32_put(img, STATE_MAGIC);
    le32_put(img + 4, s->state_version);
    le64_put(img + 8, s->next_seq);
    le64_put(img + 16, durable_seq);
    le64_put(img + 24, durable_votes);
    le32_put(img + 32, (uint32_t)id_len);
    le32_put(img + 36, (uint32_t)s->cursor_len);
    memcpy(img + STATE_HEADER, s->collector_id, id_len);
    memcpy(img + STATE_HEADER + id_len, s->cursor, s->cursor_len);
    checksum(img + len - SUM_BYTES, img, len - SUM_BYTES);

    int rc = TALLY_CLIENT_ERR_IO;
    int fd = SYS(openat(s->dir_fd, "state.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (fd < 0) {
        spool_fail(s, rc, "cannot create %s/state.tmp: %s", s->dir, strerror(errno));
        goto out;
    }
    errno = 0;
    if (write_all(fd, img, len) < 0 || SYS(fsync(fd)) < 0) {
        spool_fail(s, rc, "cannot write %s/state.tmp: %s", s->dir, strerror(errno ? errno : EIO));
        close(fd);
        goto out;
    }
    if (SYS_CLOSE(fd) < 0) {
        spool_fail(s, rc, "cannot close %s/state.tmp: %s", s->dir, strerror(errno));
        goto out;
    }
    /* The rename is the commit point: state is either the old or the new one, whole. */
    if (SYS(renameat(s->dir_fd, "state.tmp", s->dir_fd, "state")) < 0) {
        spool_fail(s, rc, "cannot rename %s/state.tmp to state: %s", s->dir, strerror(errno));
        goto out;
    }
    if (SYS(fsync(s->dir_fd)) < 0) {
        spool_fail(s, rc, "cannot sync %s after replacing state: %s", s->dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(img);
    return rc;
}

struct state_image {
    uint32_t version;
    uint64_t next_seq, durable_seq, durable_votes;
    size_t cursor_len;
    uint8_t cursor[TALLY_CLIENT_CURSOR_MAX];
};

/* Returns 0 with *st, 1 when there is no state file, or a negative status. */
static int state_read(struct client_spool *s, struct state_image *st)
{
    uint8_t *img;
    size_t len;
    if (read_file_at(s->dir_fd, "state", &img, &len) < 0) {
        if (errno == ENOENT)
            return 1;
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot read %s/state: %s", s->dir,
                          strerror(errno));
    }
    int rc = TALLY_CLIENT_ERR_CORRUPT;
    /* The state file is replaced by rename, never written in place: any damage is real. */
    if (len < STATE_HEADER + SUM_BYTES || le32_get(img) != STATE_MAGIC ||
        (le32_get(img + 4) != SPOOL_VERSION && le32_get(img + 4) != SPOOL_VERSION_SHEETS)) {
        spool_fail(s, rc, "state file is damaged (bad header)");
        goto out;
    }
    size_t id_len = le32_get(img + 32), cursor_len = le32_get(img + 36);
    if (id_len > TALLY_COLLECTOR_ID_MAX || cursor_len > TALLY_CLIENT_CURSOR_MAX ||
        STATE_HEADER + id_len + cursor_len + SUM_BYTES != len || !checksum_ok(img, len)) {
        spool_fail(s, rc, "state file is damaged (length or checksum)");
        goto out;
    }
    if (id_len != strlen(s->collector_id) ||
        memcmp(img + STATE_HEADER, s->collector_id, id_len) != 0) {
        spool_fail(s, TALLY_CLIENT_ERR_INVALID,
                   "spool belongs to collector '%.*s', not '%s'; use another spool dir",
                   (int)id_len, (const char *)img + STATE_HEADER, s->collector_id);
        rc = TALLY_CLIENT_ERR_INVALID;
        goto out;
    }
    st->version = le32_get(img + 4);
    st->next_seq = le64_get(img + 8);
    st->durable_seq = le64_get(img + 16);
    st->durable_votes = le64_get(img + 24);
    st->cursor_len = cursor_len;
    memcpy(st->cursor, img + STATE_HEADER + id_len, cursor_len);
    if (st->next_seq == 0 || st->durable_seq >= st->next_seq) {
        spool_fail(s, rc, "state file is inconsistent (next seq %" PRIu64 ", durable %" PRIu64 ")",
                   st->next_seq, st->durable_seq);
        goto out;
    }
    rc = 0;
out:
    free(img);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the seqs of batch files, sorted. */
static int list_batches(struct client_spool *s, uint64_t **out, size_t *out_n)
{
    int fd = SYS(dup(s->dir_fd));
    if (fd < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot list %s: dup: %s", s->dir,
                          strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot list %s: %s", s->dir, strerror(errno));
    }
    rewinddir(d);
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t seq;
        if (batch_name_parse(e->d_name, &seq) < 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            seqs = xreallocarray(seqs, cap, sizeof(*seqs));
        }
        seqs[n++] = seq;
    }
    int saved = errno;
    closedir(d);
    if (saved) {
        free(seqs);
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot list %s: %s", s->dir, strerror(saved));
    }
    if (n)
        qsort(seqs, n, sizeof(*seqs), cmp_u64);
    *out = seqs;
    *out_n = n;
    return 0;
}

static int unlink_batch(struct client_spool *s, uint64_t seq)
{
    char name[BATCH_NAME_LEN + 1];
    batch_name(name, seq);
    if (SYS(unlinkat(s->dir_fd, name, 0)) < 0 && errno != ENOENT)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot delete %s/%s: %s", s->dir, name,
                          strerror(errno));
    return 0;
}

static void batches_reserve(struct client_spool *s, size_t want)
{
    if (want <= s->cap)
        return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < want)
        cap *= 2;
    s->batches = xreallocarray(s->batches, cap, sizeof(*s->batches));
    s->cap = cap;
}

static int dir_open(struct client_spool *s, const char *dir)
{
    if (SYS(mkdir(dir, 0700)) == 0) {
        /* Make the new directory's own entry durable before anything is spooled in it. */
        char *copy = xstrdup(dir);
        char *slash = strrchr(copy, '/');
        const char *parent = ".";
        if (slash == copy)
            parent = "/";
        else if (slash) {
            *slash = '\0';
            parent = copy;
        }
        int pfd = SYS(open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        int bad = pfd < 0 || SYS(fsync(pfd)) < 0;
        int saved = errno;
        if (pfd >= 0)
            close(pfd);
        free(copy);
        if (bad)
            return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot sync parent of %s: %s", dir,
                              strerror(saved));
    } else if (errno != EEXIST) {
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot create spool dir %s: %s", dir,
                          strerror(errno));
    }
    s->dir_fd = SYS(open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (s->dir_fd < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot open spool dir %s: %s", dir,
                          strerror(errno));
    s->lock_fd = SYS(openat(s->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (s->lock_fd < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot open %s/lock: %s", dir, strerror(errno));
    /* Two processes on one spool would hand out the same seqs: refuse the second. */
    if (SYS(flock(s->lock_fd, LOCK_EX | LOCK_NB)) < 0) {
        if (errno == EWOULDBLOCK)
            return spool_fail(s, TALLY_CLIENT_ERR_IO, "spool dir %s is in use by another process",
                              dir);
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot lock %s/lock: %s", dir, strerror(errno));
    }
    return 0;
}

/* Loads batch files seqs[0..n) (all > durable) into s->batches. A newest file that fails its
 * checks and was never covered by the state file is a batch whose spooling a crash cut short:
 * it was never sent (sending waits for the fsync), so it is deleted. */
static int batches_load(struct client_spool *s, const uint64_t *seqs, size_t n,
                        uint64_t state_next_seq)
{
    batches_reserve(s, n);
    for (size_t i = 0; i < n; i++) {
        char name[BATCH_NAME_LEN + 1];
        batch_name(name, seqs[i]);
        uint8_t *img;
        size_t len;
        if (read_file_at(s->dir_fd, name, &img, &len) < 0)
            return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot read %s/%s: %s", s->dir, name,
                              strerror(errno));
        struct client_spool_batch b;
        const char *why;
        if (batch_image_check(img, len, seqs[i], &b, &why) < 0) {
            free(img);
            if (i + 1 == n && seqs[i] >= state_next_seq) {
                if (unlink_batch(s, seqs[i]) < 0)
                    return TALLY_CLIENT_ERR_IO;
                if (SYS(fsync(s->dir_fd)) < 0)
                    return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot sync %s: %s", s->dir,
                                      strerror(errno));
                s->discarded_seq = seqs[i];
                break;
            }
            return spool_fail(s, TALLY_CLIENT_ERR_CORRUPT, "%s/%s is damaged (%s)", s->dir, name,
                              why);
        }
        b.image = img;
        s->batches[s->count++] = b;
        s->pending_votes += b.votes;
    }
    return 0;
}

/* Opens (creating) the digests file and makes it hold whole records of seqs up to
 * durable_seq only: a torn last record, or records a crash left beyond the state's durable
 * seq (appended, then the state not replaced), are cut off. Reads the tail only: the file
 * grows by one record per durable batch. */
static int digests_open(struct client_spool *s)
{
    s->digests_fd = SYS(openat(s->dir_fd, DIGESTS_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (s->digests_fd < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot open %s/%s: %s", s->dir, DIGESTS_NAME,
                          strerror(errno));
    struct stat st;
    if (SYS(fstat(s->digests_fd, &st)) < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot stat %s/%s: %s", s->dir, DIGESTS_NAME,
                          strerror(errno));
    uint64_t size = (uint64_t)st.st_size, len = size - size % DIGEST_RECORD;
    uint64_t prev = UINT64_MAX; /* seq of the record after the one read, while walking back */
    while (len > 0) {
        uint8_t rec[DIGEST_RECORD];
        ssize_t n = SYS(pread(s->digests_fd, rec, sizeof(rec), (off_t)(len - DIGEST_RECORD)));
        if (n != (ssize_t)sizeof(rec))
            return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot read %s/%s: %s", s->dir, DIGESTS_NAME,
                              n < 0 ? strerror(errno) : "short read");
        uint64_t seq = le64_get(rec);
        if (seq >= prev || seq == 0)
            return spool_fail(s, TALLY_CLIENT_ERR_CORRUPT,
                              "%s/%s is damaged (seq %" PRIu64 " out of order)", s->dir,
                              DIGESTS_NAME, seq);
        if (seq <= s->durable_seq) {
            s->digests_last = seq;
            break;
        }
        prev = seq;
        len -= DIGEST_RECORD;
    }
    if (len >= 2 * DIGEST_RECORD) {
        /* The last two records kept are in order (the reader checks the rest). */
        uint8_t rec[8];
        ssize_t n = SYS(pread(s->digests_fd, rec, sizeof(rec), (off_t)(len - 2 * DIGEST_RECORD)));
        if (n != (ssize_t)sizeof(rec))
            return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot read %s/%s: %s", s->dir, DIGESTS_NAME,
                              n < 0 ? strerror(errno) : "short read");
        if (le64_get(rec) >= s->digests_last)
            return spool_fail(s, TALLY_CLIENT_ERR_CORRUPT,
                              "%s/%s is damaged (seq %" PRIu64 " out of order)", s->dir,
                              DIGESTS_NAME, s->digests_last);
    }
    if (len != size && SYS(ftruncate(s->digests_fd, (off_t)len)) < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot truncate %s/%s: %s", s->dir, DIGESTS_NAME,
                          strerror(errno));
    s->digests_len = len;
    return 0;
}

int client_spool_open(struct client_spool *s, const char *dir, const char *collector_id)
{
    memset(s, 0, sizeof(*s));
    s->dir_fd = -1;
    s->lock_fd = -1;
    s->digests_fd = -1;
    s->state_version = SPOOL_VERSION;
    uint64_t *seqs = NULL;
    size_t n = 0;
    int rc;
    if (sodium_init() < 0) {
        rc = spool_fail(s, TALLY_CLIENT_ERR_IO, "libsodium failed to initialise");
        goto fail;
    }
    if (strlen(collector_id) > TALLY_COLLECTOR_ID_MAX) {
        rc = spool_fail(s, TALLY_CLIENT_ERR_INVALID, "collector id too long");
        goto fail;
    }
    strcpy(s->collector_id, collector_id);
    s->dir = xstrdup(dir);
    if ((rc = dir_open(s, dir)) < 0)
        goto fail;
    if ((rc = list_batches(s, &seqs, &n)) < 0)
        goto fail;

    struct state_image st;
    rc = state_read(s, &st);
    if (rc < 0)
        goto fail;
    if (rc == 1) {
        /* A fresh spool. The state file is written before the first batch ever is, so
         * batch files without one are someone else's or a damaged spool. */
        if (n > 0) {
            rc = spool_fail(s, TALLY_CLIENT_ERR_CORRUPT, "%s holds batch files but no state file",
                            dir);
            goto fail;
        }
        s->next_seq = 1;
        if ((rc = state_write(s, 0, 0)) < 0)
            goto fail;
        st.version = SPOOL_VERSION;
        st.next_seq = 1;
        st.durable_seq = 0;
        st.durable_votes = 0;
        st.cursor_len = 0;
    }
    if (SYS(unlinkat(s->dir_fd, "state.tmp", 0)) < 0 && errno != ENOENT) {
        rc = spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot delete %s/state.tmp: %s", dir,
                        strerror(errno));
        goto fail;
    }
    s->state_version = st.version;
    s->durable_seq = st.durable_seq;
    s->durable_votes = st.durable_votes;
    if ((rc = digests_open(s)) < 0)
        goto fail;

    /* Files at or below durable_seq were being deleted when we stopped: finish the job. */
    size_t first = 0;
    while (first < n && seqs[first] <= st.durable_seq) {
        if ((rc = unlink_batch(s, seqs[first])) < 0)
            goto fail;
        first++;
    }
    for (size_t i = first; i < n; i++) {
        if (seqs[i] != st.durable_seq + 1 + (i - first)) {
            rc = spool_fail(s, TALLY_CLIENT_ERR_CORRUPT,
                            "batch %" PRIu64 " is missing from the spool (durable up to %" PRIu64
                            ")",
                            st.durable_seq + 1 + (i - first), st.durable_seq);
            goto fail;
        }
    }
    /* No batch file at all leaves seqs NULL (NULL + 0 is UB). */
    if ((rc = batches_load(s, seqs ? seqs + first : NULL, n - first, st.next_seq)) < 0)
        goto fail;
    uint64_t top = s->count ? s->batches[s->count - 1].seq : st.durable_seq;
    if (top + 1 < st.next_seq) {
        rc = spool_fail(s, TALLY_CLIENT_ERR_CORRUPT,
                        "batches %" PRIu64 "..%" PRIu64 " are missing from the spool", top + 1,
                        st.next_seq - 1);
        goto fail;
    }
    s->next_seq = top + 1;
    if (s->count) {
        const uint8_t *cur = batch_cursor(&s->batches[s->count - 1], &s->cursor_len);
        memcpy(s->cursor, cur, s->cursor_len);
    } else {
        memcpy(s->cursor, st.cursor, st.cursor_len);
        s->cursor_len = st.cursor_len;
    }
    free(seqs);
    return 0;
fail:
    free(seqs);
    char saved[sizeof(s->err)];
    memcpy(saved, s->err, sizeof(saved));
    client_spool_close(s);
    memcpy(s->err, saved, sizeof(saved));
    return rc;
}

void client_spool_close(struct client_spool *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->batches[i].image);
    free(s->batches);
    free(s->dir);
    if (s->digests_fd >= 0)
        close(s->digests_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* drops the flock */
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    memset(s, 0, sizeof(*s));
    s->dir_fd = -1;
    s->lock_fd = -1;
    s->digests_fd = -1;
}

int client_spool_append(struct client_spool *s, const uint8_t *frame, size_t frame_len,
                        const void *cursor, size_t cursor_len)
{
    if (cursor_len > TALLY_CLIENT_CURSOR_MAX || frame_len > FILE_MAX)
        return spool_fail(s, TALLY_CLIENT_ERR_INVALID, "batch or cursor too large");
    uint64_t seq = s->next_seq;
    struct client_spool_batch meta;
    const char *why;
    if (frame_describe(frame, frame_len, seq, &meta, &why) < 0)
        return spool_fail(s, TALLY_CLIENT_ERR_INVALID, "refusing to spool batch %" PRIu64 ": %s",
                          seq, why);
    if (meta.sheets && s->state_version < SPOOL_VERSION_SHEETS) {
        /* Before the first version-2 batch file exists: see the top of this file. */
        s->state_version = SPOOL_VERSION_SHEETS;
        if (state_write(s, s->durable_seq, s->durable_votes) < 0) {
            s->state_version = SPOOL_VERSION;
            return TALLY_CLIENT_ERR_IO;
        }
    }
    size_t len = BATCH_HEADER + frame_len + cursor_len + SUM_BYTES;
    uint8_t *img = xmalloc(len);
    le32_put(img, BATCH_MAGIC);
    le32_put(img + 4, meta.sheets ? SPOOL_VERSION_SHEETS : SPOOL_VERSION);
    le64_put(img + 8, seq);
    le32_put(img + 16, meta.votes);
    le32_put(img + 20, (uint32_t)frame_len);
    le32_put(img + 24, (uint32_t)cursor_len);
    le32_put(img + 28, meta.sheets);
    memcpy(img + BATCH_HEADER, frame, frame_len);
    if (cursor_len)
        memcpy(img + BATCH_HEADER + frame_len, cursor, cursor_len);
    checksum(img + len - SUM_BYTES, img, len - SUM_BYTES);

    char name[BATCH_NAME_LEN + 1];
    batch_name(name, seq);
    int fd = SYS(openat(s->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd < 0) {
        spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot create %s/%s: %s", s->dir, name,
                   strerror(errno));
        goto fail;
    }
    errno = 0;
    if (write_all(fd, img, len) < 0 || SYS(fsync(fd)) < 0) {
        spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot write %s/%s: %s", s->dir, name,
                   strerror(errno ? errno : EIO));
        close(fd);
        goto fail_unlink;
    }
    if (SYS_CLOSE(fd) < 0) {
        spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot close %s/%s: %s", s->dir, name, strerror(errno));
        goto fail_unlink;
    }
    /* The file's directory entry must be durable too before the batch may leave. */
    if (SYS(fsync(s->dir_fd)) < 0) {
        spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot sync %s after writing %s: %s", s->dir, name,
                   strerror(errno));
        goto fail_unlink;
    }
    batches_reserve(s, s->count + 1);
    struct client_spool_batch *b = &s->batches[s->count++];
    *b = meta;
    b->seq = seq;
    b->frame_len = (uint32_t)frame_len;
    b->image = img;
    b->frame = img + BATCH_HEADER;
    b->confirmed = false;
    s->next_seq = seq + 1;
    s->pending_votes += meta.votes;
    memcpy(s->cursor, img + BATCH_HEADER + frame_len, cursor_len);
    s->cursor_len = cursor_len;
    return 0;
fail_unlink:
    /* Best effort: the failure reported is the one above. A file that survives this is whole
     * only if the write got through; spool.h says what a later open makes of it. */
    (void)SYS(unlinkat(s->dir_fd, name, 0));
fail:
    free(img);
    return TALLY_CLIENT_ERR_IO;
}

/* Cuts the digests file back to digests_len after a failure, best effort: what it leaves is
 * a torn or premature tail, which open cuts off. */
static void digests_cut(struct client_spool *s)
{
    if (SYS(ftruncate(s->digests_fd, (off_t)s->digests_len)) < 0)
        return;
}

/* Appends the (seq, digest) records of the first k pending batches at digests_len and
 * fsyncs the file. On failure the file is cut back to digests_len (best effort; open cuts a
 * torn or premature tail anyway). */
static int digests_append(struct client_spool *s, size_t k)
{
    size_t first = 0;
    while (first < k && s->batches[first].seq <= s->digests_last)
        first++;
    if (first == k)
        return 0;
    size_t len = (k - first) * DIGEST_RECORD;
    uint8_t *buf = xmalloc(len);
    for (size_t i = first; i < k; i++) {
        le64_put(buf + (i - first) * DIGEST_RECORD, s->batches[i].seq);
        memcpy(buf + (i - first) * DIGEST_RECORD + 8, s->batches[i].digest, WIRE_DIGEST_BYTES);
    }
    int rc = 0;
    errno = 0;
    for (size_t done = 0; done < len;) {
        ssize_t n =
            SYS(pwrite(s->digests_fd, buf + done, len - done, (off_t)(s->digests_len + done)));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        done += (size_t)n;
    }
    if (rc == 0 && SYS(fsync(s->digests_fd)) < 0)
        rc = -1;
    free(buf);
    if (rc < 0) {
        int saved = errno ? errno : EIO;
        digests_cut(s);
        return spool_fail(s, TALLY_CLIENT_ERR_IO, "cannot write %s/%s: %s", s->dir, DIGESTS_NAME,
                          strerror(saved));
    }
    s->digests_len += len;
    s->digests_last = s->batches[k - 1].seq;
    return 0;
}

int client_spool_release(struct client_spool *s, uint64_t durable_seq)
{
    if (durable_seq <= s->durable_seq)
        return 0;
    if (durable_seq >= s->next_seq)
        return spool_fail(s, TALLY_CLIENT_ERR_INVALID, "durable seq beyond spooled batches");
    size_t k = (size_t)(durable_seq - s->durable_seq);
    uint64_t votes = 0;
    for (size_t i = 0; i < k; i++)
        votes += s->batches[i].votes;
    /* Their digests first, then the state: a record exists for every batch the state
     * calls durable. Once the state says durable_seq, a crash during the deletes leaves files
     * that the next open recognises as already durable. */
    int rc = digests_append(s, k);
    if (rc < 0)
        return rc;
    /* A failed state write may still have replaced the file (the directory's fsync failed
     * after the rename): the records stay, open cuts them off if the state did not land,
     * and a retry does not append them twice (digests_last). */
    rc = state_write(s, durable_seq, s->durable_votes + votes);
    if (rc < 0)
        return rc;
    s->durable_seq = durable_seq;
    s->durable_votes += votes;
    s->pending_votes -= votes;
    for (size_t i = 0; i < k; i++) {
        /* A file that survives here is deleted by the next open: state already covers it. */
        if (rc == 0)
            rc = unlink_batch(s, s->batches[i].seq);
        free(s->batches[i].image);
    }
    memmove(s->batches, s->batches + k, (s->count - k) * sizeof(*s->batches));
    s->count -= k;
    return rc;
}

const struct client_spool_batch *client_spool_get(const struct client_spool *s, uint64_t seq)
{
    if (seq <= s->durable_seq || seq >= s->next_seq)
        return NULL;
    return &s->batches[seq - s->durable_seq - 1];
}

void client_spool_confirm(struct client_spool *s, uint64_t seq)
{
    if (seq > s->durable_seq && seq < s->next_seq)
        s->batches[seq - s->durable_seq - 1].confirmed = true;
}

void client_spool_unconfirm_all(struct client_spool *s)
{
    for (size_t i = 0; i < s->count; i++)
        s->batches[i].confirmed = false;
}

uint64_t client_spool_confirmed_upto(const struct client_spool *s, uint64_t limit)
{
    uint64_t r = s->durable_seq;
    while (r < limit && r + 1 < s->next_seq && s->batches[r - s->durable_seq].confirmed)
        r++;
    return r;
}

int client_spool_digests(const struct client_spool *s,
                         void (*cb)(void *arg, uint64_t seq, const uint8_t digest[32]), void *arg,
                         char *err, size_t err_len)
{
    enum { CHUNK = 1024 };
    uint8_t *buf = xmalloc(CHUNK * DIGEST_RECORD);
    uint64_t prev = 0;
    int rc = 0;
    for (uint64_t off = 0; off < s->digests_len;) {
        size_t want = s->digests_len - off < CHUNK * DIGEST_RECORD ? (size_t)(s->digests_len - off)
                                                                   : CHUNK * DIGEST_RECORD;
        ssize_t n = SYS(pread(s->digests_fd, buf, want, (off_t)off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (size_t)n % DIGEST_RECORD) {
            if (err_len)
                snprintf(err, err_len, "cannot read %s/%s: %s", s->dir, DIGESTS_NAME,
                         n < 0 ? strerror(errno) : "short read");
            rc = TALLY_CLIENT_ERR_IO;
            break;
        }
        for (size_t i = 0; i < (size_t)n && rc == 0; i += DIGEST_RECORD) {
            uint64_t seq = le64_get(buf + i);
            if (seq <= prev) {
                /* Open checks the tail only (the file grows with every batch): damage
                 * further in shows here. */
                if (err_len)
                    snprintf(err, err_len, "%s/%s is damaged (seq %" PRIu64 " after %" PRIu64 ")",
                             s->dir, DIGESTS_NAME, seq, prev);
                rc = TALLY_CLIENT_ERR_CORRUPT;
                break;
            }
            prev = seq;
            cb(arg, seq, buf + i + 8);
        }
        if (rc)
            break;
        off += (uint64_t)n;
    }
    free(buf);
    return rc;
}
