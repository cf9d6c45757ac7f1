/* Fuzz harness: the frame reader as net/conn.c drives it. The input is what a peer sends on
 * one connection: wire_frame_peek judges each header (the pre-Hello limit until a Hello is
 * decoded, then the session limit), wire_frame_decode decodes each whole frame into one
 * arena trimmed after every frame. Oracles: the peek outcome matches the header; what
 * decodes is whole (every array readable) and re-encodes to bytes that decode again to the
 * same bytes; decode memory stays within a fixed multiple of the payload. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

#define PRE_AUTH_LIMIT 4096u  /* ingest's pre_auth_max_frame_bytes */
#define SESSION_LIMIT 65536u  /* a max_frame_bytes small enough to be reached */
#define ARENA_FIRST 65536u    /* NET_ARENA_FIRST */
#define ARENA_KEEP (4u << 20) /* NET_ARENA_KEEP */
/* Decode memory allowed per payload byte (wire_message_check keeps protobuf-c below it:
 * unpacked repeated scalars cost 32 bytes of scan state per 2-byte record, packed uint32
 * 4 bytes per byte) and on top of it (the arena's first chunk, doubling). */
#define ARENA_PER_BYTE 48u
#define ARENA_SLACK (4u * ARENA_FIRST)

static volatile uint64_t sink;

/* Reads everything f points to, so that ASan sees a pointer protobuf-c left dangling. */
static void touch(const Tally__Frame *f)
{
    uint64_t s = 0;
    switch (f->msg_case) {
    case TALLY__FRAME__MSG_HELLO:
        FUZZ_ASSERT(f->hello && f->hello->collector_id && f->hello->consultation_id);
        s += strlen(f->hello->collector_id) + strlen(f->hello->consultation_id);
        break;
    case TALLY__FRAME__MSG_BATCH: {
        const Tally__Batch *b = f->batch;
        FUZZ_ASSERT(b);
        FUZZ_ASSERT(b->n_ballots == 0 || b->ballots);
        FUZZ_ASSERT(b->n_projects == 0 || b->projects);
        FUZZ_ASSERT(b->nonce.len == 0 || b->nonce.data);
        for (size_t i = 0; i < b->n_ballots; i++)
            s += b->ballots[i];
        for (size_t i = 0; i < b->n_projects; i++)
            s += b->projects[i];
        for (size_t i = 0; i < b->nonce.len; i++)
            s += b->nonce.data[i];
        break;
    }
    case TALLY__FRAME__MSG_WELCOME:
        FUZZ_ASSERT(f->welcome && f->welcome->consultation_id);
        s += strlen(f->welcome->consultation_id);
        if (f->welcome->totals)
            s += f->welcome->totals->votes;
        break;
    case TALLY__FRAME__MSG_ACK:
        FUZZ_ASSERT(f->ack);
        if (f->ack->durable_totals)
            s += f->ack->durable_totals->batches;
        break;
    case TALLY__FRAME__MSG_ERROR:
        FUZZ_ASSERT(f->error && f->error->message);
        s += strlen(f->error->message) + (uint64_t)f->error->code;
        break;
    case TALLY__FRAME__MSG_PING:
        FUZZ_ASSERT(f->ping);
        s += f->ping->nonce;
        break;
    default:
        FUZZ_ASSERT(!"decode returned an unknown message case");
    }
    sink += s;
}

/* encode(decode(x)) must decode, and encode again to the very same bytes. */
static void round_trip(const Tally__Frame *f)
{
    size_t n = wire_frame_size(f);
    uint8_t *one = malloc(n), *two = NULL;
    FUZZ_ASSERT(one && wire_frame_encode(f, one) == n);
    size_t len = 0;
    FUZZ_ASSERT(wire_frame_peek(one, n, SIZE_MAX, &len) == WIRE_OK && len + 4 == n);
    struct arena a;
    arena_init(&a, 4096);
    Tally__Frame *g = NULL;
    FUZZ_ASSERT(wire_frame_decode(one + 4, len, &a, &g) == WIRE_OK);
    FUZZ_ASSERT(g->msg_case == f->msg_case);
    size_t m = wire_frame_size(g);
    FUZZ_ASSERT(m == n);
    two = malloc(m);
    FUZZ_ASSERT(two && wire_frame_encode(g, two) == m);
    FUZZ_ASSERT(memcmp(one, two, n) == 0);
    arena_cleanup(&a);
    free(one);
    free(two);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena a;
    arena_init(&a, ARENA_FIRST);
    bool authenticated = false, refused = false;
    size_t pos = 0;
    while (pos < size) {
        const uint8_t *p = data + pos;
        size_t avail = size - pos, limit = authenticated ? SESSION_LIMIT : PRE_AUTH_LIMIT;
        size_t len = 0;
        enum wire_status st = wire_frame_peek(p, avail, limit, &len);
        uint32_t hdr =
            avail >= 4 ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
                       : 0;
        if (st == WIRE_NEED_MORE) {
            FUZZ_ASSERT(avail < 4 || (hdr <= limit && hdr > 0 && avail - 4 < hdr));
            break; /* a peer that stops mid-frame: nothing more happens */
        }
        if (st == WIRE_ERR_TOO_LARGE) {
            FUZZ_ASSERT(hdr > limit);
            refused = true;
            break;
        }
        if (st != WIRE_OK) {
            FUZZ_ASSERT(st == WIRE_ERR_MALFORMED && hdr == 0);
            refused = true;
            break;
        }
        FUZZ_ASSERT(len == hdr && len <= limit && 4 + len <= avail);
        /* The payload alone, as evbuffer_pullup hands it over: ASan sees reads past it. */
        uint8_t *payload = malloc(len);
        memcpy(payload, p + 4, len);
        Tally__Frame *f = NULL;
        st = wire_frame_decode(payload, len, &a, &f);
        if (st != WIRE_OK) {
            FUZZ_ASSERT(st == WIRE_ERR_MALFORMED);
            free(payload);
            refused = true;
            break;
        }
        memset(payload, 0xa5, len); /* nothing decoded may still point into the payload */
        touch(f);
        round_trip(f);
        FUZZ_ASSERT(arena_bytes(&a) <= ARENA_PER_BYTE * len + ARENA_SLACK);
        if (f->msg_case == TALLY__FRAME__MSG_HELLO)
            authenticated = true;
        free(payload);
        arena_trim(&a, ARENA_KEEP);
        pos += 4 + len;
    }
    arena_cleanup(&a);
    fuzz_verdict = refused ? FUZZ_REFUSED : pos == size ? FUZZ_ACCEPTED : FUZZ_NONE;
    return 0;
}
