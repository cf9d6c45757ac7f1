/* Fuzz harness: libtally's spool loader (client/spool.c, client_spool_open), which reads
 * back batch files and the state file after a crash. The input becomes the files of a spool
 * directory on tmpfs. Byte 0: bit 0, the harness appends the right checksum to the batch
 * image (so the fuzzer gets past it to the frame checks); bit 1, a state image follows
 * (2-byte little-endian length, then the bytes) instead of a sound one the harness writes;
 * bit 2, the harness appends the state image's checksum; bit 3, the sound state says
 * next_seq 1, so that batch 1 is a torn newest batch (deleted) rather than a damaged one;
 * bit 4, a digests file follows (1-byte length, then the bytes). The rest is
 * batch-00000000000000000001.pb (a ballot batch, version 1, or a sheet batch, version 2).
 * Oracles: a spool that opens holds only batches that decode as those batches, with their
 * digests, and a digests file of whole records of durable seqs only (none here: durable 0);
 * it opens again to the same state. */
#include "fuzz.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "client/spool.h"
#include "core/endian.h"
#include "wire/digest.h"
#include "wire/wire.h"

#define ID "fuzz-collector"
#define BATCH1 "batch-00000000000000000001.pb"

static char dir[256];

static void rm_all(void)
{
    DIR *d = opendir(dir);
    FUZZ_ASSERT(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            FUZZ_ASSERT(unlinkat(dirfd(d), e->d_name, 0) == 0);
    closedir(d);
}

static void cleanup(void)
{
    rm_all();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_ASSERT(sodium_init() >= 0);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/fuzz_spool.%d", base, (int)getpid());
    FUZZ_ASSERT(mkdir(dir, 0700) == 0);
    atexit(cleanup);
    return 0;
}

static void put(const char *name, const uint8_t *p, size_t len, bool sum)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_ASSERT(fd >= 0);
    FUZZ_ASSERT(len == 0 || write(fd, p, len) == (ssize_t)len);
    if (sum) {
        uint8_t s[16];
        crypto_generichash(s, sizeof(s), p, len, NULL, 0);
        FUZZ_ASSERT(write(fd, s, sizeof(s)) == (ssize_t)sizeof(s));
    }
    close(fd);
}

/* spool.c's state layout with no cursor. */
static void put_state(uint64_t next_seq)
{
    uint8_t img[40 + sizeof(ID) - 1];
    le32_put(img, 0x53594c54u);
    le32_put(img + 4, 1);
    le64_put(img + 8, next_seq);
    le64_put(img + 16, 0);
    le64_put(img + 24, 0);
    le32_put(img + 32, sizeof(ID) - 1);
    le32_put(img + 36, 0);
    memcpy(img + 40, ID, sizeof(ID) - 1);
    put("state", img, sizeof(img), true);
}

/* What an open spool must hold. */
static void check_open(const struct client_spool *s)
{
    FUZZ_ASSERT(s->durable_seq == 0 && s->count <= 1);
    FUZZ_ASSERT(s->next_seq == s->durable_seq + 1 + s->count);
    FUZZ_ASSERT(s->cursor_len <= TALLY_CLIENT_CURSOR_MAX);
    uint64_t votes = 0;
    for (size_t i = 0; i < s->count; i++) {
        const struct client_spool_batch *b = &s->batches[i];
        FUZZ_ASSERT(b->seq == i + 1 && !b->confirmed);
        FUZZ_ASSERT((b->votes > 0) != (b->sheets > 0));
        size_t len;
        FUZZ_ASSERT(wire_frame_peek(b->frame, b->frame_len, b->frame_len, &len) == WIRE_OK);
        FUZZ_ASSERT(len + 4 == b->frame_len);
        struct arena a;
        arena_init(&a, 4096);
        Tally__Frame *f;
        FUZZ_ASSERT(wire_frame_decode(b->frame + 4, len, &a, &f) == WIRE_OK);
        FUZZ_ASSERT(f->msg_case == TALLY__FRAME__MSG_BATCH && f->batch->seq == b->seq);
        FUZZ_ASSERT(f->batch->n_ballots == b->votes && f->batch->n_projects == b->votes);
        FUZZ_ASSERT(f->batch->n_sheets == b->sheets);
        uint8_t d[WIRE_DIGEST_BYTES];
        wire_batch_digest_msg(f->batch, d);
        FUZZ_ASSERT(memcmp(d, b->digest, sizeof(d)) == 0);
        arena_cleanup(&a);
        FUZZ_ASSERT(client_spool_get(s, b->seq) == b);
        votes += b->votes;
    }
    FUZZ_ASSERT(s->pending_votes == votes);
    FUZZ_ASSERT(s->digests_len == 0 && s->digests_last == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    if (mode & 2) {
        if (len < 2)
            return 0;
        size_t sl = (size_t)p[0] | (size_t)p[1] << 8;
        if (sl > len - 2)
            sl = len - 2;
        put("state", p + 2, sl, mode & 4);
        p += 2 + sl;
        len -= 2 + sl;
    } else {
        put_state(mode & 8 ? 1 : 2);
    }
    if (mode & 16) {
        if (len < 1)
            return 0;
        size_t dl = p[0] < len - 1 ? p[0] : len - 1;
        put("digests", p + 1, dl, false);
        p += 1 + dl;
        len -= 1 + dl;
    }
    put(BATCH1, p, len, mode & 1);

    struct client_spool s;
    int rc = client_spool_open(&s, dir, ID);
    if (rc == 0) {
        check_open(&s);
        uint64_t next = s.next_seq, votes = s.pending_votes;
        size_t count = s.count;
        client_spool_close(&s);
        /* What open accepted (or tidied) opens again, the same. */
        FUZZ_ASSERT(client_spool_open(&s, dir, ID) == 0);
        FUZZ_ASSERT(s.next_seq == next && s.pending_votes == votes && s.count == count);
        fuzz_verdict = count ? FUZZ_ACCEPTED : FUZZ_REFUSED;
        client_spool_close(&s);
    } else {
        FUZZ_ASSERT(rc == TALLY_CLIENT_ERR_CORRUPT || rc == TALLY_CLIENT_ERR_INVALID);
        FUZZ_ASSERT(s.err[0] != '\0');
        fuzz_verdict = FUZZ_REFUSED;
    }
    rm_all();
    return 0;
}
