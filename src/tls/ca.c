/* The private CA behind `tallyctl ca init|issue`: EC P-256 keys, X.509 v3 certificates for
 * the CA, tallyd's server and each collector, written as PEM files that are never silently
 * replaced (each lands with link(2) from a temporary file, which fails if the name exists).
 * No shelling out to the openssl command. */
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/xalloc.h"
#include "tls/internal.h"

#define CA_DAYS (10 * 365 + 3)
#define SERVER_DAYS (2 * 365 + 1)
#define COLLECTOR_DAYS (2 * 365 + 1)
/* notBefore an hour back, so a peer whose clock is a little behind still accepts it. */
#define BACKDATE_S (60 * 60)
#define MAX_NAME 253

enum cert_kind { CERT_CA, CERT_SERVER, CERT_COLLECTOR };

/* The collector id grammar of protocol.h: [A-Za-z0-9._-]{1,63}. */
static bool id_is_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A DNS name for a subjectAltName: letters, digits, '-', '.', and a leading "*." wildcard. */
static bool dns_name_is_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > MAX_NAME || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '*' && i == 0 && s[1] == '.')
            continue;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

static char *path_join(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + 1 + strlen(name) + strlen(ext) + 1;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s%s", dir, name, ext);
    return p;
}

static EVP_PKEY *key_new(char *err, size_t err_len)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        tls_errf(err, err_len, "cannot generate an EC P-256 key: %s", tls_ssl_reason());
    return k;
}

/* A random positive 128-bit serial (RFC 5280 allows up to 20 octets). */
static int set_serial(X509 *x)
{
    unsigned char b[16];
    int rc = -1;
    BIGNUM *bn = NULL;
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    b[0] &= 0x7f; /* DER INTEGERs are signed */
    b[0] |= 0x40; /* never short or zero */
    bn = BN_bin2bn(b, sizeof b, NULL);
    if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        rc = 0;
    BN_free(bn);
    return rc;
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* subjectAltName localhost, 127.0.0.1, ::1 and names[]: an IP SAN for anything inet_pton
 * reads as an address, a DNS SAN otherwise. Built as GENERAL_NAMEs rather than a conf string
 * so that no name can smuggle in a second entry with a comma. */
static int add_san(X509 *x, const char *const *names, size_t n_names, char *err, size_t err_len)
{
    static const char *const fixed[] = {"localhost", "127.0.0.1", "::1"};
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int rc = -1;
    if (!gens)
        abort();
    for (size_t i = 0; i < 3 + n_names; i++) {
        const char *name = i < 3 ? fixed[i] : names[i - 3];
        unsigned char ip[16];
        int ip_len = 0;
        if (inet_pton(AF_INET, name, ip) == 1)
            ip_len = 4;
        else if (inet_pton(AF_INET6, name, ip) == 1)
            ip_len = 16;
        else if (!dns_name_is_valid(name)) {
            tls_errf(err, err_len, "%.*s: not a DNS name or an IP address", MAX_NAME, name);
            goto fail;
        }
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(name, j < 3 ? fixed[j] : names[j - 3]) == 0;
        if (dup)
            continue;
        GENERAL_NAME *g = GENERAL_NAME_new();
        if (!g)
            abort();
        if (ip_len) {
            ASN1_OCTET_STRING *o = ASN1_OCTET_STRING_new();
            if (!o || !ASN1_OCTET_STRING_set(o, ip, ip_len))
                abort();
            GENERAL_NAME_set0_value(g, GEN_IPADD, o);
        } else {
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            if (!s || !ASN1_STRING_set(s, name, (int)strlen(name)))
                abort();
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
        }
        if (!sk_GENERAL_NAME_push(gens, g))
            abort();
    }
    if (!X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT)) {
        tls_errf(err, err_len, "subjectAltName: %s", tls_ssl_reason());
        goto fail;
    }
    rc = 0;
fail:
    GENERAL_NAMES_free(gens);
    return rc;
}

/* A certificate for key with subject CN=cn, signed by issuer_key (issuer NULL: self-signed). */
static X509 *cert_new(enum cert_kind kind, const char *cn, EVP_PKEY *key, X509 *issuer,
                      EVP_PKEY *issuer_key, const char *const *names, size_t n_names, char *err,
                      size_t err_len)
{
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new();
    X509V3_CTX v3;
    long days = kind == CERT_CA ? CA_DAYS : kind == CERT_SERVER ? SERVER_DAYS : COLLECTOR_DAYS;
    if (!x || !subj)
        abort();

    if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_S) ||
        !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL))
        goto ssl_fail;
    if (!X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_ASC, (const unsigned char *)"tallyd", -1,
                                    -1, 0) ||
        !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_subject_name(x, subj) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subj) ||
        !X509_set_pubkey(x, key))
        goto ssl_fail;

    /* The subject key id first: the authority key id of a self-signed CA is read from it. */
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    if (add_ext(x, &v3, NID_subject_key_identifier, "hash") < 0)
        goto ssl_fail;
    if (kind == CERT_CA) {
        if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
            add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign") < 0)
            goto ssl_fail;
    } else {
        if (add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") < 0 ||
            add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
            add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") < 0 ||
            add_ext(x, &v3, NID_ext_key_usage, kind == CERT_SERVER ? "serverAuth" : "clientAuth") <
                0)
            goto ssl_fail;
        if (kind == CERT_SERVER && add_san(x, names, n_names, err, err_len) < 0)
            goto fail;
    }
    if (X509_sign(x, issuer_key, EVP_sha256()) <= 0)
        goto ssl_fail;
    X509_NAME_free(subj);
    return x;

ssl_fail:
    tls_errf(err, err_len, "cannot make the certificate for %s: %s", cn, tls_ssl_reason());
fail:
    X509_NAME_free(subj);
    X509_free(x);
    return NULL;
}

/* Writes the PEM of key (x NULL) or of x to path, mode mode, never replacing an existing
 * file: the bytes go to a temporary name, are synced, and link(2) puts them at path, which
 * fails with EEXIST if anything is already there. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *x, mode_t mode, char *err,
                     size_t err_len)
{
    BIO *mem = BIO_new(BIO_s_mem());
    size_t tmp_len = strlen(path) + sizeof ".tmpXXXXXX";
    char *tmp = xmalloc(tmp_len);
    int fd = -1, rc = -1;
    char why[128];
    if (!mem)
        abort();
    snprintf(tmp, tmp_len, "%s.tmpXXXXXX", path);
    if (key ? !PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL)
            : !PEM_write_bio_X509(mem, x)) {
        tls_errf(err, err_len, "%s: cannot encode: %s", path, tls_ssl_reason());
        goto fail;
    }
    char *data;
    long len = BIO_get_mem_data(mem, &data);

    fd = mkstemp(tmp);
    if (fd < 0)
        goto sys_fail;
    if (fchmod(fd, mode) < 0)
        goto sys_fail_unlink;
    for (long off = 0; off < len;) {
        ssize_t w = write(fd, data + off, (size_t)(len - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto sys_fail_unlink;
        off += w;
    }
    if (fsync(fd) < 0)
        goto sys_fail_unlink;
    if (close(fd) < 0) {
        fd = -1;
        goto sys_fail_unlink;
    }
    fd = -1;
    if (link(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        tls_lower_strerror(e, why, sizeof why);
        tls_errf(err, err_len, "%s: %s%s", path, why,
                 e == EEXIST ? " (refusing to overwrite it)" : "");
        goto fail;
    }
    unlink(tmp);
    rc = 0;
    goto fail;

sys_fail_unlink : {
    int e = errno;
    unlink(tmp);
    errno = e;
}
sys_fail:
    tls_lower_strerror(errno, why, sizeof why);
    tls_errf(err, err_len, "%s: %s", path, why);
fail:
    if (fd >= 0)
        close(fd);
    free(tmp);
    BIO_free(mem);
    return rc;
}

/* Refuses early (before any key is made) when a file we would write already exists. */
static int refuse_existing(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        tls_errf(err, err_len, "%s: file exists (refusing to overwrite it)", path);
        return -1;
    }
    return 0;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int tls_ca_init(const char *dir, const char *const *names, size_t n_names, char *err,
                size_t err_len)
{
    enum { CA_KEY, CA_CRT, SRV_KEY, SRV_CRT, N_FILES };
    static const char *const base[N_FILES] = {"ca.key", "ca.crt", "server.key", "server.crt"};
    char *path[N_FILES] = {0};
    bool written[N_FILES] = {0};
    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    X509 *ca = NULL, *srv = NULL;
    int rc = -1;
    char why[128];

    ERR_clear_error();
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        tls_lower_strerror(errno, why, sizeof why);
        tls_errf(err, err_len, "%s: %s", dir, why);
        goto fail;
    }
    for (int i = 0; i < N_FILES; i++)
        path[i] = path_join(dir, base[i], "");
    for (int i = 0; i < N_FILES; i++)
        if (refuse_existing(path[i], err, err_len) < 0)
            goto fail;

    if (!(ca_key = key_new(err, err_len)) || !(srv_key = key_new(err, err_len)))
        goto fail;
    ca = cert_new(CERT_CA, "tallyd private CA", ca_key, NULL, ca_key, NULL, 0, err, err_len);
    if (!ca)
        goto fail;
    srv = cert_new(CERT_SERVER, "tallyd", srv_key, ca, ca_key, names, n_names, err, err_len);
    if (!srv)
        goto fail;

    /* ca.key first: it is the file whose existence means "a CA lives here". */
    EVP_PKEY *keys[N_FILES] = {ca_key, NULL, srv_key, NULL};
    X509 *certs[N_FILES] = {NULL, ca, NULL, srv};
    for (int i = 0; i < N_FILES; i++) {
        if (write_pem(path[i], keys[i], certs[i], keys[i] ? 0600 : 0644, err, err_len) < 0)
            goto fail;
        written[i] = true;
    }
    fsync_dir(dir);
    rc = 0;
fail:
    if (rc < 0) /* no half CA: take back what this call wrote */
        for (int i = N_FILES - 1; i >= 0; i--)
            if (written[i])
                unlink(path[i]);
    for (int i = 0; i < N_FILES; i++)
        free(path[i]);
    X509_free(srv);
    X509_free(ca);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(ca_key);
    return rc;
}

/* Loads DIR/ca.key and DIR/ca.crt and checks that they belong together. */
static int ca_load(const char *dir, EVP_PKEY **key, X509 **crt, char *err, size_t err_len)
{
    char *kp = path_join(dir, "ca", ".key"), *cp = path_join(dir, "ca", ".crt");
    char why[128];
    int rc = -1;
    BIO *b = NULL;

    *key = NULL;
    *crt = NULL;
    if (!(b = BIO_new_file(kp, "r"))) {
        tls_lower_strerror(errno, why, sizeof why);
        tls_errf(err, err_len, "%s: %s", kp, why);
        goto fail;
    }
    if (!(*key = PEM_read_bio_PrivateKey(b, NULL, tls_no_passphrase_cb, NULL))) {
        tls_errf(err, err_len, "%s: not a PEM private key (%s)", kp, tls_ssl_reason());
        goto fail;
    }
    BIO_free(b);
    if (!(b = BIO_new_file(cp, "r"))) {
        tls_lower_strerror(errno, why, sizeof why);
        tls_errf(err, err_len, "%s: %s", cp, why);
        goto fail;
    }
    if (!(*crt = PEM_read_bio_X509(b, NULL, tls_no_passphrase_cb, NULL))) {
        tls_errf(err, err_len, "%s: not a PEM certificate (%s)", cp, tls_ssl_reason());
        goto fail;
    }
    if (X509_check_private_key(*crt, *key) != 1) {
        tls_errf(err, err_len, "%s: does not match the certificate in %s", kp, cp);
        goto fail;
    }
    rc = 0;
fail:
    ERR_clear_error();
    if (rc < 0) {
        EVP_PKEY_free(*key);
        X509_free(*crt);
        *key = NULL;
        *crt = NULL;
    }
    BIO_free(b);
    free(kp);
    free(cp);
    return rc;
}

int tls_ca_issue(const char *dir, const char *id, char pin_hex[TLS_PIN_HEX], char *err,
                 size_t err_len)
{
    EVP_PKEY *ca_key = NULL, *key = NULL;
    X509 *ca = NULL, *x = NULL;
    char *kp = NULL, *cp = NULL;
    bool key_written = false;
    int rc = -1;

    ERR_clear_error();
    if (!id_is_valid(id)) {
        tls_errf(err, err_len, "collector id must match [A-Za-z0-9._-]{1,63}");
        goto fail;
    }
    kp = path_join(dir, id, ".key");
    cp = path_join(dir, id, ".crt");
    if (refuse_existing(kp, err, err_len) < 0 || refuse_existing(cp, err, err_len) < 0)
        goto fail;
    if (ca_load(dir, &ca_key, &ca, err, err_len) < 0)
        goto fail;
    if (!(key = key_new(err, err_len)))
        goto fail;
    if (!(x = cert_new(CERT_COLLECTOR, id, key, ca, ca_key, NULL, 0, err, err_len)))
        goto fail;
    uint8_t pin[TLS_PIN_BYTES];
    if (tls_pin_of_cert(x, pin) < 0) {
        tls_errf(err, err_len, "cannot hash the public key of %s's certificate", id);
        goto fail;
    }
    if (write_pem(kp, key, NULL, 0600, err, err_len) < 0)
        goto fail;
    key_written = true;
    if (write_pem(cp, NULL, x, 0644, err, err_len) < 0)
        goto fail;
    fsync_dir(dir);
    if (pin_hex)
        tls_pin_hex(pin, pin_hex);
    rc = 0;
fail:
    if (rc < 0 && key_written)
        unlink(kp);
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    free(cp);
    free(kp);
    return rc;
}
