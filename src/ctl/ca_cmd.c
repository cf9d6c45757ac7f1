/* tallyctl ca: a private CA for deployments without a PKI of their own, through tls/
 * (OpenSSL's API, no shelling out). Owns the wording of what it made and what to do next;
 * needs no database. */
#include "ctl/cmds.h"
#include "tls/tls.h"

#include <stdio.h>

int cmd_ca_init(const char *dir, const char *const *names, size_t n_names)
{
    char err[512] = "";
    if (tls_ca_init(dir, names, n_names, err, sizeof(err)) < 0) {
        ctl_err("ca init: %s", err[0] ? err : "failed");
        return EXIT_RUNTIME;
    }
    printf("private CA made in %s:\n", dir);
    printf("  %s/ca.crt       the CA certificate: tallyd --tls-ca, and each collector's --tls-ca\n",
           dir);
    printf("  %s/ca.key       the CA's key: keep it off the servers once collectors are issued\n",
           dir);
    printf("  %s/server.crt   tallyd's certificate (localhost, 127.0.0.1, ::1", dir);
    for (size_t i = 0; i < n_names; i++)
        printf(", %s", names[i]);
    printf("): tallyd --tls-cert\n");
    printf("  %s/server.key   its key: tallyd --tls-key\n", dir);
    printf("next, for each collector: tallyctl ca issue %s ID\n", dir);
    return EXIT_OK;
}

int cmd_ca_issue(const char *dir, const char *id)
{
    char err[512] = "", pin[TLS_PIN_HEX] = "";
    if (tls_ca_issue(dir, id, pin, err, sizeof(err)) < 0) {
        ctl_err("ca issue: %s", err[0] ? err : "failed");
        return EXIT_RUNTIME;
    }
    printf("collector %s's certificate: %s/%s.crt, key %s/%s.key\n", id, dir, id, dir, id);
    printf("pin %s\n", pin);
    printf("next: tallyctl add-collector %s --cert %s/%s.crt\n", id, dir, id);
    return EXIT_OK;
}
