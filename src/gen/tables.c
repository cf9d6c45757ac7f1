/* `tally-gen tables`: the voting tables of a registry's circuits (table_id,circuit_id,
 * electors), the input of `tallyctl load-tables`. Output only; reading tables back is
 * read.c's, and which tables report how is decided by votes_tables.c. */
#include "gen/gen.h"

#include <math.h>
#include <stdio.h>

int gen_tables(const struct gen_tables_opts *o)
{
    struct gen_reg reg;
    if (gen_reg_load(o->registry, &reg))
        return -1;
    struct gen_rng r;
    gen_rng_seed(&r, o->seed, 3);
    struct gen_out out;
    int rc = -1;
    if (gen_out_open(&out, o->out))
        goto done;
    gen_out_str(&out, "table_id,circuit_id,electors\n");
    uint64_t electors = 0, n = 0;
    for (size_t c = 0; c < reg.n_circuits; c++) {
        uint32_t cid = reg.circuit_ids[c];
        for (uint32_t k = 1; k <= o->tables_per_circuit; k++) {
            /* Within +-25 % of the mean: tables of one centre differ a little. */
            double e = o->electors_per_table * (0.75 + 0.5 * gen_rng_unit(&r));
            uint64_t v = (uint64_t)llround(e);
            if (v > INT32_MAX)
                v = INT32_MAX;
            gen_out_char(&out, 'T');
            gen_out_u64(&out, cid);
            gen_out_char(&out, '-');
            gen_out_u64(&out, k);
            gen_out_char(&out, ',');
            gen_out_u64(&out, cid);
            gen_out_char(&out, ',');
            gen_out_u64(&out, v);
            gen_out_char(&out, '\n');
            electors += v;
            n++;
        }
    }
    if (gen_out_close(&out))
        goto done;
    fprintf(stderr, "tally-gen: tables %s: %llu tables in %zu circuits, %llu electors\n", o->out,
            (unsigned long long)n, reg.n_circuits, (unsigned long long)electors);
    rc = 0;
done:
    gen_reg_cleanup(&reg);
    return rc;
}
