/* tallyd's command line: one options table feeds parsing, validation and --help. */
#ifndef TALLYD_CONFIG_H
#define TALLYD_CONFIG_H

#include <stdint.h>

struct tallyd_config {
    const char *db; /* libpq conninfo; "" means the PG* environment */
    char listen_host[256];
    uint16_t listen_port;
    char http_host[256];
    uint16_t http_port;
    uint32_t checkpoint_ms;
    uint64_t backlog_votes;
    uint32_t max_batch_votes;
    uint32_t max_frame_bytes;
    uint64_t expected_ballots;
    uint32_t shutdown_grace_ms;
    uint32_t min_anonymity;
    int standby;
    int log_level;
};

/* Fills cfg from argv. Returns 0 to run, 1 when --help/--version was printed (exit 0),
 * or -1 after printing a usage error to stderr (exit 2). */
int tallyd_config_parse(struct tallyd_config *cfg, int argc, char **argv);

#endif
