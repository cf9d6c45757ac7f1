/* Frames on the wire: a 4-byte big-endian length, then a protobuf-encoded tally.Frame.
 * Pure: bytes in, messages out. No sockets, no clock, no logging. */
#ifndef WIRE_WIRE_H
#define WIRE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "tally.pb-c.h"

/* The three outcomes of looking at buffered bytes, plus the two ways it can be wrong. */
enum wire_status {
    WIRE_OK = 0,             /* a whole frame is there */
    WIRE_NEED_MORE = 1,      /* not yet: wait for more bytes */
    WIRE_ERR_TOO_LARGE = -1, /* the length prefix exceeds the limit */
    WIRE_ERR_MALFORMED = -2, /* the payload is not a valid Frame, or the Frame is empty */
};

/* Reads the frame header at the start of buf (len bytes buffered). On WIRE_OK,
 * *payload_len is the payload size and the frame occupies 4 + *payload_len bytes. A
 * zero length is WIRE_ERR_MALFORMED: no valid Frame encodes to nothing useful. */
enum wire_status wire_frame_peek(const uint8_t *buf, size_t len, size_t max_payload,
                                 size_t *payload_len) __attribute__((warn_unused_result));

/* Decodes one payload; the message and everything it points to live in arena a until
 * arena_reset. The payload is not referenced after return. Returns WIRE_OK or
 * WIRE_ERR_MALFORMED. */
enum wire_status wire_frame_decode(const uint8_t *payload, size_t len, struct arena *a,
                                   Tally__Frame **out) __attribute__((warn_unused_result));

/* Bytes wire_frame_encode will write for f, header included. */
size_t wire_frame_size(const Tally__Frame *f);
/* Writes header + payload into out (wire_frame_size(f) bytes); returns bytes written. */
size_t wire_frame_encode(const Tally__Frame *f, uint8_t *out);

void wire_header_put(uint8_t out[4], uint32_t payload_len);

/* A ProtobufCAllocator that takes memory from arena a and never frees. */
void wire_allocator_init(ProtobufCAllocator *pa, struct arena *a);

/* Human-readable name of an error code, for logs and messages. */
const char *wire_error_name(Tally__ErrorCode code);

#endif
