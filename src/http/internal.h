/* Shared inside src/http only: the registry layout derived once from the catalog, the
 * immutable reference-counted results snapshot (with its resources' versions and the
 * renderings it keeps), the renderers that turn a snapshot into JSON, CSV and Prometheus
 * text, the progress history, the correction log and the Server-Sent Events hub. The
 * server object and the answer conventions are in server.h. Everything runs on the loop
 * thread, so reference counts are plain integers. */
#ifndef HTTP_INTERNAL_H
#define HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct evbuffer;
struct evhttp_request;
struct event;
struct http_gzip_job;

/* ---- layout: the catalog's shape, fixed for the server's life ------------------------- */

struct http_layout {
    const struct http_catalog *cat;
    uint32_t *members;       /* dense project indices grouped by circuit (n_projects) */
    uint32_t *first;         /* circuit c owns members[first[c] .. first[c + 1]) */
    uint32_t *project_by_id; /* dense project indices in external id order */
    uint32_t *circuit_by_id; /* circuit indices in external id order */
    uint32_t max_members;    /* the most projects of one circuit */
    const char **states;     /* distinct state names, sorted (borrowed from the catalog) */
    size_t n_states;
    uint32_t *circuit_state; /* index into states[] for each circuit */
    /* The parts of each /v1/results row that never change, in project id order, rendered
     * once: row k is rows[off[k] .. off[k + 1]). JSON: {"id":..,"name":..,"circuit_id":..,
     * "votes": and CSV: project_id,project_name,circuit_id,circuit_name,state, */
    char *json_rows, *csv_rows;
    size_t *json_off, *csv_off;
};

/* Builds the layout; catalog is borrowed for the layout's life. 0, or -1 when the catalog
 * is inconsistent (a project naming a circuit that does not exist). */
int http_layout_init(struct http_layout *l, const struct http_catalog *cat)
    __attribute__((warn_unused_result));
void http_layout_cleanup(struct http_layout *l);
/* Circuit index for an external circuit id, or -1. */
int64_t http_layout_find_circuit(const struct http_layout *l, uint32_t circuit_id);
/* State index for a name (exact match), or -1. */
int64_t http_layout_find_state(const struct http_layout *l, const char *name);

/* ---- snapshot: one published checkpoint, immutable once built ------------------------- */

enum { HTTP_FLAG_WINNER = 1, HTTP_FLAG_TIE = 2, HTTP_FLAG_BY_LOT = 4, HTTP_FLAG_ELIGIBLE = 8 };

/* Reporting progress of a circuit, a state or the nation (docs/api.md). */
struct http_progress {
    uint64_t tables, tables_reported, electors, electors_reported;
    uint64_t ballots, blank, null_ballots; /* of reported tables */
};

struct http_snap_circuit {
    uint64_t votes;
    uint32_t winners;
    bool tie;        /* a tie straddles the seat boundary: some seats are undecided */
    bool has_margin; /* more eligible projects than seats */
    uint64_t margin; /* votes of the last seat-holder minus the first eligible one without */
    bool decided;    /* src/rules: the votes still possible cannot change the winners */
    struct http_progress progress;
    uint64_t remaining;   /* votes still possible from its tables (unknown: no tables) */
    int64_t corrected_ms; /* the last correction touching it; 0: none */
};

struct http_snap_collector {
    char *id;
    bool connected;
    int64_t last_seen_ms;
    uint64_t durable_seq, applied_seq;
    struct http_totals durable;
};

/* When a resource last changed: a checkpoint id and how many times that id had been
 * published before (0: its first publish; a republish carries fresher collector states). */
struct http_version {
    uint64_t checkpoint;
    uint32_t republish;
};

/* A rendering a snapshot keeps (a big document many pollers ask for), and its gzip once
 * made (gzip.c). body is head then rows: /v1/results?since= answers the same rows under
 * another head, so the rows are compressed apart from the head (a raw deflate stream that
 * gzip.c frames with the head as a stored block). */
struct http_cached {
    /* The snapshot's, and one per evbuffer reference to its bytes: an answer being written
     * to a slow reader keeps this rendering alive, not the whole snapshot. */
    unsigned refs;
    char key[128]; /* the document's ETag opaque-tag */
    char *body;
    size_t len, head_len;
    unsigned char *gz; /* raw deflate of body[head_len .. len), final block included */
    size_t gz_len;
    uint32_t gz_crc;           /* CRC-32 of body[head_len .. len) */
    bool gz_failed;            /* deflate failed: answered plain */
    struct http_gzip_job *job; /* compressing now (it holds a snapshot reference) */
};

#define HTTP_SNAPSHOT_CACHE_MAX 96     /* renderings one snapshot keeps at most */
#define HTTP_SNAPSHOT_CACHE_RESERVED 4 /* ... and essential ones beyond (cache_put) */
#define HTTP_SNAPSHOT_CACHE_BYTES                                                                  \
    (96u << 20) /* ... and bytes of them (the national set of a                                    \
                   36,000-project registry is about 25 MB) */

struct http_snapshot {
    unsigned refs;
    const struct http_layout *layout;
    uint64_t checkpoint;
    int64_t committed_ms;
    uint8_t head_hash[32]; /* the chain's head at this checkpoint; meaningless for id 0 */
    uint64_t writer_epoch;
    struct http_totals totals;
    struct http_status status;
    /* Status changes this server published before this snapshot: part of every event id
     * ("<checkpoint>-<gen>" once not 0), so a stream resumed from before a change is reset
     * even when the checkpoint id is the same. */
    uint32_t status_gen;
    uint32_t republish; /* publishes of this checkpoint id before this one */
    /* The counts. Under embargo (status.embargo) the snapshot is built without them: these
     * five are NULL and each circuit's votes, winners, tie, margin and decided are zero, so
     * a renderer that forgot http_snapshot_has_counts() would crash in the tests rather
     * than leak a figure. */
    uint64_t *votes;  /* dense order */
    uint32_t *rank;   /* dense order; competition ranking within the circuit (1, 2, 2, 4) */
    uint8_t *flags;   /* dense order; HTTP_FLAG_* */
    uint32_t *ranked; /* like layout->members, each circuit's projects in rank order */
    struct http_snap_circuit *circuits;
    uint64_t *state_votes;
    struct http_progress *state_progress;
    struct http_progress progress; /* national */
    uint64_t circuits_decided;
    /* Circuits whose progress, decided flag, corrected_at, winners or ties differ from the
     * previous snapshot's (none for the first one), in circuit id order: the SSE checkpoint
     * event. */
    uint32_t *changed_circuits;
    size_t n_changed_circuits;
    /* The corrections this snapshot made durable, for the SSE correction events (indices
     * into the server's correction log), and how many the log held. */
    size_t corrections_from, corrections_to;
    struct http_snap_collector *collectors;
    size_t n_collectors;
    uint32_t collectors_connected, collectors_reporting;
    /* Per-resource versions (docs/api.md, "Caching"), from the comparison with the previous
     * snapshot: the checkpoint at which each project's row (votes, rank, flags) last
     * changed, and the version of each circuit (anything /v1/circuits/{id} shows), each
     * state (its circuits), the nation's results and the summary. A status change, a
     * checkpoint id that went back or the first snapshot set every one to this snapshot. */
    uint64_t *row_checkpoint; /* dense order */
    struct http_version *circuit_version, *state_version;
    struct http_version results_version, summary_version;
    /* ?since=ID below this answers every row ("full":true): at or before the first
     * snapshot, the last status change, the highest id published before the record went
     * back, or rows changed under a republished id. */
    uint64_t since_min;
    uint64_t max_published; /* the highest checkpoint id this server has published */
    /* Rendered on first use, then kept: the big documents and the SSE reset event. */
    struct http_cached **cache;
    size_t n_cache, cache_bytes, n_essential;
    struct http_cached *reset_event; /* outside the cache (not a document) */
};

/* Copies what it needs from cp (borrowed); layout is borrowed for the snapshot's life.
 * prev (the current snapshot, or NULL) is read for the changed circuits; corrected_ms
 * (n_circuits entries, or NULL) is copied. The new snapshot holds one reference. */
struct http_snapshot *http_snapshot_new(const struct http_layout *layout,
                                        const struct http_checkpoint *cp,
                                        const struct http_snapshot *prev,
                                        const int64_t *corrected_ms);
/* False under embargo: the one question every renderer asks before it writes a count
 * (a project's votes, rank, winner, tie, margin, blank, null, decided). */
static inline bool http_snapshot_has_counts(const struct http_snapshot *s)
{
    return s->votes != NULL;
}
/* True when two statuses differ in anything an output shows. */
bool http_status_differs(const struct http_status *a, const struct http_status *b);
struct http_snapshot *http_snapshot_ref(struct http_snapshot *s);
void http_snapshot_unref(struct http_snapshot *s); /* NULL is a no-op */

/* Appends the cached SSE reset event to out by reference (no copy); the buffer holds a
 * snapshot reference until the bytes are written or dropped. */
void http_snapshot_add_reset_event(struct http_snapshot *s, struct evbuffer *out);
/* Appends len bytes at p (inside e's body or gz) to out by reference, holding a reference
 * to e (not to its snapshot). */
void http_cached_add_bytes(struct http_cached *e, struct evbuffer *out, const void *p, size_t len);
/* The rendering kept under key, or NULL. */
struct http_cached *http_snapshot_cached(struct http_snapshot *s, const char *key);
/* Keeps body (malloc'd, len bytes, its first head_len the head) under key and returns the
 * entry, which owns body from then on; NULL (body not taken) when the snapshot keeps
 * HTTP_SNAPSHOT_CACHE_MAX renderings or HTTP_SNAPSHOT_CACHE_BYTES already. An essential
 * one (the unfiltered results every poller asks for) has HTTP_SNAPSHOT_CACHE_RESERVED more
 * places beyond both limits, so that many filtered renderings never push it out. */
struct http_cached *http_snapshot_cache_put(struct http_snapshot *s, const char *key, char *body,
                                            size_t len, size_t head_len, bool essential);

/* ---- renderers (render.c): pure functions of a snapshot into an evbuffer -------------- */

/* Which projects a results rendering includes; -1 means no filter. With since, only the
 * rows changed after checkpoint since_id (row_checkpoint above it), and the head says
 * "since":since_id (null when since_big: the id asked does not fit 64 bits),"full":full;
 * full keeps every row. */
struct http_filter {
    int64_t state;
    int64_t circuit;
    bool since, since_big, full;
    uint64_t since_id;
};

/* s (NULL as "") as a JSON string literal, escaped by core/json.h. */
void http_json_string(struct evbuffer *out, const char *s);
/* A snapshot's head hash as "<64 lower-case hex digits>", or null (unquoted) for
 * checkpoint 0, which no hash covers. */
void http_json_head_hash(struct evbuffer *out, const struct http_snapshot *s);
/* "2026-11-23T13:40:01.123Z", or "null" (unquoted) when ms is 0. */
void http_json_time(struct evbuffer *out, int64_t ms);
void http_csv_field(struct evbuffer *out, const char *s);

/* /v1/results as JSON or CSV, in one malloc'd block of *len bytes (the caller frees it),
 * whose first *head_len bytes are the head (everything before the first row: the CSV
 * header line; the JSON object up to "projects":[). Copies each row's fixed part from the
 * layout, so a national registry renders in a few milliseconds on the loop. */
char *http_render_results(const struct http_snapshot *s, const struct http_filter *f, bool csv,
                          size_t *len, size_t *head_len);
/* Only the head of that rendering, into out. */
void http_render_results_head(const struct http_snapshot *s, const struct http_filter *f, bool csv,
                              struct evbuffer *out);
/* Fills l->json_rows, csv_rows and their offsets. */
void http_render_layout_rows(struct http_layout *l);
void http_render_summary(const struct http_snapshot *s, struct evbuffer *out);
void http_render_circuits(const struct http_snapshot *s, int64_t state, struct evbuffer *out);
void http_render_circuit(const struct http_snapshot *s, uint32_t circuit, struct evbuffer *out);
void http_render_collectors(const struct http_snapshot *s, struct evbuffer *out);
/* `id: <checkpoint>` or, after a status change, `id: <checkpoint>-<status_gen>`. */
void http_render_event_id(const struct http_snapshot *s, struct evbuffer *out);
/* The SSE events: `event: snapshot` (totals only), `event: checkpoint` (the changed
 * projects) and `event: reset` (every project), each with its id line, ending in a blank
 * line. All three carry the checkpoint, its time, head_hash and the totals. */
void http_render_event_snapshot(const struct http_snapshot *s, struct evbuffer *out);
void http_render_event_checkpoint(const struct http_snapshot *s, const uint32_t *changed,
                                  size_t n_changed, struct evbuffer *out);
void http_render_event_reset(const struct http_snapshot *s, struct evbuffer *out);

/* A progress object {"tables":..,...} (docs/api.md); circuits_decided, when not NULL, is
 * added as a field. Under embargo without blank, null and circuits_decided. */
void http_render_progress(const struct http_snapshot *s, struct evbuffer *out,
                          const struct http_progress *p, const uint64_t *circuits_decided);
/* ,"status":"provisional"|"official","certified_hash":..,"closed":..,"embargo":..,
 * "tie_seed_hash":.. — the consultation's status (/v1/summary and every event). */
void http_render_status(const struct http_snapshot *s, struct evbuffer *out);
void http_render_states(const struct http_snapshot *s, struct evbuffer *out);

/* What /metrics shows besides the hook's figures. */
struct http_metrics_extra {
    const struct http_snapshot *snap; /* may be NULL before the first publish */
    size_t sse_subscribers;
    uint64_t sse_dropped, http_requests;
    uint64_t gzip_jobs;      /* sliced compressions done */
    double gzip_slice_max_s; /* the longest slice */
};
void http_render_metrics(const struct http_metrics *m, const struct http_metrics_extra *x,
                         struct evbuffer *out);

/* ---- progress over time (history.c) --------------------------------------------------- */

#define HTTP_HISTORY_MAX 2048 /* points kept at most */

/* One point per published checkpoint, downsampled when full: points[0] is the first point
 * ever and stays; every other point but the last has an id first + k * stride; the last is
 * the newest checkpoint, whether or not it falls on the stride. */
struct http_history {
    struct http_history_point *points; /* HTTP_HISTORY_MAX */
    size_t n;
    uint64_t stride;
    bool last_kept; /* points[n - 1] falls on the stride: the next point does not replace it */
};

void http_history_init(struct http_history *hist);
void http_history_cleanup(struct http_history *hist);
/* Adds the point of a published checkpoint: the same id as the last point replaces it; an
 * id below the last drops the points from it on first (the record went back). When full,
 * keeps the first point, drops every other one and doubles the stride. */
void http_history_add(struct http_history *hist, const struct http_history_point *p);
/* The points added so far are every stride-th checkpoint from the first (the recovered
 * history, thinned by the record): later points follow that stride, or the history's own
 * if it is larger. */
void http_history_set_stride(struct http_history *hist, uint64_t stride);
/* GET /v1/history: the head, "stride" and "points" (docs/api.md). */
void http_render_history(const struct http_snapshot *s, const struct http_history *hist,
                         struct evbuffer *out);

/* ---- the correction log (corrections.c) ----------------------------------------------- */

/* Every durable correction the server was given, oldest first, each rendered once as JSON,
 * and per circuit the time of the last correction touching it. */
struct http_corrections {
    char **json; /* one object each, no newline */
    size_t *json_len;
    char **json_embargo; /* the same without the count deltas (shown under embargo) */
    size_t *json_embargo_len;
    uint64_t *ids;
    size_t n, cap;
    int64_t *corrected_ms; /* per circuit (n_circuits) */
};

void http_corrections_init(struct http_corrections *c, const struct http_layout *l);
void http_corrections_cleanup(struct http_corrections *c);
/* Copies the entries of cp->corrections past the ones already held (matched by count;
 * an id not above the last one held is logged and skipped). */
void http_corrections_update(struct http_corrections *c, const struct http_layout *l,
                             const struct http_checkpoint *cp);
/* GET /v1/corrections: {"consultation":..,"checkpoint":..,"time":..,"corrections":[newest
 * first]}. */
void http_render_corrections(const struct http_snapshot *s, const struct http_corrections *c,
                             struct evbuffer *out);
/* `id: <checkpoint>` / `event: correction` / `data: <the correction's JSON>` for entries
 * [from, to) of the log. */
void http_render_event_corrections(const struct http_snapshot *s, const struct http_corrections *c,
                                   size_t from, size_t to, struct evbuffer *out);

/* ---- Server-Sent Events hub (events.c) ------------------------------------------------ */

#define HTTP_SSE_RING 512               /* events kept for Last-Event-ID replay */
#define HTTP_SSE_RING_BYTES (32u << 20) /* ... and at most this many bytes of them */
#define HTTP_SSE_MAX_SUBSCRIBERS 1024   /* beyond: 503 */
#define HTTP_SSE_MAX_BACKLOG (8u << 20) /* unsent bytes before a subscriber is dropped */
#define HTTP_SSE_KEEPALIVE_MS 15000     /* ": keepalive" comment interval */
#define HTTP_SSE_WRITE_TIMEOUT_S 30     /* no write progress for this long: dropped */

struct http_sse_blob;
struct http_sse_sub;

struct http_events {
    struct event *keepalive;
    struct http_sse_sub *subs;
    size_t n_subs;
    uint64_t dropped;
    struct {
        uint64_t id;
        struct http_sse_blob *blob;
    } ring[HTTP_SSE_RING];
    size_t ring_head, ring_count, ring_bytes;
    bool started;    /* a snapshot has been published */
    uint64_t floor;  /* every event with an id above floor is in the ring */
    uint64_t latest; /* id of the newest snapshot */
    uint32_t gen;    /* its status_gen: an id of another generation is reset */
};

int http_events_init(struct http_events *ev, struct event_base *base)
    __attribute__((warn_unused_result));
/* Ends every stream (connections are freed by evhttp_free afterwards). */
void http_events_cleanup(struct http_events *ev);
/* A new snapshot was published: records and broadcasts its event. cp is borrowed for the
 * call (its changed list); snap must be the new current snapshot. */
void http_events_publish(struct http_events *ev, struct http_snapshot *snap,
                         const struct http_checkpoint *cp, const struct http_corrections *corr);
/* GET /v1/events: answers 503 beyond the subscriber cap, else starts the stream with a
 * snapshot, a replay or a reset. last_event_id may be NULL. */
void http_events_subscribe(struct http_events *ev, struct evhttp_request *req,
                           struct http_snapshot *snap, const char *last_event_id);

/* A new status was published with snap (the current snapshot): forgets the ring (it may
 * hold counts the new status hides) and sends every subscriber an `event: reset`. */
void http_events_status_changed(struct http_events *ev, struct http_snapshot *snap);

/* Sends a JSON error body {"error": message} with the given status (reply.c). */
void http_reply_error(struct evhttp_request *req, int code, const char *reason,
                      const char *message);
/* evhttp_send_reply(), with a HEAD answer carrying only the length of its body. */
void http_send_reply(struct evhttp_request *req, int code, const char *reason,
                     struct evbuffer *body);

/* ---- receipts (receipts.c) ------------------------------------------------------------ */

/* GET /v1/receipts/<rest>: parses {collector}/{seq}, answers 400 for a malformed one, 503
 * when cb is NULL or refuses, else hands the request to cb and leaves it pending. */
void http_receipts_route(struct evhttp_request *req, const char *rest, http_receipt_cb cb,
                         void *arg);

#endif
