/* tally-push's command line and configuration file (options.c): one options table feeds
 * getopt_long, the file and --help. main.c runs what they ask for. */
#ifndef PUSH_OPTIONS_H
#define PUSH_OPTIONS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "tally/client.h"
#include "tally/protocol.h"

/* push_options_parse: --help or --version was printed, exit 0. */
#define PUSH_OPTIONS_DONE (-1)

/* One address of --server. */
struct push_server {
    char host[256];
    uint16_t port;
    char text[300]; /* as given, for messages */
};

/* Strings are copies: a configuration file's values live only while it is read. */
struct push_options {
    struct push_server servers[TALLY_CLIENT_SERVERS_MAX]; /* --server A,B,...: in this order */
    size_t n_servers;                                     /* 0: not given */
    char collector[TALLY_COLLECTOR_ID_MAX + 1];
    char spool[PATH_MAX];
    char key_file[PATH_MAX]; /* "" for the demo key */
    char tls_cert[PATH_MAX]; /* the three TLS files: all "" for plain TCP */
    char tls_key[PATH_MAX];
    char tls_ca[PATH_MAX];
    char tls_server_name[256]; /* "": the host of --server */
    uint32_t batch;
    bool quiet;
    const char *input;  /* "-" for stdin; the command line only */
    const char *sheets; /* --sheets FILE, NULL for votes; the command line only */
    const char *config; /* --config FILE, NULL for none */
    bool check_config;
    /* --verify-receipts (the command line only) and its settings. */
    bool verify_receipts;
    struct push_server http; /* --http HOST:PORT, tallyd's HTTP port; port 0: not given */
    uint8_t head[32];        /* --head HASH */
    bool has_head;
    char http_tls_ca[PATH_MAX]; /* "": plain HTTP */
};

/* Defaults, then the --config file, then the command line, checked together. Returns 0,
 * PUSH_OPTIONS_DONE, or PUSH_EXIT_USAGE after saying why on stderr. The strings input,
 * sheets and config point into argv. */
int push_options_parse(int argc, char **argv, struct push_options *o);

#endif
