/* Pure helpers of tally-push: one CSV line to a vote (split by core/csv.h), a voter id to its
 * ballot token, key file bytes to a key, the cursor blob, the exit status of a libtally status
 * and the summary line. Owns no state; does not read files or sockets (main.c does). */
#include "core/csv.h"
#include "core/endian.h"
#include "core/xalloc.h"
#include "push/push.h"
#include "tally/client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Exactly 32 bytes, no terminating NUL. */
const uint8_t push_demo_key[PUSH_KEY_BYTES] = "tallyd demo ballot key: PUBLIC!!";

#define CURSOR_MAGIC 0x31435054u /* "TPC1" read little-endian */

static bool all_digits(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

bool push_table_id_is_valid(const char *id, size_t len)
{
    if (len == 0 || len > TALLY_COLLECTOR_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = id[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

enum push_line_kind push_line_parse(char *line, size_t len, bool first, struct push_line *out)
{
    memset(out, 0, sizeof(*out));
    if (first && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    /* Three fields kept; a fourth is only counted, and an error in it is "found more". */
    struct csv_field f[3];
    size_t n;
    struct csv_error err;
    if (csv_split_line(line, len, 0, f, 3, &n, &err) < 0) {
        if (err.field > 3)
            out->reason = "expected 2 or 3 fields (voter,project_id[,table_id]), found more";
        else if (err.code == CSV_ERR_UNTERMINATED)
            out->reason = "unterminated quoted field";
        else
            out->reason = "text after a closing quote";
        return PUSH_LINE_MALFORMED;
    }
    if (n == 1 && !f[0].quoted && f[0].len == 0)
        return PUSH_LINE_BLANK; /* nothing but a line ending */
    if (n == 1) {
        out->reason = "expected 2 or 3 fields (voter,project_id[,table_id]), found 1";
        return PUSH_LINE_MALFORMED;
    }
    if (n > 3) {
        out->reason = "expected 2 or 3 fields (voter,project_id[,table_id]), found more";
        return PUSH_LINE_MALFORMED;
    }
    const char *project = f[1].s;
    size_t project_len = f[1].len;
    if (!all_digits(project, project_len)) {
        if (first)
            return PUSH_LINE_HEADER;
        out->reason = "project id is not an unsigned integer";
        return PUSH_LINE_MALFORMED;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < project_len; i++) {
        v = v * 10 + (uint64_t)(project[i] - '0');
        if (v > UINT32_MAX) {
            out->reason = "project id is larger than 4294967295";
            return PUSH_LINE_MALFORMED;
        }
    }
    if (f[0].len == 0) {
        out->reason = "empty voter id";
        return PUSH_LINE_MALFORMED;
    }
    if (n == 3 && f[2].len > 0 && !push_table_id_is_valid(f[2].s, f[2].len)) {
        out->reason = "table id must be 1-63 characters of [A-Za-z0-9._-]";
        return PUSH_LINE_MALFORMED;
    }
    out->voter = f[0].s;
    out->voter_len = f[0].len;
    out->project = (uint32_t)v;
    if (n == 3) {
        out->table = f[2].s;
        out->table_len = f[2].len;
    }
    return PUSH_LINE_VOTE;
}

void push_tables_init(struct push_tables *t)
{
    memset(t, 0, sizeof(*t));
    t->ids = xcalloc(PUSH_TABLES_PER_BATCH, sizeof(*t->ids));
}

void push_tables_reset(struct push_tables *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->ids[i]);
    t->n = 0;
    memset(t->slots, 0, sizeof(t->slots));
}

void push_tables_cleanup(struct push_tables *t)
{
    if (!t->ids)
        return;
    push_tables_reset(t);
    free(t->ids);
    t->ids = NULL;
}

uint32_t push_tables_index(struct push_tables *t, const char *id, size_t len)
{
    const size_t mask = 2 * PUSH_TABLES_PER_BATCH - 1;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
    for (size_t i = (size_t)(h ^ (h >> 31)) & mask;; i = (i + 1) & mask) {
        uint32_t k = t->slots[i];
        if (k == 0) {
            if (t->n == PUSH_TABLES_PER_BATCH)
                return 0;
            char *copy = xmalloc(len + 1);
            memcpy(copy, id, len);
            copy[len] = '\0';
            t->ids[t->n++] = copy;
            t->slots[i] = (uint32_t)t->n;
            return (uint32_t)t->n;
        }
        if (strlen(t->ids[k - 1]) == len && memcmp(t->ids[k - 1], id, len) == 0)
            return k;
    }
}

uint64_t push_token(const uint8_t key[PUSH_KEY_BYTES], const void *voter, size_t len)
{
    uint8_t h[8];
    /* An 8-byte BLAKE2b is a hash of its own (the length is in its parameter block), not a
     * truncated longer one; libsodium accepts it through crypto_generichash. */
    if (crypto_generichash(h, sizeof(h), voter, len, key, PUSH_KEY_BYTES) != 0)
        __builtin_trap(); /* only fails for out-of-range lengths, which these are not */
    uint64_t t = 0;
    for (int i = 7; i >= 0; i--)
        t = t << 8 | h[i];
    return t;
}

static int hex_value(uint8_t ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int push_key_parse(const uint8_t *data, size_t len, uint8_t key[PUSH_KEY_BYTES])
{
    if (len == PUSH_KEY_BYTES) {
        memcpy(key, data, PUSH_KEY_BYTES);
        return 0;
    }
    size_t hex = 2 * PUSH_KEY_BYTES;
    if (len == hex + 1 && data[hex] == '\n')
        len = hex;
    else if (len == hex + 2 && data[hex] == '\r' && data[hex + 1] == '\n')
        len = hex;
    if (len != hex)
        return -1;
    uint8_t tmp[PUSH_KEY_BYTES];
    for (size_t i = 0; i < PUSH_KEY_BYTES; i++) {
        int hi = hex_value(data[2 * i]), lo = hex_value(data[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(key, tmp, PUSH_KEY_BYTES);
    return 0;
}

void push_prefix_hash(const void *data, size_t len, uint8_t out[PUSH_PREFIX_HASH_BYTES])
{
    crypto_generichash(out, PUSH_PREFIX_HASH_BYTES, data, len, NULL, 0);
}

void push_cursor_encode(const struct push_cursor *cur, uint8_t out[PUSH_CURSOR_BYTES])
{
    le32_put(out, CURSOR_MAGIC);
    le64_put(out + 4, cur->offset);
    le64_put(out + 12, cur->line);
    le64_put(out + 20, cur->malformed);
    le32_put(out + 28, cur->prefix_len);
    memcpy(out + 32, cur->prefix_hash, PUSH_PREFIX_HASH_BYTES);
}

int push_cursor_decode(const uint8_t *buf, size_t len, struct push_cursor *out)
{
    if (len != PUSH_CURSOR_BYTES || le32_get(buf) != CURSOR_MAGIC)
        return -1;
    struct push_cursor c;
    c.offset = le64_get(buf + 4);
    c.line = le64_get(buf + 12);
    c.malformed = le64_get(buf + 20);
    c.prefix_len = le32_get(buf + 28);
    memcpy(c.prefix_hash, buf + 32, PUSH_PREFIX_HASH_BYTES);
    if (c.prefix_len > PUSH_PREFIX_BYTES || c.prefix_len > c.offset ||
        (c.offset < PUSH_PREFIX_BYTES && c.prefix_len != c.offset) || c.malformed > c.line)
        return -1;
    *out = c;
    return 0;
}

int push_exit_for_status(int status)
{
    switch (status) {
    case TALLY_CLIENT_OK:
        return PUSH_EXIT_OK;
    case TALLY_CLIENT_ERR_AUTH:
        return PUSH_EXIT_AUTH;
    case TALLY_CLIENT_ERR_DISABLED:
        return PUSH_EXIT_DISABLED;
    case TALLY_CLIENT_ERR_CLOSED:
        return PUSH_EXIT_CLOSED;
    default:
        return PUSH_EXIT_FATAL;
    }
}

int push_summary_format(char *buf, size_t len, uint64_t batches, uint64_t votes, uint64_t accepted,
                        uint64_t duplicate, uint64_t rejected, uint64_t not_allowed)
{
    return snprintf(buf, len,
                    "batches %" PRIu64 " votes %" PRIu64 " accepted %" PRIu64 " duplicate %" PRIu64
                    " rejected %" PRIu64 " not_allowed %" PRIu64,
                    batches, votes, accepted, duplicate, rejected, not_allowed);
}
