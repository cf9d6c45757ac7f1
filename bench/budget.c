/* The slow peers' share of the run (Redis, PostgreSQL-direct): they get the prefix of the
 * workload --peer-votes names and stop sending at --peer-seconds; this file turns what they
 * got through into their figures (votes, rate) and the part of the ground truth they are
 * checked against. It runs nothing itself. */
#include "bench.h"

#include <stdlib.h>

void peer_part_done(struct bench_ctx *c, struct peer_result *r, const size_t *ops_done, double t0,
                    double t_end, struct wl_part *p)
{
    wl_part_make(c->w, ops_done, p);
    r->votes = p->n_votes;
    r->part = !p->whole;
    r->wall_s = t_end - t0;
    r->votes_per_s = r->wall_s > 0 ? (double)p->n_votes / r->wall_s : 0;
    if (r->wall_s < 10 && p->n_votes > 0 && c->w->n_votes >= 10000000)
        progress(r->name,
                 "note: ran %.1f s only, under the 10 s a figure should have: raise "
                 "--peer-votes (%llu) or --peer-seconds",
                 r->wall_s, (unsigned long long)c->o->peer_votes);
}

void sb_part(struct sbuf *b, const struct bench_ctx *c, const struct wl_part *p,
             const size_t *ops_done)
{
    const struct workload *w = c->w;
    bool budget = false; /* stopped by the clock before the end of its prefix */
    bool prefix = false; /* its prefix was less than the workload */
    for (size_t k = 0; k < w->n_collectors; k++) {
        if (ops_done[k] < c->ops_limit[k])
            budget = true;
        if (c->ops_limit[k] < w->collectors[k].n_ops)
            prefix = true;
    }
    sb_printf(b,
              ", \"workload_part\": {\"whole\": %s, \"stopped_by\": \"%s\", \"votes\": %llu, "
              "\"distinct_ballots\": %llu, \"repeated_votes\": %llu, \"batches\": %llu, "
              "\"retransmitted_batches\": %llu, \"peer_seconds\": %g, \"peer_votes\": %llu}",
              p->whole ? "true" : "false",
              budget   ? "peer_seconds"
              : prefix ? "peer_votes"
                       : "end",
              (unsigned long long)p->n_votes, (unsigned long long)p->n_distinct,
              (unsigned long long)p->n_duplicate, (unsigned long long)p->n_batches,
              (unsigned long long)p->n_retransmits, c->o->peer_seconds,
              (unsigned long long)c->o->peer_votes);
}
