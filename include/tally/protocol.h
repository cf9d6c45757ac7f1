/* Shared contract between tallyd and collectors: framing, limits, protocol version.
 * The messages themselves are in proto/tally.proto. */
#ifndef TALLY_PROTOCOL_H
#define TALLY_PROTOCOL_H

#include <stdint.h>

/* Version carried in Hello and Welcome; tallyd refuses any other. */
#define TALLY_PROTOCOL_VERSION 1u

/* Every frame is a 4-byte big-endian length followed by that many bytes of Frame. */
#define TALLY_FRAME_HEADER_BYTES 4u

/* Defaults; tallyd announces its actual limits in Welcome. */
#define TALLY_DEFAULT_MAX_FRAME_BYTES (8u * 1024u * 1024u)
#define TALLY_DEFAULT_MAX_BATCH_VOTES 100000u

/* Why a vote or a sheet was not counted (proto RejectReason, docs/consultation.md): the
 * names every output uses, index k for reason k (0 unused). One list for all of them:
 *     static const char *const names[TALLY_REASON_COUNT] = {TALLY_REASON_NAMES}; */
#define TALLY_REASON_COUNT 10u
#define TALLY_REASON_VOTE_LAST 6u /* reasons 1..6 apply to votes too; 7..9 to sheets only */
#define TALLY_REASON_NAMES                                                                         \
    "", "unknown_project", "not_allowed", "unknown_table", "outside_table_circuit",                \
        "over_electors", "table_mode_conflict", "sheet_conflict", "superseded", "bad_sheet"

/* Collector ids are short printable strings: [A-Za-z0-9._-]{1,63}. */
#define TALLY_COLLECTOR_ID_MAX 63u

#endif
