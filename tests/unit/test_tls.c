/* Unit tests for the tls library: the private CA's files and certificates (modes, refusal to
 * overwrite, extensions, serials, validity), pins against the openssl command, server
 * contexts and their error messages, and real TLS 1.3 handshakes in memory over a BIO pair
 * (the collector certificate accepted, a foreign CA's refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

struct fixture {
    char dir[64];
    char path[256];
};

static const char *fpath(struct fixture *f, const char *name)
{
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    return f->path;
}

static int setup_ca(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256] = "";
    static const char *const names[] = {"tally.example", "10.0.0.5", "fd00::7"};
    snprintf(f->dir, sizeof f->dir, "/tmp/test_tls.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    /* The CA below a fresh subdirectory, so that init also creates DIR. */
    strcat(f->dir, "/ca");
    if (tls_ca_init(f->dir, names, 3, err, sizeof err) != 0) {
        fprintf(stderr, "tls_ca_init: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown_ca(void **state)
{
    struct fixture *f = *state;
    char cmd[200];
    char *slash = strrchr(f->dir, '/');
    *slash = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static X509 *load_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, fp);
    fclose(fp);
    buf[n] = '\0';
    return buf;
}

static bool have_openssl(void)
{
    return system("command -v openssl >/dev/null 2>&1") == 0;
}

/* Whole-days span of a certificate's validity. */
static int validity_days(X509 *x)
{
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    return days;
}

static bool san_has(X509 *x, int type, const void *val, size_t len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != type)
            continue;
        ASN1_STRING *s = type == GEN_DNS ? g->d.dNSName : g->d.iPAddress;
        found =
            (size_t)ASN1_STRING_length(s) == len && memcmp(ASN1_STRING_get0_data(s), val, len) == 0;
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static void test_ca_init_files_and_certs(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(mode_of(f->dir), 0700);
    assert_int_equal(mode_of(fpath(f, "ca.key")), 0600);
    assert_int_equal(mode_of(fpath(f, "server.key")), 0600);
    assert_int_equal(mode_of(fpath(f, "ca.crt")), 0644);
    assert_int_equal(mode_of(fpath(f, "server.crt")), 0644);

    X509 *ca = load_cert(fpath(f, "ca.crt"));
    X509 *srv = load_cert(fpath(f, "server.crt"));

    /* CA: basicConstraints critical CA:TRUE, keyUsage keyCertSign, ~10 years, P-256. */
    assert_int_equal(X509_check_ca(ca), 1);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_in_range(validity_days(ca), 3650, 3660);
    EVP_PKEY *pk = X509_get0_pubkey(ca);
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    char group[32] = "";
    assert_int_equal(EVP_PKEY_get_group_name(pk, group, sizeof group, NULL), 1);
    assert_string_equal(group, "prime256v1");

    /* Server: signed by the CA, not a CA, serverAuth, the SANs, ~2 years. */
    assert_int_equal(X509_check_issued(ca, srv), X509_V_OK);
    assert_int_equal(X509_check_ca(srv), 0);
    assert_true(X509_get_extension_flags(srv) & EXFLAG_XKUSAGE);
    assert_int_equal(X509_get_extended_key_usage(srv), XKU_SSL_SERVER);
    assert_true(san_has(srv, GEN_DNS, "localhost", 9));
    assert_true(san_has(srv, GEN_DNS, "tally.example", 13));
    static const unsigned char v4[] = {127, 0, 0, 1}, v4b[] = {10, 0, 0, 5};
    static const unsigned char v6[16] = {[15] = 1};
    static const unsigned char v6b[16] = {0xfd, 0x00, [15] = 7};
    assert_true(san_has(srv, GEN_IPADD, v4, 4));
    assert_true(san_has(srv, GEN_IPADD, v4b, 4));
    assert_true(san_has(srv, GEN_IPADD, v6, 16));
    assert_true(san_has(srv, GEN_IPADD, v6b, 16));
    assert_false(san_has(srv, GEN_DNS, "10.0.0.5", 8));
    assert_int_equal(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(srv, "::1", 0), 1);
    assert_in_range(validity_days(srv), 729, 732);

    /* Random serials of about 128 bits, distinct. */
    BIGNUM *s1 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca), NULL);
    BIGNUM *s2 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(srv), NULL);
    assert_in_range(BN_num_bits(s1), 120, 128);
    assert_in_range(BN_num_bits(s2), 120, 128);
    assert_int_not_equal(BN_cmp(s1, s2), 0);
    BN_free(s1);
    BN_free(s2);
    X509_free(srv);
    X509_free(ca);
}

static void test_ca_issue_collector(void **state)
{
    struct fixture *f = *state;
    char err[256] = "", pin_hex[TLS_PIN_HEX] = "";
    assert_int_equal(tls_ca_issue(f->dir, "north-1", pin_hex, err, sizeof err), 0);
    assert_int_equal(mode_of(fpath(f, "north-1.key")), 0600);
    assert_int_equal(mode_of(fpath(f, "north-1.crt")), 0644);
    assert_int_equal(strlen(pin_hex), 64);

    X509 *ca = load_cert(fpath(f, "ca.crt"));
    X509 *x = load_cert(fpath(f, "north-1.crt"));
    assert_int_equal(X509_check_issued(ca, x), X509_V_OK);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    char cn[80] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "north-1");
    assert_in_range(validity_days(x), 729, 732);

    /* The returned pin is the one of the file and of the certificate. */
    uint8_t pin[TLS_PIN_BYTES], pin2[TLS_PIN_BYTES];
    char hex[TLS_PIN_HEX];
    assert_int_equal(tls_pin_of_file(fpath(f, "north-1.crt"), pin, err, sizeof err), 0);
    tls_pin_hex(pin, hex);
    assert_string_equal(hex, pin_hex);
    assert_int_equal(tls_pin_of_cert(x, pin2), 0);
    assert_memory_equal(pin, pin2, TLS_PIN_BYTES);
    X509_free(x);
    X509_free(ca);

    /* NULL pin_hex is allowed. */
    assert_int_equal(tls_ca_issue(f->dir, "south_2.b", NULL, err, sizeof err), 0);
}

static void test_ca_refuses_overwrite(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    char *before = slurp(fpath(f, "ca.key"));
    assert_int_equal(tls_ca_init(f->dir, NULL, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "refusing to overwrite"));
    assert_non_null(strstr(err, "ca.key"));
    char *after = slurp(fpath(f, "ca.key"));
    assert_string_equal(before, after);
    free(before);
    free(after);

    assert_int_equal(tls_ca_issue(f->dir, "dup", NULL, err, sizeof err), 0);
    before = slurp(fpath(f, "dup.key"));
    err[0] = '\0';
    assert_int_equal(tls_ca_issue(f->dir, "dup", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "refusing to overwrite"));
    after = slurp(fpath(f, "dup.key"));
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* "ca" would be DIR/ca.key: refused, not overwritten. */
    assert_int_equal(tls_ca_issue(f->dir, "ca", NULL, err, sizeof err), -1);
    /* No temporary files left behind. */
    char cmd[200];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", f->dir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_ca_refuses_bad_ids_and_names(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    static const char *const bad[] = {"",
                                      "a b",
                                      "a/b",
                                      "x\ny",
                                      "é",
                                      "0123456789012345678901234567890123456789012345678901234567"
                                      "890123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(tls_ca_issue(f->dir, bad[i], NULL, err, sizeof err), -1);
        assert_non_null(strstr(err, "[A-Za-z0-9._-]{1,63}"));
    }
    /* 63 characters is fine. */
    assert_int_equal(tls_ca_issue(f->dir,
                                  "012345678901234567890123456789012345678901234567890123456789012",
                                  NULL, err, sizeof err),
                     0);

    /* A SAN name with a comma cannot smuggle a second entry; nothing is left behind. */
    char dir2[300];
    snprintf(dir2, sizeof dir2, "%s/../bad", f->dir);
    static const char *const names[] = {"ok.example", "x,IP:1.2.3.4"};
    assert_int_equal(tls_ca_init(dir2, names, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "x,IP:1.2.3.4"));
    char p[340];
    snprintf(p, sizeof p, "%s/ca.key", dir2);
    assert_int_not_equal(access(p, F_OK), 0);
}

/* Runs cmd and reads its first line of output, trailing newline dropped. */
static void run_line(const char *cmd, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

static void test_pin_matches_openssl(void **state)
{
    struct fixture *f = *state;
    if (!have_openssl())
        skip();
    char err[256] = "", hex[TLS_PIN_HEX], cmd[600], line[256];
    uint8_t pin[TLS_PIN_BYTES];
    static const char *const files[] = {"ca.crt", "server.crt"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(tls_pin_of_file(fpath(f, files[i]), pin, err, sizeof err), 0);
        tls_pin_hex(pin, hex);
        snprintf(cmd, sizeof cmd,
                 "openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform der | "
                 "openssl dgst -sha256 -r",
                 f->path);
        run_line(cmd, line, sizeof line);
        line[64] = '\0'; /* "-r": hex, a space, "*stdin" */
        assert_string_equal(hex, line);
    }
    /* Errors name the file. */
    assert_int_equal(tls_pin_of_file(fpath(f, "nope.crt"), pin, err, sizeof err), -1);
    assert_non_null(strstr(err, "nope.crt: no such file or directory"));
    assert_int_equal(tls_pin_of_file(fpath(f, "ca.key"), pin, err, sizeof err), -1);
    assert_non_null(strstr(err, "ca.key: not a PEM certificate"));
}

static void test_openssl_verify_accepts(void **state)
{
    struct fixture *f = *state;
    if (!have_openssl())
        skip();
    char err[256], cmd[600], line[256], ca[256];
    assert_int_equal(tls_ca_issue(f->dir, "verify-me", NULL, err, sizeof err), 0);
    snprintf(ca, sizeof ca, "%s", fpath(f, "ca.crt"));
    static const char *const files[] = {"verify-me.crt", "server.crt"};
    static const char *const purpose[] = {"sslclient", "sslserver"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "openssl verify -purpose %s -CAfile '%s' '%s' 2>&1", purpose[i],
                 ca, fpath(f, files[i]));
        run_line(cmd, line, sizeof line);
        assert_non_null(strstr(line, ": OK"));
    }
    /* And the wrong purpose is refused (EKU is there and meant). */
    snprintf(cmd, sizeof cmd, "openssl verify -purpose sslserver -CAfile '%s' '%s' 2>&1", ca,
             fpath(f, "verify-me.crt"));
    run_line(cmd, line, sizeof line);
    assert_null(strstr(line, ": OK"));
}

static void test_server_ctx(void **state)
{
    struct fixture *f = *state;
    char err[512] = "", crt[256], key[256], ca[256], ckey[256];
    snprintf(crt, sizeof crt, "%s", fpath(f, "server.crt"));
    snprintf(key, sizeof key, "%s", fpath(f, "server.key"));
    snprintf(ca, sizeof ca, "%s", fpath(f, "ca.crt"));
    assert_int_equal(tls_ca_issue(f->dir, "other", NULL, err, sizeof err), 0);
    snprintf(ckey, sizeof ckey, "%s", fpath(f, "other.key"));

    SSL_CTX *c = tls_server_ctx_new(crt, key, ca, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(SSL_CTX_get_min_proto_version(c), TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(c), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    assert_int_equal(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(c)), 1);
    tls_ctx_free(c);
    c = tls_server_ctx_new(crt, key, NULL, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(SSL_CTX_get_min_proto_version(c), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(c), SSL_VERIFY_NONE);
    tls_ctx_free(c);
    tls_ctx_free(NULL);

    char want[600];
    assert_null(tls_server_ctx_new("/nonexistent/c.pem", key, ca, err, sizeof err));
    assert_string_equal(err, "--tls-cert /nonexistent/c.pem: no such file or directory");
    assert_null(tls_server_ctx_new(crt, "/nonexistent/k.pem", NULL, err, sizeof err));
    assert_string_equal(err, "--http-tls-key /nonexistent/k.pem: no such file or directory");
    assert_null(tls_server_ctx_new(crt, key, "/nonexistent/ca.pem", err, sizeof err));
    assert_string_equal(err, "--tls-ca /nonexistent/ca.pem: no such file or directory");

    snprintf(want, sizeof want, "--tls-cert %s: is a directory", f->dir);
    assert_null(tls_server_ctx_new(f->dir, key, ca, err, sizeof err));
    assert_string_equal(err, want);

    /* A key that is not the certificate's. */
    assert_null(tls_server_ctx_new(crt, ckey, ca, err, sizeof err));
    snprintf(want, sizeof want, "--tls-key %s: does not match the certificate in %s", ckey, crt);
    assert_string_equal(err, want);
    /* A key where the certificate should be, and the other way round. */
    assert_null(tls_server_ctx_new(key, key, ca, err, sizeof err));
    snprintf(want, sizeof want, "--tls-cert %s: cannot read a PEM certificate (no start line)",
             key);
    assert_string_equal(err, want);
    assert_null(strchr(err, '\n'));
    assert_null(tls_server_ctx_new(crt, crt, NULL, err, sizeof err));
    snprintf(want, sizeof want, "--http-tls-key %s: ", crt);
    assert_memory_equal(err, want, strlen(want));
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- handshakes in memory -------------------------------------------------------------- */

static SSL_CTX *client_ctx(const char *crt, const char *key, const char *ca)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    assert_non_null(c);
    if (crt) {
        assert_int_equal(SSL_CTX_use_certificate_file(c, crt, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM), 1);
    }
    assert_int_equal(SSL_CTX_load_verify_locations(c, ca, NULL), 1);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    return c;
}

/* Drives both ends of a BIO pair until both finish the handshake and the server has read the
 * client's first bytes (in TLS 1.3 the server judges the client certificate after the client
 * thinks it is done). Returns 0, or -1 when either end fails; *verify gets the server's
 * verdict on the client certificate. */
static int handshake(SSL_CTX *cctx, SSL_CTX *sctx, uint8_t peer_pin[TLS_PIN_BYTES], long *verify)
{
    BIO *bc, *bs;
    assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    SSL_set_bio(c, bc, bc);
    SSL_set_bio(s, bs, bs);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    SSL_set1_host(c, "localhost");
    int rc = -1;
    bool sent = false;
    char buf[8];
    for (int i = 0; i < 50; i++) {
        int a = sent ? 1 : SSL_do_handshake(c);
        if (a == 1 && !sent) {
            if (SSL_write(c, "ping", 4) != 4)
                break;
            sent = true;
        } else if (a != 1 && SSL_get_error(c, a) != SSL_ERROR_WANT_READ &&
                   SSL_get_error(c, a) != SSL_ERROR_WANT_WRITE) {
            break;
        }
        int n = SSL_read(s, buf, sizeof buf);
        if (n == 4) {
            assert_memory_equal(buf, "ping", 4);
            assert_int_equal(SSL_version(s), TLS1_3_VERSION);
            X509 *peer = SSL_get1_peer_certificate(s);
            assert_non_null(peer);
            assert_int_equal(SSL_get_verify_result(s), X509_V_OK);
            if (peer_pin)
                assert_int_equal(tls_pin_of_cert(peer, peer_pin), 0);
            X509_free(peer);
            rc = 0;
            break;
        }
        int e = SSL_get_error(s, n);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            break;
    }
    *verify = SSL_get_verify_result(s);
    SSL_free(c);
    SSL_free(s);
    ERR_clear_error();
    return rc;
}

static void test_handshake(void **state)
{
    struct fixture *f = *state;
    char err[512], crt[256], key[256], ca[256], ccrt[256], ckey[256];
    snprintf(crt, sizeof crt, "%s", fpath(f, "server.crt"));
    snprintf(key, sizeof key, "%s", fpath(f, "server.key"));
    snprintf(ca, sizeof ca, "%s", fpath(f, "ca.crt"));
    assert_int_equal(tls_ca_issue(f->dir, "hs", NULL, err, sizeof err), 0);
    snprintf(ccrt, sizeof ccrt, "%s", fpath(f, "hs.crt"));
    snprintf(ckey, sizeof ckey, "%s", fpath(f, "hs.key"));

    SSL_CTX *s = tls_server_ctx_new(crt, key, ca, err, sizeof err);
    assert_non_null(s);

    /* The issued collector certificate: accepted, and the server sees its pin. */
    SSL_CTX *good = client_ctx(ccrt, ckey, ca);
    uint8_t seen[TLS_PIN_BYTES], want[TLS_PIN_BYTES];
    long v = -1;
    assert_int_equal(handshake(good, s, seen, &v), 0);
    assert_int_equal(tls_pin_of_file(ccrt, want, err, sizeof err), 0);
    assert_memory_equal(seen, want, TLS_PIN_BYTES);

    /* No client certificate: refused. */
    SSL_CTX *anon = client_ctx(NULL, NULL, ca);
    assert_int_equal(handshake(anon, s, NULL, &v), -1);

    /* The server's own certificate as a client certificate: its EKU is serverAuth only. */
    SSL_CTX *wrong_eku = client_ctx(crt, key, ca);
    assert_int_equal(handshake(wrong_eku, s, NULL, &v), -1);
    assert_int_equal(v, X509_V_ERR_INVALID_PURPOSE);

    /* A collector certificate from a second, foreign CA: refused. */
    char fdir[300], fcrt[340], fkey[340];
    snprintf(fdir, sizeof fdir, "%s/../foreign", f->dir);
    assert_int_equal(tls_ca_init(fdir, NULL, 0, err, sizeof err), 0);
    assert_int_equal(tls_ca_issue(fdir, "hs", NULL, err, sizeof err), 0);
    snprintf(fcrt, sizeof fcrt, "%s/hs.crt", fdir);
    snprintf(fkey, sizeof fkey, "%s/hs.key", fdir);
    SSL_CTX *foreign = client_ctx(fcrt, fkey, ca);
    assert_int_equal(handshake(foreign, s, NULL, &v), -1);
    assert_int_equal(v, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

    /* A TLS 1.2 client cannot reach the collector port. */
    SSL_CTX *old = client_ctx(ccrt, ckey, ca);
    SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION);
    assert_int_equal(handshake(old, s, NULL, &v), -1);

    /* And the good client still gets in (nothing sticky from the failures). */
    assert_int_equal(handshake(good, s, NULL, &v), 0);

    SSL_CTX_free(old);
    SSL_CTX_free(foreign);
    SSL_CTX_free(wrong_eku);
    SSL_CTX_free(anon);
    SSL_CTX_free(good);
    tls_ctx_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ca_init_files_and_certs, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_ca_issue_collector, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_ca_refuses_overwrite, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_ca_refuses_bad_ids_and_names, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_pin_matches_openssl, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_openssl_verify_accepts, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_server_ctx, setup_ca, teardown_ca),
        cmocka_unit_test_setup_teardown(test_handshake, setup_ca, teardown_ca),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
