/* Receipts for tally-push --verify-receipts: the receipt JSON (json-c, strict) into a
 * struct push_receipt, and the check of one receipt against the collector's own id, seq
 * and digest and a published head, with the record's public hashes (src/record). Owns no
 * socket and no file: receipts_run.c fetches, this judges. */
#include "push/receipts.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/xalloc.h"
#include "record/record.h"

/* The receipt is two levels deep (object, chain array, entry object): anything deeper is
 * refused by the tokenizer before it allocates much. */
#define RECEIPT_JSON_DEPTH 8

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int push_hex32_parse(const char *text, size_t len, uint8_t out[PUSH_RECEIPT_HASH])
{
    uint8_t tmp[PUSH_RECEIPT_HASH];
    if (!text || len != 2 * PUSH_RECEIPT_HASH)
        return -1;
    for (size_t i = 0; i < PUSH_RECEIPT_HASH; i++) {
        int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(out, tmp, sizeof(tmp));
    return 0;
}

void push_hex32_format(const uint8_t in[PUSH_RECEIPT_HASH], char out[2 * PUSH_RECEIPT_HASH + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < PUSH_RECEIPT_HASH; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * PUSH_RECEIPT_HASH] = '\0';
}

/* Field `name` of object obj, of type t. Returns it (borrowed), or NULL with err set: missing
 * (unless optional, then NULL and err untouched) or of another type. where names the object
 * in the message ("" for the receipt, "chain[3]." for an entry). */
static struct json_object *field(struct json_object *obj, const char *where, const char *name,
                                 enum json_type t, bool optional, char *err, size_t len, bool *bad)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(obj, name, &v)) {
        if (!optional) {
            snprintf(err, len, "receipt has no %s%s", where, name);
            *bad = true;
        }
        return NULL;
    }
    if (!v || !json_object_is_type(v, t)) { /* v NULL: a JSON null */
        snprintf(err, len, "receipt's %s%s is not a%s %s", where, name,
                 t == json_type_int || t == json_type_array || t == json_type_object ? "n" : "",
                 t == json_type_int      ? "integer"
                 : t == json_type_string ? "string"
                 : t == json_type_array  ? "array"
                                         : "object");
        *bad = true;
        return NULL;
    }
    return v;
}

static int get_u64(struct json_object *obj, const char *where, const char *name, uint64_t *out,
                   char *err, size_t len)
{
    bool bad = false;
    struct json_object *v = field(obj, where, name, json_type_int, false, err, len, &bad);
    if (!v)
        return -1;
    /* json-c keeps integers past INT64_MAX as uint64 (get_int64 then says INT64_MAX). */
    if (json_object_get_int64(v) < 0) {
        snprintf(err, len, "receipt's %s%s is negative", where, name);
        return -1;
    }
    *out = json_object_get_uint64(v);
    return 0;
}

/* A hash field; optional ones missing leave *present false and return 0. */
static int get_hash(struct json_object *obj, const char *where, const char *name, bool optional,
                    uint8_t out[PUSH_RECEIPT_HASH], bool *present, char *err, size_t len)
{
    bool bad = false;
    struct json_object *v = field(obj, where, name, json_type_string, optional, err, len, &bad);
    if (present)
        *present = v != NULL;
    if (!v)
        return bad ? -1 : 0;
    if (push_hex32_parse(json_object_get_string(v), (size_t)json_object_get_string_len(v), out) <
        0) {
        snprintf(err, len, "receipt's %s%s is not 64 hex digits", where, name);
        return -1;
    }
    return 0;
}

static int parse_link(struct json_object *e, size_t i, struct push_receipt_link *l, char *err,
                      size_t len)
{
    char where[40];
    snprintf(where, sizeof(where), "chain[%zu].", i);
    if (!json_object_is_type(e, json_type_object)) {
        snprintf(err, len, "receipt's chain[%zu] is not an object", i);
        return -1;
    }
    if (get_u64(e, where, "id", &l->id, err, len) < 0 ||
        get_u64(e, where, "epoch", &l->epoch, err, len) < 0 ||
        get_hash(e, where, "prev_hash", false, l->prev_hash, NULL, err, len) < 0 ||
        get_hash(e, where, "merkle_root", false, l->merkle_root, NULL, err, len) < 0 ||
        get_hash(e, where, "body_hash", false, l->body_hash, NULL, err, len) < 0 ||
        get_hash(e, where, "hash", true, l->hash, &l->has_hash, err, len) < 0)
        return -1;
    return 0;
}

static int parse_object(struct json_object *root, struct push_receipt *r, char *err, size_t len)
{
    bool bad = false;
    if (!json_object_is_type(root, json_type_object)) {
        snprintf(err, len, "receipt is not a JSON object");
        return -1;
    }
    struct json_object *c = field(root, "", "collector", json_type_string, false, err, len, &bad);
    if (!c)
        return -1;
    size_t clen = (size_t)json_object_get_string_len(c);
    const char *cs = json_object_get_string(c);
    if (clen > TALLY_COLLECTOR_ID_MAX || memchr(cs, '\0', clen)) {
        snprintf(err, len, "receipt's collector is not a collector id");
        return -1;
    }
    memcpy(r->collector, cs, clen);
    r->collector[clen] = '\0';
    if (get_u64(root, "", "seq", &r->seq, err, len) < 0 ||
        get_hash(root, "", "digest", false, r->digest, NULL, err, len) < 0 ||
        get_u64(root, "", "checkpoint", &r->checkpoint, err, len) < 0 ||
        get_u64(root, "", "leaf_index", &r->leaf_index, err, len) < 0 ||
        get_u64(root, "", "tree_size", &r->tree_size, err, len) < 0 ||
        get_hash(root, "", "head", true, r->head, &r->has_head, err, len) < 0)
        return -1;

    struct json_object *path = field(root, "", "path", json_type_array, false, err, len, &bad);
    if (!path)
        return -1;
    size_t n = json_object_array_length(path);
    if (n > PUSH_RECEIPT_PATH_MAX) {
        snprintf(err, len, "receipt's path has %zu entries (at most %u)", n, PUSH_RECEIPT_PATH_MAX);
        return -1;
    }
    r->path = xcalloc(n ? n : 1, sizeof(*r->path));
    for (size_t i = 0; i < n; i++) {
        struct json_object *h = json_object_array_get_idx(path, i);
        if (!json_object_is_type(h, json_type_string) ||
            push_hex32_parse(json_object_get_string(h), (size_t)json_object_get_string_len(h),
                             r->path[i]) < 0) {
            snprintf(err, len, "receipt's path[%zu] is not 64 hex digits", i);
            return -1;
        }
        r->n_path = i + 1;
    }

    struct json_object *chain = field(root, "", "chain", json_type_array, false, err, len, &bad);
    if (!chain)
        return -1;
    n = json_object_array_length(chain);
    if (n == 0) {
        snprintf(err, len, "receipt's chain is empty");
        return -1;
    }
    r->chain = xcalloc(n, sizeof(*r->chain));
    for (size_t i = 0; i < n; i++) {
        if (parse_link(json_object_array_get_idx(chain, i), i, &r->chain[i], err, len) < 0)
            return -1;
        r->n_chain = i + 1;
    }
    return 0;
}

int push_receipt_parse(const char *json, size_t len, struct push_receipt *r, char *err,
                       size_t err_len)
{
    memset(r, 0, sizeof(*r));
    while (len && (json[len - 1] == ' ' || json[len - 1] == '\n' || json[len - 1] == '\r' ||
                   json[len - 1] == '\t'))
        len--;
    if (len == 0) {
        snprintf(err, err_len, "receipt is empty");
        return -1;
    }
    if (len > PUSH_RECEIPT_BODY_MAX) {
        snprintf(err, err_len, "receipt is larger than %u bytes", PUSH_RECEIPT_BODY_MAX);
        return -1;
    }
    int rc = -1;
    struct json_object *root = NULL;
    struct json_tokener *tok = json_tokener_new_ex(RECEIPT_JSON_DEPTH);
    if (!tok)
        abort(); /* allocation failure, as xalloc */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!root || jerr != json_tokener_success) {
        snprintf(err, err_len, "receipt is not valid JSON: %s",
                 jerr == json_tokener_continue ? "it ends early" : json_tokener_error_desc(jerr));
        goto fail;
    }
    if (json_tokener_get_parse_end(tok) != len) {
        snprintf(err, err_len, "receipt has bytes after its JSON object");
        goto fail;
    }
    rc = parse_object(root, r, err, err_len);
fail:
    json_object_put(root);
    json_tokener_free(tok);
    return rc;
}

void push_receipt_cleanup(struct push_receipt *r)
{
    free(r->path);
    free(r->chain);
    r->path = NULL;
    r->chain = NULL;
    r->n_path = r->n_chain = 0;
}

/* The reason a link's prev_hash (entry i) is not the link recomputed for entry i - 1; the
 * receipt's own hash of entry i - 1, when it gave one, says whether tallyd's claimed link
 * or the entry it follows is the one that differs. */
static void prev_mismatch(const struct push_receipt *r, size_t i, const uint8_t link[32], char *why,
                          size_t len)
{
    const struct push_receipt_link *p = &r->chain[i - 1], *l = &r->chain[i];
    char want[65], got[65];
    push_hex32_format(link, want);
    if (p->has_hash && memcmp(p->hash, link, 32) != 0) {
        push_hex32_format(p->hash, got);
        snprintf(why, len,
                 "checkpoint %" PRIu64 " hashes to %s, not to the hash %s the receipt gives it "
                 "(its fields were changed)",
                 p->id, want, got);
        return;
    }
    push_hex32_format(l->prev_hash, got);
    snprintf(why, len,
             "checkpoint %" PRIu64 "'s prev_hash %s is not the hash %s of checkpoint %" PRIu64,
             l->id, got, want, p->id);
}

int push_receipt_verify(const struct push_receipt *r, const char *collector, uint64_t seq,
                        const uint8_t digest[PUSH_RECEIPT_HASH],
                        const uint8_t head[PUSH_RECEIPT_HASH], char *why, size_t len)
{
    char a[65], b[65];
    if (strcmp(r->collector, collector) != 0 || r->seq != seq) {
        snprintf(why, len, "the receipt is for %s/%" PRIu64 ", not this batch", r->collector,
                 r->seq);
        return -1;
    }
    if (memcmp(r->digest, digest, PUSH_RECEIPT_HASH) != 0) {
        push_hex32_format(r->digest, a);
        push_hex32_format(digest, b);
        snprintf(why, len,
                 "tallyd holds digest %s under this seq, the spool kept %s: not this "
                 "spool's batch",
                 a, b);
        return -1;
    }
    if (r->n_chain == 0 || r->chain[0].id != r->checkpoint) {
        snprintf(why, len,
                 "the chain starts at checkpoint %" PRIu64 ", not at the batch's %" PRIu64,
                 r->n_chain ? r->chain[0].id : 0, r->checkpoint);
        return -1;
    }
    uint8_t leaf[32];
    record_merkle_leaf(collector, seq, digest, leaf);
    if ((uint64_t)(size_t)r->tree_size != r->tree_size || r->leaf_index >= r->tree_size ||
        !record_merkle_verify(leaf, (size_t)r->leaf_index, (size_t)r->tree_size,
                              (const uint8_t(*)[32])r->path, r->n_path, r->chain[0].merkle_root)) {
        snprintf(why, len,
                 "its Merkle path (leaf %" PRIu64 " of %" PRIu64 ", %zu hashes) does not lead "
                 "to checkpoint %" PRIu64 "'s merkle_root",
                 r->leaf_index, r->tree_size, r->n_path, r->checkpoint);
        return -1;
    }
    uint8_t link[32];
    bool at_head = false;
    for (size_t i = 0; i < r->n_chain; i++) {
        const struct push_receipt_link *l = &r->chain[i];
        if (i > 0) {
            if (r->chain[i - 1].id == UINT64_MAX || l->id != r->chain[i - 1].id + 1) {
                snprintf(why, len,
                         "chain[%zu] is checkpoint %" PRIu64 ", not %" PRIu64 " + 1: the chain "
                         "skips or repeats a checkpoint",
                         i, l->id, r->chain[i - 1].id);
                return -1;
            }
            if (memcmp(l->prev_hash, link, 32) != 0) {
                prev_mismatch(r, i, link, why, len);
                return -1;
            }
        }
        record_chain_link(l->prev_hash, l->id, l->epoch, l->merkle_root, l->body_hash, link);
        if (memcmp(link, head, 32) == 0)
            at_head = true;
    }
    if (!at_head) {
        const struct push_receipt_link *last = &r->chain[r->n_chain - 1];
        push_hex32_format(head, a);
        push_hex32_format(link, b);
        if (last->has_hash && memcmp(last->hash, link, 32) != 0)
            snprintf(why, len,
                     "the chain does not reach head %s: checkpoint %" PRIu64 ", its last, "
                     "hashes to %s, not to the hash the receipt gives it",
                     a, last->id, b);
        else
            snprintf(why, len,
                     "the chain from checkpoint %" PRIu64 " to %" PRIu64 " does not reach head "
                     "%s (its last link is %s)",
                     r->chain[0].id, last->id, a, b);
        return -1;
    }
    return 0;
}
