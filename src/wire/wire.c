/* Frame header parsing and protobuf-c (un)packing. Owns the framing rules; does not
 * own buffers: callers hand in bytes and an arena. */
#include "wire/wire.h"

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

enum wire_status wire_frame_decode(const uint8_t *payload, size_t len, struct arena *a,
                                   Tally__Frame **out)
{
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
