/* Frame header parsing and protobuf-c (un)packing. Owns the framing rules and the scan
 * that stands between the network and protobuf-c 1.4.1's weaknesses; does not own
 * buffers: callers hand in bytes and an arena. */
#include "wire/wire.h"
#include "wire/digest.h"

#include "tally/protocol.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

static void *arena_pb_alloc(void *data, size_t size)
{
    return arena_alloc(data, size);
}

static void arena_pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr; /* freed all at once by arena_reset */
}

void wire_allocator_init(ProtobufCAllocator *pa, struct arena *a)
{
    pa->alloc = arena_pb_alloc;
    pa->free = arena_pb_free;
    pa->allocator_data = a;
}

void wire_header_put(uint8_t out[4], uint32_t payload_len)
{
    out[0] = (uint8_t)(payload_len >> 24);
    out[1] = (uint8_t)(payload_len >> 16);
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
}

enum wire_status wire_frame_peek(const uint8_t *buf, size_t len, size_t max_payload,
                                 size_t *payload_len)
{
    if (len < 4)
        return WIRE_NEED_MORE;
    uint32_t n =
        (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | (uint32_t)buf[3];
    /* Judge the header before waiting for the body, so a bogus length is refused at once
     * instead of making us buffer up to 4 GiB. */
    if (n > max_payload)
        return WIRE_ERR_TOO_LARGE;
    if (n == 0)
        return WIRE_ERR_MALFORMED;
    if (len - 4 < n)
        return WIRE_NEED_MORE;
    *payload_len = n;
    return WIRE_OK;
}

/* ---- the pre-unpack scan (wire.h: wire_message_check) --------------------------------- */

struct scan {
    size_t records, singular, messages;
    const char *why;
};

/* A varint of at most 10 bytes that fits 64 bits: its length, or 0. */
static size_t scan_varint(const uint8_t *p, size_t len, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        if (i == 9 && p[i] > 1)
            return 0; /* bits past the 64th */
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

/* The wire type a field of this type is written with (repeated scalars may also come
 * packed, as wire type 2). */
static unsigned wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return PROTOBUF_C_WIRE_TYPE_32BIT;
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return PROTOBUF_C_WIRE_TYPE_64BIT;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    default:
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    }
}

/* A packed run of elements of wire type wt: whole varints, or whole fixed-size values.
 * At least one: protobuf-c computes NULL + 0 (undefined) for a run that holds none, empty
 * or a lone unfinished varint; encoders leave an empty repeated field out. */
static bool scan_packed(const uint8_t *p, size_t len, unsigned wt)
{
    if (len == 0)
        return false;
    if (wt == PROTOBUF_C_WIRE_TYPE_64BIT)
        return len % 8 == 0;
    if (wt == PROTOBUF_C_WIRE_TYPE_32BIT)
        return len % 4 == 0;
    while (len > 0) {
        uint64_t v;
        size_t n = scan_varint(p, len, &v);
        if (n == 0)
            return false;
        p += n;
        len -= n;
    }
    return true;
}

static bool scan_fail(struct scan *sc, const char *why)
{
    sc->why = why;
    return false;
}

static bool scan_message(struct scan *sc, const ProtobufCMessageDescriptor *d, const uint8_t *p,
                         size_t len, unsigned depth)
{
    if (depth > WIRE_SCAN_MAX_DEPTH)
        return scan_fail(sc, "messages nested too deep");
    /* Known non-repeated fields seen in this message instance, by descriptor index: the
     * first occurrence of each is what any encoder writes, the budget is for the others. */
    uint64_t seen = 0;
    while (len > 0) {
        uint64_t key;
        size_t n = scan_varint(p, len, &key);
        /* protobuf-c reads tags of at most 5 bytes. */
        if (n == 0 || n > 5)
            return scan_fail(sc, "bad tag varint");
        uint64_t number = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        if (number == 0)
            return scan_fail(sc, "field number 0");
        if (number > 536870911u)
            return scan_fail(sc, "field number above 2^29 - 1");
        p += n;
        len -= n;
        size_t value_len = 0, prefix = 0;
        uint64_t v;
        switch (wt) {
        case PROTOBUF_C_WIRE_TYPE_VARINT:
            value_len = scan_varint(p, len, &v);
            if (value_len == 0)
                return scan_fail(sc, "bad varint");
            break;
        case PROTOBUF_C_WIRE_TYPE_64BIT:
            value_len = 8;
            break;
        case PROTOBUF_C_WIRE_TYPE_32BIT:
            value_len = 4;
            break;
        case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
            prefix = scan_varint(p, len, &v);
            /* protobuf-c reads length prefixes of at most 5 bytes, values to INT_MAX. */
            if (prefix == 0 || prefix > 5 || v > INT_MAX || v > len - prefix)
                return scan_fail(sc, "bad length prefix");
            value_len = prefix + (size_t)v;
            break;
        default:
            return scan_fail(sc, wt == 3 || wt == 4 ? "group wire type" : "bad wire type");
        }
        if (value_len > len)
            return scan_fail(sc, "field runs past the end of its message");
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)number);
        if (++sc->records > WIRE_SCAN_MAX_RECORDS)
            return scan_fail(sc, "too many field records");
        if (!f || f->label != PROTOBUF_C_LABEL_REPEATED) {
            size_t idx = f ? (size_t)(f - d->fields) : 64;
            bool first = idx < 64 && !(seen & (UINT64_C(1) << idx));
            if (first)
                seen |= UINT64_C(1) << idx;
            else if (++sc->singular > WIRE_SCAN_MAX_SINGULAR)
                return scan_fail(sc, "too many non-repeated or unknown field records");
        }
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && ++sc->messages > WIRE_SCAN_MAX_MESSAGES)
            return scan_fail(sc, "too many sub-messages");
        if (f) {
            unsigned want = wire_type_of(f->type);
            bool packed = f->label == PROTOBUF_C_LABEL_REPEATED &&
                          want != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED &&
                          wt == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
            if (wt != want && !packed)
                return scan_fail(sc, "wire type does not match the field");
            if (packed && !scan_packed(p + prefix, value_len - prefix, want))
                return scan_fail(sc, "bad packed repeated field");
            if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !scan_message(sc, f->descriptor, p + prefix, value_len - prefix, depth + 1))
                return false;
        }
        p += value_len;
        len -= value_len;
    }
    return true;
}

enum wire_status wire_message_check(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                    size_t len, const char **why)
{
    struct scan sc = {0};
    bool ok = scan_message(&sc, desc, buf, len, 1);
    if (why)
        *why = ok ? NULL : sc.why;
    return ok ? WIRE_OK : WIRE_ERR_MALFORMED;
}

/* ---- frames --------------------------------------------------------------------------- */

enum wire_status wire_frame_decode(const uint8_t *payload, size_t len, struct arena *a,
                                   Tally__Frame **out)
{
    if (wire_message_check(&tally__frame__descriptor, payload, len, NULL) != WIRE_OK)
        return WIRE_ERR_MALFORMED;
    ProtobufCAllocator pa;
    wire_allocator_init(&pa, a);
    Tally__Frame *f = tally__frame__unpack(&pa, len, payload);
    if (!f || f->msg_case == TALLY__FRAME__MSG__NOT_SET)
        return WIRE_ERR_MALFORMED;
    /* protobuf-c hands strings over NUL-terminated and drops what follows a NUL byte inside
     * one: "c0\0junk" would read as "c0". A Hello that does not encode back to its own
     * length lost bytes that way (or was not encoded canonically): refuse it. Hellos are
     * small; batches are not checked. */
    if (f->msg_case == TALLY__FRAME__MSG_HELLO && tally__frame__get_packed_size(f) != len)
        return WIRE_ERR_MALFORMED;
    *out = f;
    return WIRE_OK;
}

/* The table checks of a ballot batch (wire.h). */
static enum wire_batch_fault check_tables(const Tally__Batch *b)
{
    if (b->n_tables > WIRE_MAX_BATCH_TABLES)
        return WIRE_BATCH_TOO_MANY_TABLES;
    if (b->n_vote_tables && b->n_vote_tables != b->n_ballots)
        return WIRE_BATCH_TABLES_LEN;
    for (size_t i = 0; i < b->n_vote_tables; i++)
        if (b->vote_tables[i] > b->n_tables)
            return WIRE_BATCH_TABLE_INDEX;
    for (size_t i = 0; i < b->n_tables; i++)
        if (!b->tables[i] || !wire_table_id_is_valid(b->tables[i]))
            return WIRE_BATCH_TABLE_ID;
    return WIRE_BATCH_OK;
}

/* The sheet checks of a sheet batch (wire.h). */
static enum wire_batch_fault check_sheets(const Tally__Batch *b, uint32_t max_votes)
{
    if (b->n_ballots || b->n_projects || b->n_tables || b->n_vote_tables)
        return WIRE_BATCH_MIXED;
    if (b->n_sheets > WIRE_MAX_BATCH_SHEETS)
        return WIRE_BATCH_TOO_MANY_SHEETS;
    uint64_t rows = 0;
    for (size_t i = 0; i < b->n_sheets; i++) {
        const Tally__Sheet *s = b->sheets[i];
        if (!s)
            return WIRE_BATCH_TABLE_ID;
        rows += s->n_projects > s->n_votes ? s->n_projects : s->n_votes;
    }
    if (rows > max_votes)
        return WIRE_BATCH_TOO_MANY_SHEETS;
    for (size_t i = 0; i < b->n_sheets; i++)
        if (!b->sheets[i]->table_id || !wire_table_id_is_valid(b->sheets[i]->table_id))
            return WIRE_BATCH_TABLE_ID;
    return WIRE_BATCH_OK;
}

enum wire_batch_fault wire_batch_check(const Tally__Batch *b, uint32_t max_votes)
{
    if (b->n_ballots != b->n_projects)
        return WIRE_BATCH_MISMATCH;
    if (b->n_ballots > max_votes)
        return WIRE_BATCH_TOO_MANY;
    if (b->seq == 0)
        return WIRE_BATCH_SEQ_ZERO;
    if (b->nonce.len > WIRE_NONCE_MAX)
        return WIRE_BATCH_NONCE_LONG;
    return b->n_sheets ? check_sheets(b, max_votes) : check_tables(b);
}

const char *wire_batch_fault_name(enum wire_batch_fault fault)
{
    switch (fault) {
    case WIRE_BATCH_OK:
        return "ok";
    case WIRE_BATCH_MISMATCH:
        return "ballots and projects differ in length";
    case WIRE_BATCH_TOO_MANY:
        return "too many votes";
    case WIRE_BATCH_SEQ_ZERO:
        return "seq 0 (seqs start at 1)";
    case WIRE_BATCH_NONCE_LONG:
        return "nonce too long";
    case WIRE_BATCH_TABLES_LEN:
        return "vote_tables and ballots differ in length";
    case WIRE_BATCH_TABLE_INDEX:
        return "a vote_tables index past the table dictionary";
    case WIRE_BATCH_TABLE_ID:
        return "a table id not of the form [A-Za-z0-9._-]{1,63}";
    case WIRE_BATCH_TOO_MANY_TABLES:
        return "more than 4096 tables in the dictionary";
    case WIRE_BATCH_MIXED:
        return "tally sheets together with ballots, projects or tables";
    case WIRE_BATCH_TOO_MANY_SHEETS:
        return "too many tally sheets or sheet rows";
    }
    return "unknown fault";
}

bool wire_table_id_is_valid(const char *id)
{
    return wire_collector_id_is_valid(id);
}

bool wire_collector_id_is_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char ch = id[n];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok || n >= TALLY_COLLECTOR_ID_MAX)
            return false;
    }
    return n > 0;
}

size_t wire_frame_size(const Tally__Frame *f)
{
    return 4 + tally__frame__get_packed_size(f);
}

size_t wire_frame_encode(const Tally__Frame *f, uint8_t *out)
{
    size_t n = tally__frame__pack(f, out + 4);
    wire_header_put(out, (uint32_t)n);
    return 4 + n;
}

const char *wire_error_name(Tally__ErrorCode code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tally__error_code__descriptor, (int)code);
    return v ? v->name : "ERROR_UNKNOWN";
}
