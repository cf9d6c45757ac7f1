/* One seed's world and its schedule: the configuration and the truth (every batch each
 * collector will spool) drawn from the seed, then steps that each pick one enabled event
 * (deliveries, sends, reconnects, checkpoints, and while faults last: crashes, cuts, drops,
 * duplicates, reorders, stalls), then a heal that runs without faults to quiescence and a
 * final check. Nothing here decides whether the outcome is right: sim_check.c does. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire/digest.h"

/* ---- randomness: xoshiro256**, seeded by splitmix64 ----------------------------------- */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sim_rand(struct sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static void rng_seed(struct sim_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        r->s[i] = z ^ (z >> 31);
    }
}

uint64_t sim_below(struct sim *s, uint64_t n)
{
    return n ? sim_rand(&s->rng) % n : 0;
}

bool sim_chance(struct sim *s, unsigned per_mille)
{
    return sim_below(s, 1000) < per_mille;
}

/* ---- the seed's world ------------------------------------------------------------------ */

static void make_config(struct sim *s)
{
    struct sim_config *cfg = &s->cfg;
    cfg->n_coll = 1 + (int)sim_below(s, SIM_MAX_COLL);
    cfg->n_projects = 1 + (int)sim_below(s, SIM_MAX_PROJECTS - 2);
    for (int i = 0; i < cfg->n_projects; i++) {
        uint32_t id;
        bool again;
        do { /* ids unique, sparse; 1001.. are kept for projects the registry lacks */
            id = (uint32_t)sim_below(s, 1000);
            again = false;
            for (int k = 0; k < i; k++)
                again |= cfg->project_ids[k] == id;
        } while (again);
        cfg->project_ids[i] = id;
        cfg->circuit_of[i] = (uint32_t)sim_below(s, 3);
    }
    cfg->fault_steps = 40 + (int)sim_below(s, 360);
    cfg->expected_ballots = 1 + (size_t)sim_below(s, 64);
    /* Calm seeds and stormy ones. */
    unsigned storm = 1 + (unsigned)sim_below(s, 4);
    cfg->w_crash = storm * (unsigned)sim_below(s, 4);
    cfg->w_ccrash = storm * (unsigned)sim_below(s, 4);
    cfg->w_cut = storm * (unsigned)sim_below(s, 5);
    cfg->w_drop = storm * (unsigned)sim_below(s, 4);
    cfg->w_dup = storm * (unsigned)sim_below(s, 5);
    cfg->w_reorder = storm * (unsigned)sim_below(s, 5);
    cfg->w_stall = storm * (unsigned)sim_below(s, 3);
}

struct votes_plan {
    uint64_t pool[SIM_MAX_TOKENS]; /* ballots drawn so far */
    size_t n_pool;
    unsigned reuse, unknown; /* per mille */
};

/* Votes: some ballots come back (in the same collector or another, for the same project or
 * another), some projects are unknown to the registry. */
static void make_batch(struct sim *s, struct votes_plan *vp, struct sim_batch *b, uint64_t seq)
{
    b->n = sim_chance(s, 50) ? 0 : 1 + (uint32_t)sim_below(s, SIM_MAX_VOTES);
    for (uint32_t v = 0; v < b->n; v++) {
        if (vp->n_pool && sim_chance(s, vp->reuse)) {
            b->ballots[v] = vp->pool[sim_below(s, vp->n_pool)];
        } else {
            b->ballots[v] = sim_chance(s, 20) ? 0 : sim_rand(&s->rng);
            vp->pool[vp->n_pool++] = b->ballots[v];
        }
        b->projects[v] = sim_chance(s, vp->unknown)
                             ? 1001 + (uint32_t)sim_below(s, 3)
                             : s->cfg.project_ids[sim_below(s, (uint64_t)s->cfg.n_projects)];
        s->st.votes++;
    }
    for (size_t k = 0; k < SIM_NONCE; k++)
        b->nonce[k] = (uint8_t)sim_rand(&s->rng);
    wire_batch_digest(seq, b->nonce, SIM_NONCE, b->ballots, b->projects, b->n, b->digest);
}

static void make_truth(struct sim *s)
{
    static struct votes_plan vp;
    vp.n_pool = 0;
    vp.reuse = (unsigned)sim_below(s, 500);
    vp.unknown = (unsigned)sim_below(s, 200);
    uint32_t ids[SIM_MAX_COLL];
    for (int c = 0; c < s->cfg.n_coll; c++) {
        struct sim_collector *col = &s->coll[c];
        bool again;
        do { /* random names: ORDER BY id gives tally indices unlike the sim's */
            ids[c] = (uint32_t)sim_below(s, 100);
            again = false;
            for (int k = 0; k < c; k++)
                again |= ids[k] == ids[c];
        } while (again);
        snprintf(col->id, sizeof(col->id), "k%02u", ids[c]);
        snprintf(col->name, sizeof(col->name), "%s", col->id);
        col->twin_of = -1;
        col->n_gen = 1 + (int)sim_below(s, SIM_MAX_BATCHES);
        col->restricted = sim_chance(s, 200);
        col->circuits_mask = (uint32_t)sim_below(s, 8);
        col->window = 1 + (uint32_t)sim_below(s, 4);
        for (int i = 0; i < col->n_gen; i++)
            make_batch(s, &vp, &col->gen[i], (uint64_t)i + 1);
    }
    /* Now and then a second process on the first collector's id: a copy of its spool (the
     * first k batches, nonces and all) that goes on spooling batches of its own. */
    if (s->cfg.n_coll < SIM_MAX_COLL && sim_chance(s, 80)) {
        struct sim_collector *own = &s->coll[0], *tw = &s->coll[s->cfg.n_coll++];
        memcpy(tw->id, own->id, sizeof(tw->id));
        snprintf(tw->name, sizeof(tw->name), "%s'", own->id);
        tw->twin_of = 0;
        int k = (int)sim_below(s, (uint64_t)own->n_gen + 1);
        memcpy(tw->gen, own->gen, (size_t)k * sizeof(own->gen[0]));
        tw->n_gen = k + (int)sim_below(s, (uint64_t)(SIM_MAX_BATCHES - k) + 1);
        if (tw->n_gen == 0)
            tw->n_gen = 1;
        tw->window = 1 + (uint32_t)sim_below(s, 4);
        for (int i = k; i < tw->n_gen; i++)
            make_batch(s, &vp, &tw->gen[i], (uint64_t)i + 1);
    }
    for (int c = 0; c < s->cfg.n_coll; c++) {
        struct sim_collector *col = &s->coll[c];
        col->next_seq = 1;
        col->durable_seq = 0;
        col->state = CS_IDLE;
        col->conn = -1;
    }
}

/* ---- events ---------------------------------------------------------------------------- */

enum act {
    A_C2S,      /* tallyd reads the next frame of a connection */
    A_S2C,      /* a collector reads the next frame */
    A_SRV_EOF,  /* tallyd sees the collector closed */
    A_CLI_EOF,  /* a collector sees tallyd closed */
    A_SEND,     /* a collector writes its next batch */
    A_CONNECT,  /* a collector dials */
    A_APPEND,   /* a collector spools a new batch */
    A_SEAL,     /* the checkpoint tick */
    A_COMMIT,   /* the store thread's COMMIT answered */
    A_RESTART,  /* tallyd starts again (recovery) */
    A_CRESTART, /* a collector starts again on its spool */
    A_CRASH,    /* faults from here on */
    A_STOP,
    A_CCRASH,
    A_CUT,
    A_DROP,
    A_DUP,
    A_REORDER,
    A_STALL,
};

struct cand {
    uint8_t act;
    int8_t arg;
    uint16_t w;
};

static int add(struct cand *v, int n, enum act a, int arg, unsigned w)
{
    if (w) {
        v[n].act = (uint8_t)a;
        v[n].arg = (int8_t)arg;
        v[n].w = (uint16_t)w;
        n++;
    }
    return n;
}

/* The real stall timer fires only when an answer is owed and none will come; the
 * keep-alive Ping (every third of tallyd's idle timeout, 120 s by default) finds a dead path
 * even when none is owed: its answer never comes. */
static bool stalled(const struct sim *s, int c)
{
    const struct sim_collector *col = &s->coll[c];
    const struct sim_conn *k = &s->conns[col->conn];
    if ((k->s2c_dead || k->c2s_dead) && k->s2c.n == 0 && k->c2s.n == 0)
        return true;
    if (!sim_collector_owes(s, c) && col->state != CS_HELLO)
        return false;
    return k->c2s.n == 0 && k->s2c.n == 0 && k->server_open;
}

static int candidates(struct sim *s, struct cand *v)
{
    const struct sim_config *cfg = &s->cfg;
    bool f = !s->healing;
    int n = 0;
    for (int i = 0; i < SIM_MAX_CONNS; i++) {
        const struct sim_conn *k = &s->conns[i];
        if (!k->used)
            continue;
        n = add(v, n, A_C2S, i, k->c2s.n && k->server_open ? 40 : 0);
        n = add(v, n, A_S2C, i, k->s2c.n && k->client_open ? 40 : 0);
        n = add(v, n, A_SRV_EOF, i, k->server_open && !k->client_open && !k->c2s.n ? 10 : 0);
        n = add(v, n, A_CLI_EOF, i, k->client_open && !k->server_open && !k->s2c.n ? 10 : 0);
        if (!f)
            continue;
        n = add(v, n, A_CUT, i, cfg->w_cut);
        n = add(v, n, A_DROP, i, k->c2s.n || k->s2c.n ? cfg->w_drop : 0);
        n = add(v, n, A_DUP, i, k->c2s.n || k->s2c.n ? cfg->w_dup : 0);
        n = add(v, n, A_REORDER, i, k->c2s.n > 1 || k->s2c.n > 1 ? cfg->w_reorder : 0);
    }
    for (int c = 0; c < cfg->n_coll; c++) {
        const struct sim_collector *col = &s->coll[c];
        bool up = col->state > CS_DOWN;
        n = add(v, n, A_SEND, c,
                col->state == CS_READY && col->send_seq < col->next_seq &&
                        col->send_seq - 1 - col->acked_seq < col->window
                    ? 30
                    : 0);
        n = add(v, n, A_CONNECT, c, col->state == CS_IDLE ? (s->srv.up ? 10 : 2) : 0);
        n = add(v, n, A_APPEND, c, up && col->next_seq <= (uint64_t)col->n_gen ? 8 : 0);
        n = add(v, n, A_CRESTART, c, col->state == CS_DOWN ? 20 : 0);
        if (col->state >= CS_HELLO && stalled(s, c))
            n = add(v, n, A_STALL, c, f ? 1 + cfg->w_stall : 20);
        else if (f && (col->state == CS_HELLO || sim_collector_owes(s, c)))
            n = add(v, n, A_STALL, c, cfg->w_stall); /* a timeout that fires too early */
        n = add(v, n, A_CCRASH, c, f && up ? cfg->w_ccrash : 0);
    }
    bool up = s->srv.up;
    n = add(v, n, A_SEAL, 0, up && !s->srv.inflight && tally_has_pending(s->srv.t) ? 8 : 0);
    n = add(v, n, A_COMMIT, 0, up && s->srv.inflight ? 8 : 0);
    n = add(v, n, A_RESTART, 0, up ? 0 : 20);
    /* Kills land between seal and COMMIT more often than time alone would put them. */
    n = add(v, n, A_CRASH, 0, f && up ? cfg->w_crash * (s->srv.inflight ? 4 : 1) : 0);
    n = add(v, n, A_STOP, 0, f && up ? (cfg->w_crash + 1) / 2 : 0);
    return n;
}

static struct sim_msg pop(struct sim_queue *q, int at)
{
    struct sim_msg m = q->m[at];
    memmove(q->m + at, q->m + at + 1, (size_t)(q->n - at - 1) * sizeof(*q->m));
    q->n--;
    return m;
}

static void cut(struct sim *s, int i)
{
    struct sim_conn *k = &s->conns[i];
    s->st.cuts++;
    switch (sim_below(s, 3)) {
    case 0: /* the collector gives up on it */
        if (k->client_open)
            sim_collector_close(s, k->coll, "cut");
        break;
    case 1: /* tallyd drops it (a timeout, a reset it saw) */
        SIM_EV(s, "tallyd: drops conn %u", k->id);
        sim_server_close(s, i);
        break;
    default: /* a reset in the middle: each direction loses its tail */
        SIM_EV(s, "conn %u: reset", k->id);
        k->c2s.n = (int)sim_below(s, (uint64_t)k->c2s.n + 1);
        k->s2c.n = (int)sim_below(s, (uint64_t)k->s2c.n + 1);
        sim_server_close(s, i); /* the collector learns of it at EOF */
        break;
    }
}

/* A frame lost, and with it the path: the collector notices by its stall timer (an answer
 * is owed) or by the keep-alive Ping going unanswered. */
static void drop(struct sim *s, int i)
{
    struct sim_conn *k = &s->conns[i];
    s->st.drops++;
    bool up = k->c2s.n && (!k->s2c.n || sim_chance(s, 500));
    struct sim_queue *q = up ? &k->c2s : &k->s2c;
    int at = (int)sim_below(s, (uint64_t)q->n);
    SIM_EV(s, "conn %u: frames %s from %d of %d lost, path dead", k->id,
           up ? "to tallyd" : "to the collector", at, q->n);
    q->n = at;
    if (up)
        k->c2s_dead = true;
    else
        k->s2c_dead = true;
}

static void dup(struct sim *s, int i)
{
    struct sim_conn *k = &s->conns[i];
    struct sim_queue *q = k->c2s.n && (!k->s2c.n || sim_chance(s, 500)) ? &k->c2s : &k->s2c;
    if (q->n == SIM_QUEUE)
        return;
    int at = (int)sim_below(s, (uint64_t)q->n);
    if (q->m[at].kind != M_BATCH && q->m[at].kind != M_ACK)
        return;
    memmove(q->m + at + 1, q->m + at, (size_t)(q->n - at) * sizeof(*q->m));
    q->n++;
    s->st.dups++;
    SIM_EV(s, "conn %u: %s seq %llu duplicated", k->id, q == &k->c2s ? "batch" : "ack",
           (unsigned long long)q->m[at].seq);
}

static void reorder(struct sim *s, int i)
{
    struct sim_conn *k = &s->conns[i];
    struct sim_queue *q = k->c2s.n > 1 && (k->s2c.n < 2 || sim_chance(s, 500)) ? &k->c2s : &k->s2c;
    if (q->n < 2)
        return;
    int at = (int)sim_below(s, (uint64_t)q->n - 1);
    struct sim_msg m = q->m[at];
    q->m[at] = q->m[at + 1];
    q->m[at + 1] = m;
    s->st.reorders++;
    SIM_EV(s, "conn %u: %s swapped at %d", k->id, q == &k->c2s ? "to tallyd" : "to collector", at);
}

static void perform(struct sim *s, const struct cand *a)
{
    int i = a->arg;
    struct sim_conn *k = &s->conns[i < SIM_MAX_CONNS && i >= 0 ? i : 0];
    switch ((enum act)a->act) {
    case A_C2S: {
        struct sim_msg m = pop(&k->c2s, 0);
        sim_server_receive(s, i, &m);
        break;
    }
    case A_S2C: {
        struct sim_msg m = pop(&k->s2c, 0);
        sim_collector_receive(s, i, &m);
        break;
    }
    case A_SRV_EOF:
        SIM_EV(s, "tallyd: EOF on conn %u", k->id);
        sim_server_close(s, i);
        break;
    case A_CLI_EOF:
        sim_collector_close(s, k->coll, "EOF");
        break;
    case A_SEND:
        sim_collector_send(s, i);
        break;
    case A_CONNECT:
        sim_collector_connect(s, i);
        break;
    case A_APPEND:
        SIM_EV(s, "%s: spool batch %llu (%u votes)", s->coll[i].name,
               (unsigned long long)s->coll[i].next_seq, s->coll[i].gen[s->coll[i].next_seq - 1].n);
        s->coll[i].next_seq++;
        break;
    case A_SEAL:
        sim_server_seal(s);
        break;
    case A_COMMIT:
        sim_server_commit(s);
        break;
    case A_RESTART:
        sim_server_start(s);
        break;
    case A_CRESTART:
        sim_collector_restart(s, i);
        break;
    case A_CRASH:
        sim_server_crash(s);
        break;
    case A_STOP:
        sim_server_stop(s);
        break;
    case A_CCRASH:
        SIM_EV(s, "%s: killed", s->coll[i].name);
        sim_collector_crash(s, i);
        break;
    case A_CUT:
        cut(s, i);
        break;
    case A_DROP:
        drop(s, i);
        break;
    case A_DUP:
        dup(s, i);
        break;
    case A_REORDER:
        reorder(s, i);
        break;
    case A_STALL:
        s->st.stalls++;
        sim_collector_close(s, i, "stall timeout");
        break;
    }
}

/* Both sides closed and nothing left to read: the slot is free again. */
static void reap(struct sim *s)
{
    for (int i = 0; i < SIM_MAX_CONNS; i++) {
        struct sim_conn *k = &s->conns[i];
        if (!k->used)
            continue;
        if (!k->client_open)
            k->s2c.n = 0;
        if (!k->server_open)
            k->c2s.n = 0;
        if (!k->client_open && !k->server_open)
            k->used = false;
    }
}

static bool quiescent(const struct sim *s)
{
    if (!s->srv.up || s->srv.inflight || tally_has_pending(s->srv.t))
        return false;
    for (int c = 0; c < s->cfg.n_coll; c++) {
        const struct sim_collector *col = &s->coll[c];
        if (col->state != CS_FATAL &&
            (col->next_seq <= (uint64_t)col->n_gen || col->durable_seq != (uint64_t)col->n_gen))
            return false;
    }
    return true;
}

/* One event; false when none can happen (then everything must be durable). */
static bool step(struct sim *s)
{
    struct cand v[SIM_MAX_CONNS * 8 + SIM_MAX_COLL * 8 + 8];
    int n = candidates(s, v);
    if (n == 0) {
        if (!quiescent(s))
            sim_fail(s, "nothing can happen, yet not everything is durable");
        return false;
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += v[i].w;
    uint64_t r = sim_below(s, total);
    int pick = 0;
    while (r >= v[pick].w)
        r -= v[pick++].w;
    s->step++;
    s->st.steps++;
    perform(s, &v[pick]);
    reap(s);
    return true;
}

int sim_run(struct sim *s, uint64_t seed, long fault_steps, enum sim_bug bug, bool lean, bool trace)
{
    char(*lines)[160] = s->lines;
    tally_free(s->srv.t); /* s is zeroed before its first run */
    memset(s, 0, sizeof(*s));
    s->lines = lines;
    s->seed = seed;
    s->bug = bug;
    s->lean = lean;
    s->trace = trace;
    if (trace && !s->lines)
        s->lines = calloc(SIM_MAX_TRACE, sizeof(*s->lines));
    rng_seed(&s->rng, seed);
    make_config(s);
    make_truth(s);
    if (fault_steps >= 0 && fault_steps < s->cfg.fault_steps)
        s->cfg.fault_steps = (int)fault_steps;
    for (int c = 0; c < SIM_MAX_COLL; c++)
        s->srv.conn_of[c] = -1;
    sim_server_start(s);
    while (!s->violation[0] && s->step < s->cfg.fault_steps && step(s))
        ;
    s->healing = true;
    SIM_EV(s, "---- heal: no more faults ----");
    long heal_end = s->step + SIM_HEAL_STEPS;
    while (!s->violation[0] && !quiescent(s) && s->step < heal_end)
        step(s);
    if (!s->violation[0] && !quiescent(s))
        sim_fail(s, "not quiescent after %d steps without faults", SIM_HEAL_STEPS);
    if (!s->violation[0])
        sim_check_final(s);
    return s->violation[0] ? -1 : 0;
}

void sim_cleanup(struct sim *s)
{
    tally_free(s->srv.t);
    s->srv.t = NULL;
    free(s->lines);
    s->lines = NULL;
}
