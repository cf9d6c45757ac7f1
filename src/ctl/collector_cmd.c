/* tallyctl's collector commands: add-collector (certificate pin, circuits), disable- and
 * enable-collector, and the collectors listing. Owns their output and wording; the SQL is
 * the store's (admin.c), circuit lists are ctl/collectors.c's. */
#include "ctl/cmds.h"
#include "ctl/collectors.h"
#include "ctl/text.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIN_HEX (2 * STORE_PIN_BYTES + 1)

static void pin_hex(const uint8_t *pin, char out[PIN_HEX])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < STORE_PIN_BYTES; i++) {
        out[2 * i] = digits[pin[i] >> 4];
        out[2 * i + 1] = digits[pin[i] & 15];
    }
    out[2 * STORE_PIN_BYTES] = '\0';
}

static bool same_circuits(const struct store_collector *a, const struct store_collector *b)
{
    return a->restricted == b->restricted && a->n_circuits == b->n_circuits &&
           (a->n_circuits == 0 ||
            memcmp(a->circuits, b->circuits, a->n_circuits * sizeof(*a->circuits)) == 0);
}

int cmd_add_collector(struct store *s, const struct ctl_add_collector *a, const uint8_t *pin)
{
    struct store_collector before, after;
    int had = store_collector_get(s, a->id, &before);
    if (had < 0) {
        ctl_err("add-collector: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    struct store_collector_spec spec = {
        .id = a->id,
        .pin = pin,
        .restrict_circuits = a->restrict_circuits,
        .circuits = a->circuits,
        .n_circuits = a->n_circuits,
        .state = a->state,
        .every_circuit = a->every_circuit,
    };
    bool created;
    if (store_collector_add(s, &spec, &created) < 0) {
        ctl_err("add-collector %s: %s", a->id, store_last_error(s));
        free(before.circuits); /* NULL when it did not exist: get zeroes it */
        return EXIT_RUNTIME;
    }
    int got = store_collector_get(s, a->id, &after);
    if (got != 1) {
        ctl_err("add-collector %s: reading it back: %s", a->id,
                got < 0 ? store_last_error(s) : "it is gone");
        free(before.circuits);
        free(after.circuits);
        return EXIT_RUNTIME;
    }
    char hex[PIN_HEX], old_hex[PIN_HEX], circuits[256];
    if (after.has_pin)
        pin_hex(after.pin, hex);
    ctl_circuits_format(after.restricted, after.circuits, after.n_circuits, 20, circuits,
                        sizeof(circuits));
    if (created) {
        printf("collector %s added\n", a->id);
        if (after.has_pin)
            printf("  certificate pin %s\n", hex);
        if (after.restricted)
            printf("  circuits %s\n", circuits);
    } else {
        bool pin_changed = after.has_pin &&
                           (!before.has_pin || memcmp(before.pin, after.pin, STORE_PIN_BYTES) != 0);
        bool circuits_changed = !same_circuits(&before, &after);
        if (!pin_changed && !circuits_changed) {
            printf("collector %s already registered; nothing changed\n", a->id);
        } else {
            if (pin_changed && before.has_pin) {
                pin_hex(before.pin, old_hex);
                printf("collector %s: certificate pin replaced: was %s, now %s (the old "
                       "certificate is refused from its next Hello on)\n",
                       a->id, old_hex, hex);
            } else if (pin_changed) {
                printf("collector %s: certificate pinned: %s\n", a->id, hex);
            }
            if (circuits_changed)
                printf("collector %s: circuits now %s\n", a->id, circuits);
        }
    }
    free(before.circuits);
    free(after.circuits);
    return EXIT_OK;
}

int cmd_set_disabled(struct store *s, const char *id, bool disabled)
{
    const char *cmd = disabled ? "disable-collector" : "enable-collector";
    int rc = store_collector_set_disabled(s, id, disabled);
    if (rc < 0) {
        ctl_err("%s: %s", cmd, store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (rc == 1)
        printf("collector %s was already %s; nothing changed\n", id,
               disabled ? "disabled" : "enabled");
    else if (disabled)
        printf("collector %s disabled: refused from its next Hello on; a running tallyd drops "
               "its session when it next reads the collectors\n",
               id);
    else
        printf("collector %s enabled\n", id);
    return EXIT_OK;
}

static void collectors_text(const struct store_collector *c, size_t n)
{
    printf("%-24s %-16s %-8s %12s  %s\n", "collector", "pin", "disabled", "durable_seq",
           "circuits");
    for (size_t i = 0; i < n; i++) {
        char hex[PIN_HEX], circuits[256];
        if (c[i].has_pin)
            pin_hex(c[i].pin, hex);
        else
            snprintf(hex, sizeof(hex), "-");
        hex[16] = '\0'; /* the first 16 hex digits tell certificates apart */
        ctl_circuits_format(c[i].restricted, c[i].circuits, c[i].n_circuits, 12, circuits,
                            sizeof(circuits));
        printf("%-24s %-16s %-8s %12" PRIu64 "  %s\n", c[i].id, hex, c[i].disabled ? "yes" : "no",
               c[i].durable_seq, circuits);
    }
}

static void collectors_json(const struct store_collector *c, size_t n)
{
    fputs("{\"collectors\": [", stdout);
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  {\"id\": ", i ? "," : "");
        ctl_json_write_string(stdout, c[i].id);
        if (c[i].has_pin) {
            char hex[PIN_HEX];
            pin_hex(c[i].pin, hex);
            printf(", \"pin\": \"%s\"", hex);
        } else {
            fputs(", \"pin\": null", stdout);
        }
        printf(", \"disabled\": %s, \"durable_seq\": %" PRIu64 ", \"circuits\": ",
               c[i].disabled ? "true" : "false", c[i].durable_seq);
        if (!c[i].restricted) {
            fputs("null", stdout);
        } else {
            fputc('[', stdout);
            for (size_t k = 0; k < c[i].n_circuits; k++)
                printf("%s%" PRIu32, k ? ", " : "", c[i].circuits[k]);
            fputc(']', stdout);
        }
        fputc('}', stdout);
    }
    printf("%s]}\n", n ? "\n" : "");
}

int cmd_collectors(struct store *s, const char *format)
{
    struct store_collector *c = NULL;
    size_t n = 0;
    if (store_collectors_list(s, &c, &n) < 0) {
        ctl_err("collectors: %s", store_last_error(s));
        return EXIT_RUNTIME;
    }
    if (strcmp(format, "json") == 0)
        collectors_json(c, n);
    else
        collectors_text(c, n);
    store_collectors_free(c, n);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("collectors: writing output: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    return EXIT_OK;
}
