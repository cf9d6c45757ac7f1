/* tallyd's configuration: one options table feeds the command line, the configuration file
 * (--config FILE: `name = value` lines named like the long options; the command line
 * overrides the file), validation and --help. */
#ifndef TALLYD_CONFIG_H
#define TALLYD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct tallyd_config {
    char db[1024]; /* libpq conninfo; "" means the PG* environment */
    char listen_host[256];
    uint16_t listen_port;
    char http_host[256];
    uint16_t http_port;
    uint32_t checkpoint_ms;
    uint32_t refresh_ms;
    uint64_t backlog_votes;
    uint32_t max_batch_votes;
    uint32_t max_frame_bytes;
    uint64_t expected_ballots;
    uint32_t shutdown_grace_ms;
    uint32_t min_anonymity;
    int standby;
    int embargo; /* --embargo: start under embargo */
    /* TLS on the collector port: all three or none (then plain TCP, loopback only unless
     * insecure_plaintext). */
    char tls_cert[1024], tls_key[1024], tls_ca[1024];
    int insecure_plaintext;
    char http_tls_cert[1024], http_tls_key[1024]; /* both or none */
    /* Limits on what a peer can make tallyd spend (0: none). */
    uint32_t hello_timeout_ms;
    uint32_t frame_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t max_connections;
    uint64_t max_buffered_bytes;
    int log_level;
    char config_path[1024]; /* "" when there is no configuration file */
    int check_config;
    /* The command line, borrowed (main's argv), so a reload applies it over the file again. */
    int argc;
    char **argv;
};

/* Fills cfg from the configuration file named by --config (if any), then argv. Returns 0 to
 * run; 1 when --help, --version or a successful --check-config was printed (exit 0); or -1
 * after printing the error to stderr (exit 2). */
int tallyd_config_parse(struct tallyd_config *cfg, int argc, char **argv);

/* True when host names only this machine (127.0.0.0/8, ::1, localhost). */
int tallyd_host_is_loopback(const char *host);

/* SIGHUP: reads the configuration file again and applies the same command line over it
 * into next. Returns 0, or -1 with the reason in err (next is then unusable). */
int tallyd_config_reload(const struct tallyd_config *cur, struct tallyd_config *next, char *err,
                         size_t err_len);

/* Calls say(arg, name, live) for each option whose value differs between a and b; live
 * tells whether tallyd applies it without a restart. */
void tallyd_config_diff(const struct tallyd_config *a, const struct tallyd_config *b,
                        void (*say)(void *arg, const char *name, int live), void *arg);

#endif
