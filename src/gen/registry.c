/* `tally-gen registry`: a consultation's circuits and projects, shaped like Venezuela's
 * 2024 consultations (states + Distrito Capital, ~7 projects per circuit, 1-2 seats), with
 * sparse unordered uint32 ids and Spanish names, some needing CSV quoting. Output only;
 * reading a registry back is in votes.c. */
#include "gen/gen.h"

#include "core/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct state_def {
    const char *name;
    double weight; /* rough population share, for the number of circuits */
};

/* 23 states, the Capital District and the Federal Dependencies: 25 top-level areas. */
static const struct state_def STATES[] = {
    {"Distrito Capital", 1.9},
    {"Zulia", 4.0},
    {"Miranda", 3.0},
    {"Carabobo", 2.3},
    {"Lara", 1.9},
    {"Aragua", 1.8},
    {"Anzoátegui", 1.6},
    {"Bolívar", 1.6},
    {"Táchira", 1.2},
    {"Falcón", 1.0},
    {"Sucre", 0.9},
    {"Mérida", 0.9},
    {"Portuguesa", 0.9},
    {"Monagas", 0.9},
    {"Barinas", 0.9},
    {"Guárico", 0.8},
    {"Trujillo", 0.7},
    {"Yaracuy", 0.6},
    {"Apure", 0.6},
    {"Nueva Esparta", 0.5},
    {"La Guaira", 0.35},
    {"Cojedes", 0.35},
    {"Delta Amacuro", 0.2},
    {"Amazonas", 0.18},
    {"Dependencias Federales", 0.01},
};
#define N_STATES (sizeof STATES / sizeof STATES[0])

static const char *const PLACES[] = {
    "San José",
    "Santa Ana",
    "Los Próceres",
    "La Peña",
    "El Cañón",
    "Las Piñas",
    "Peñalver",
    "Simón Bolívar",
    "Ezequiel Zamora",
    "Negra Hipólita",
    "Guaicaipuro",
    "Cacique Tiuna",
    "Antonio José de Sucre",
    "La Cañada",
    "Los Jabillos",
    "El Morichal",
    "Caño Amarillo",
    "La Montaña",
    "Brisas del Lago",
    "Campo Alegre",
    "Las Acacias",
    "El Güire",
    "Araguaney",
    "Bella Vista",
    "Cañaveral",
    "La Ensenada",
    "Manuelita Sáenz",
    "Josefa Camejo",
    "Luisa Cáceres",
    "Pío Tamayo",
    "Alí Primera",
    "Cumaná",
    "Turmero",
    "Tacarigua",
    "Ñaragua",
    "Los Samanes",
    "El Cují",
    "La Ceiba",
    "Río Chico",
    "Güiria",
};
#define N_PLACES (sizeof PLACES / sizeof PLACES[0])

static const char *const CIRCUIT_KINDS[] = {"Circuito Comunal", "Circuito Comunal",
                                            "Circuito Comunal Agrario", "Circuito Comunal Urbano"};

/* %s is a place name; %u a number. Some hold commas and quotes on purpose. */
static const char *const PROJECTS[] = {
    "Rehabilitación de la cancha deportiva de %s",
    "Construcción de la casa comunal %s",
    "Sustitución de tuberías de aguas blancas, sector %s",
    "Dotación del ambulatorio \"Dr. José Gregorio Hernández\" de %s",
    "Asfaltado de la calle principal, sector %s",
    "Electrificación del sector %s",
    "Recuperación de la escuela \"%s\"",
    "Instalación de paneles solares en %s",
    "Mejoramiento de viviendas, %u familias de %s",
    "Sistema de bombeo de agua potable para %s",
    "Módulo de salud comunitario en %s",
    "Panadería comunitaria \"La Espiga\" de %s",
    "Cultivo organopónico de %s",
    "Reparación del puente peatonal de %s",
    "Alumbrado público con LED, calle %u de %s",
    "Dotación de la biblioteca comunal de %s",
    "Cancha de usos múltiples en %s",
    "Recolección y reciclaje de desechos, %s",
    "Transporte comunal para %s",
    "Techado de la escuela básica de %s",
};
#define N_PROJECTS_KINDS (sizeof PROJECTS / sizeof PROJECTS[0])

/* Largest-remainder split of total into n parts by weight, each part at least 1. */
static void split_by_weight(uint32_t total, const double *w, size_t n, uint32_t *parts)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += w[i];
    uint32_t given = 0;
    double *rem = xcalloc(n, sizeof *rem);
    for (size_t i = 0; i < n; i++) {
        double exact = (double)(total - n) * w[i] / sum;
        parts[i] = 1 + (uint32_t)floor(exact);
        rem[i] = exact - floor(exact);
        given += parts[i];
    }
    while (given < total) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (rem[i] > rem[best])
                best = i;
        parts[best]++;
        rem[best] = -1;
        given++;
    }
    free(rem);
}

static uint32_t fresh_id(struct gen_rng *r, struct gen_u32set *used)
{
    for (;;) {
        /* Sparse over the whole uint32 range (1..2^32-1), so ids above 2^31 are
         * exercised too: a signed 32-bit column somewhere would show here. */
        uint32_t v = (uint32_t)(gen_rng_below(r, 0xffffffffu)) + 1u;
        if (gen_u32set_add(used, v))
            return v;
    }
}

static void project_name(struct gen_rng *r, const char *place, char *out, size_t len)
{
    const char *fmt = PROJECTS[gen_rng_below(r, N_PROJECTS_KINDS)];
    unsigned n = (unsigned)(2 + gen_rng_below(r, 60));
    const char *pct_u = strstr(fmt, "%u");
    const char *pct_s = strstr(fmt, "%s");
    /* The formats are ours; pick the argument order they use. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    if (pct_u && pct_u < pct_s)
        snprintf(out, len, fmt, n, place);
    else
        snprintf(out, len, fmt, place);
#pragma GCC diagnostic pop
}

int gen_registry(const struct gen_registry_opts *o)
{
    int rc = -1;
    struct gen_rng r;
    gen_rng_seed(&r, o->seed, 1);
    uint32_t n_states = o->states, n_circuits = o->circuits, n_projects = o->projects;

    double *sw = xcalloc(n_states, sizeof *sw);
    uint32_t *circuits_of_state = xcalloc(n_states, sizeof *circuits_of_state);
    double *cw = xcalloc(n_circuits, sizeof *cw);
    uint32_t *projects_of_circuit = xcalloc(n_circuits, sizeof *projects_of_circuit);

    for (uint32_t i = 0; i < n_states; i++)
        sw[i] = i < N_STATES ? STATES[i].weight : 1.0;
    split_by_weight(n_circuits, sw, n_states, circuits_of_state);

    /* About projects/circuits per circuit, varying by +-3 around the mean. */
    for (uint32_t i = 0; i < n_circuits; i++)
        cw[i] = 0.6 + gen_rng_unit(&r) * 0.8;
    split_by_weight(n_projects, cw, n_circuits, projects_of_circuit);

    struct gen_u32set circuit_ids, project_ids;
    gen_u32set_init(&circuit_ids, n_circuits);
    gen_u32set_init(&project_ids, n_projects);

    struct gen_out out;
    if (gen_out_open(&out, o->out))
        goto done;
    gen_out_str(&out, "project_id,project_name,circuit_id,circuit_name,state,seats\n");

    uint32_t circuit = 0;
    for (uint32_t s = 0; s < n_states; s++) {
        char state_name[64];
        if (s < N_STATES)
            snprintf(state_name, sizeof state_name, "%s", STATES[s].name);
        else
            snprintf(state_name, sizeof state_name, "Estado %u", s + 1);
        for (uint32_t k = 0; k < circuits_of_state[s]; k++, circuit++) {
            uint32_t cid = fresh_id(&r, &circuit_ids);
            char cname[160];
            const char *kind = CIRCUIT_KINDS[gen_rng_below(&r, 4)];
            const char *p1 = PLACES[gen_rng_below(&r, N_PLACES)];
            uint64_t form = gen_rng_below(&r, 10);
            if (form < 6)
                snprintf(cname, sizeof cname, "%s %s %u", kind, p1, k + 1);
            else if (form < 9)
                snprintf(cname, sizeof cname, "%s %s de %s", kind, p1,
                         PLACES[gen_rng_below(&r, N_PLACES)]);
            else
                snprintf(cname, sizeof cname, "%s %s, eje %u", kind, p1,
                         (unsigned)(1 + gen_rng_below(&r, 9)));
            uint32_t np = projects_of_circuit[circuit];
            uint32_t seats = gen_rng_unit(&r) < 0.3 ? 2 : 1;
            if (seats > np)
                seats = np;
            for (uint32_t p = 0; p < np; p++) {
                char pname[256];
                project_name(&r, PLACES[gen_rng_below(&r, N_PLACES)], pname, sizeof pname);
                gen_out_u64(&out, fresh_id(&r, &project_ids));
                gen_out_char(&out, ',');
                gen_out_csv_field(&out, pname);
                gen_out_char(&out, ',');
                gen_out_u64(&out, cid);
                gen_out_char(&out, ',');
                gen_out_csv_field(&out, cname);
                gen_out_char(&out, ',');
                gen_out_csv_field(&out, state_name);
                gen_out_char(&out, ',');
                gen_out_u64(&out, seats);
                gen_out_char(&out, '\n');
            }
        }
    }
    if (gen_out_close(&out))
        goto done;
    fprintf(stderr, "tally-gen: registry %s: %u states, %u circuits, %u projects\n", o->out,
            n_states, n_circuits, n_projects);
    rc = 0;
done:
    gen_u32set_cleanup(&project_ids);
    gen_u32set_cleanup(&circuit_ids);
    free(projects_of_circuit);
    free(cw);
    free(circuits_of_state);
    free(sw);
    return rc;
}
