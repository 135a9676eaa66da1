/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed key tools:
 *   keygen        create a signing key file
 *   pubkey        print the key ID and public key of a key file
 *   sign-request  print an X-Matrix Authorization header for a request
 *   verify-event  check the content hash, event ID and signatures of a PDU
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_file_io.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <sodium.h>

#include "mxf_base64.h"
#include "mxf_cmd.h"
#include "mxf_event.h"
#include "mxf_id.h"
#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_roomver.h"
#include "mxf_xmatrix.h"

/* Largest request body or PDU file the tools read. */
#define READ_MAX (1024 * 1024)

static int is_help(const char *arg)
{
    return !strcmp(arg, "-h") || !strcmp(arg, "--help");
}


/* Reads all of @a path ("-": stdin), at most READ_MAX bytes. NULL on failure (reported). */
static char *read_all(apr_pool_t *p, const char *path, apr_size_t *len)
{
    apr_file_t *f;
    apr_status_t rv;
    char *buf = apr_palloc(p, READ_MAX + 1);
    apr_size_t n = READ_MAX + 1;
    char err[128];

    if (!strcmp(path, "-")) {
        rv = apr_file_open_stdin(&f, p);
    }
    else {
        rv = apr_file_open(&f, path, APR_FOPEN_READ, APR_FPROT_OS_DEFAULT, p);
    }
    if (rv != APR_SUCCESS) {
        mxf_cmd_error("cannot open %s: %s", path, apr_strerror(rv, err, sizeof(err)));
        return NULL;
    }
    rv = apr_file_read_full(f, buf, n, &n);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        mxf_cmd_error("cannot read %s: %s", path, apr_strerror(rv, err, sizeof(err)));
        return NULL;
    }
    if (n > READ_MAX) {
        mxf_cmd_error("%s is larger than %d bytes", path, READ_MAX);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static const char *pubkey_b64(apr_pool_t *p, const mxf_signing_key_t *key)
{
    return mxf_b64_encode(p, key->pk, sizeof(key->pk), MXF_B64_STANDARD);
}

/* ------------------------------------------------------------------------
 * keygen
 */

static void keygen_usage(FILE *out)
{
    fputs("Usage: matrix-fed keygen [--key-version V] FILE\n"
          "  Creates a new ed25519 signing key and writes it to FILE (mode 0600)\n"
          "  in the homeserver key-file format 'ed25519 <version> <seed>'. FILE\n"
          "  must not exist yet. Prints '<key ID> <public key>'.\n"
          "  --key-version V   key version, [A-Za-z0-9_]{1,64}\n"
          "                    (default: 'a_' and 4 random letters/digits)\n", out);
}

/* "a_" + 4 random characters of [A-Za-z0-9], as homeservers name new keys. */
static const char *random_version(apr_pool_t *p)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    char *v = apr_pstrdup(p, "a_XXXX");
    int i;

    for (i = 2; i < 6; i++) {
        v[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    }
    return v;
}

int mxf_cmd_keygen(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *version = NULL, *path = NULL, *why = NULL;
    mxf_signing_key_t *key;
    char *line;
    apr_size_t len, off = 0;
    int i, fd, r;

    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            keygen_usage(stdout);
            return MXF_EXIT_OK;
        }
        if ((r = mxf_cmd_opt_value(argc, argv, &i, "--key-version", &version)) != 0) {
            if (r < 0) {
                return MXF_EXIT_USAGE;
            }
        }
        else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            mxf_cmd_error("keygen: unknown option '%s'", argv[i]);
            keygen_usage(stderr);
            return MXF_EXIT_USAGE;
        }
        else if (path) {
            mxf_cmd_error("keygen: unexpected argument '%s'", argv[i]);
            return MXF_EXIT_USAGE;
        }
        else {
            path = argv[i];
        }
    }
    if (!path) {
        mxf_cmd_error("keygen: which FILE?");
        keygen_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    if (version && !mxf_key_version_valid(version, strlen(version))) {
        mxf_cmd_error("keygen: key version must be 1 to 64 characters of [A-Za-z0-9_]");
        return MXF_EXIT_USAGE;
    }
    if (mxf_key_generate(p, version ? version : random_version(p), &key, &why)
        != APR_SUCCESS) {
        mxf_cmd_error("keygen: %s", why);
        return MXF_EXIT_FAILURE;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
    if (fd < 0) {
        mxf_cmd_error("keygen: cannot create %s: %s%s", path, strerror(errno),
                      errno == EEXIST ? " (refusing to overwrite a key)" : "");
        return MXF_EXIT_FAILURE;
    }
    line = mxf_key_format(p, key);
    len = strlen(line);
    /* umask may have taken bits away; make it exactly 0600. */
    r = fchmod(fd, S_IRUSR | S_IWUSR);
    while (r == 0 && off < len) {
        ssize_t w = write(fd, line + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            r = -1;
            break;
        }
        off += (apr_size_t)w;
    }
    sodium_memzero(line, len);
    if (r != 0 || fsync(fd) != 0) {
        mxf_cmd_error("keygen: cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return MXF_EXIT_FAILURE;
    }
    if (close(fd) != 0) {
        mxf_cmd_error("keygen: cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return MXF_EXIT_FAILURE;
    }
    printf("%s %s\n", key->key_id, pubkey_b64(p, key));
    return MXF_EXIT_OK;
}

/* ------------------------------------------------------------------------
 * pubkey
 */

static void pubkey_usage(FILE *out)
{
    fputs("Usage: matrix-fed pubkey FILE\n"
          "  Prints '<key ID> <unpadded base64 public key>' of the signing key in\n"
          "  FILE (the first key of a homeserver key file).\n", out);
}

int mxf_cmd_pubkey(apr_pool_t *p, int argc, const char *const *argv)
{
    mxf_signing_key_t *key;
    const char *why = NULL;

    if (argc == 2 && is_help(argv[1])) {
        pubkey_usage(stdout);
        return MXF_EXIT_OK;
    }
    if (argc != 2 || (argv[1][0] == '-' && argv[1][1] != '\0')) {
        pubkey_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    if (mxf_key_load_file(p, argv[1], &key, &why) != APR_SUCCESS) {
        mxf_cmd_error("pubkey: %s", why);
        return MXF_EXIT_FAILURE;
    }
    printf("%s %s\n", key->key_id, pubkey_b64(p, key));
    return MXF_EXIT_OK;
}

/* ------------------------------------------------------------------------
 * sign-request
 */

static void sign_request_usage(FILE *out)
{
    fputs("Usage: matrix-fed sign-request --key FILE --origin NAME --destination NAME\n"
          "                               [--method M] URI [--body JSON|@FILE|@-]\n"
          "  Signs a federation request as server NAME (--origin) with the key in\n"
          "  FILE and prints the Authorization header value 'X-Matrix ...'.\n"
          "  URI is the request target exactly as it will be sent, starting with\n"
          "  '/' and including the query string. M defaults to GET. The body must\n"
          "  be a JSON object, given inline, from a file (@FILE) or stdin (@-).\n"
          "  Example:\n"
          "    curl -H \"Authorization: $(matrix-fed sign-request --key k.key \\\n"
          "        --origin me.example --destination you.example \\\n"
          "        /_matrix/federation/v1/version)\" \\\n"
          "        https://you.example/_matrix/federation/v1/version\n", out);
}

int mxf_cmd_sign_request(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *keyfile = NULL, *origin = NULL, *destination = NULL, *method = "GET";
    const char *uri = NULL, *body = NULL, *why = NULL, *header = NULL;
    json_t *content = NULL;
    mxf_signing_key_t *key;
    char *m;
    int i, r;

    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            sign_request_usage(stdout);
            return MXF_EXIT_OK;
        }
        if ((r = mxf_cmd_opt_value(argc, argv, &i, "--key", &keyfile)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--origin", &origin)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--destination", &destination)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--method", &method)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--body", &body)) != 0) {
            if (r < 0) {
                return MXF_EXIT_USAGE;
            }
        }
        else if (argv[i][0] == '-') {
            mxf_cmd_error("sign-request: unknown option '%s'", argv[i]);
            sign_request_usage(stderr);
            return MXF_EXIT_USAGE;
        }
        else if (uri) {
            mxf_cmd_error("sign-request: unexpected argument '%s'", argv[i]);
            return MXF_EXIT_USAGE;
        }
        else {
            uri = argv[i];
        }
    }
    if (!keyfile || !origin || !destination || !uri) {
        mxf_cmd_error("sign-request needs --key, --origin, --destination and a URI");
        sign_request_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    if (!mxf_id_server_name_valid(origin, strlen(origin))) {
        mxf_cmd_error("sign-request: --origin '%s' is not a valid server name", origin);
        return MXF_EXIT_USAGE;
    }
    if (!mxf_id_server_name_valid(destination, strlen(destination))) {
        mxf_cmd_error("sign-request: --destination '%s' is not a valid server name",
                      destination);
        return MXF_EXIT_USAGE;
    }
    if (uri[0] != '/') {
        mxf_cmd_error("sign-request: URI must be the request target, starting with '/'");
        return MXF_EXIT_USAGE;
    }
    if (body && strcasecmp(method, "POST") != 0 && strcasecmp(method, "PUT") != 0) {
        /* Servers check a body with POST and PUT only (the module, the
         * reference homeserver): a header signing one could never verify. */
        mxf_cmd_error("sign-request: --body with %s: give the method that sends it"
                      " (--method POST or PUT)", !strcmp(method, "GET")
                      ? "GET (the default)" : method);
        return MXF_EXIT_USAGE;
    }
    m = apr_pstrdup(p, method);
    for (i = 0; m[i]; i++) {
        if (!apr_isalpha(m[i])) {
            mxf_cmd_error("sign-request: '%s' is not an HTTP method", method);
            return MXF_EXIT_USAGE;
        }
        m[i] = (char)apr_toupper(m[i]);
    }
    if (!m[0]) {
        mxf_cmd_error("sign-request: empty --method");
        return MXF_EXIT_USAGE;
    }
    if (body) {
        const char *text = body;
        apr_size_t len = strlen(body);

        if (body[0] == '@') {
            text = read_all(p, body + 1, &len);
            if (!text) {
                return MXF_EXIT_FAILURE;
            }
        }
        if (mxf_json_parse(p, text, len, 0, &content, &why) != APR_SUCCESS) {
            mxf_cmd_error("sign-request: the body is not a JSON object: %s", why);
            return MXF_EXIT_FAILURE;
        }
    }
    if (mxf_key_load_file(p, keyfile, &key, &why) != APR_SUCCESS) {
        mxf_cmd_error("sign-request: %s", why);
        return MXF_EXIT_FAILURE;
    }
    if (mxf_xmatrix_sign_request(p, m, uri, origin, destination, content, key, &header,
                                 &why) != APR_SUCCESS) {
        mxf_cmd_error("sign-request: %s", why);
        return MXF_EXIT_FAILURE;
    }
    printf("%s\n", header);
    return MXF_EXIT_OK;
}

/* ------------------------------------------------------------------------
 * verify-event
 */

static void verify_event_usage(FILE *out)
{
    fputs("Usage: matrix-fed verify-event --room-version V --server NAME --key-id ID\n"
          "                               --public-key B64 [FILE|-]\n"
          "  Checks one PDU (federation format, JSON, from FILE or stdin): its\n"
          "  content hash, its event ID (printed; compared with an \"event_id\"\n"
          "  field when there is one) and the signatures of every server that must\n"
          "  have signed it. The only key known is ID of server NAME with public\n"
          "  key B64 (unpadded base64). Exit status 0 if all checks pass, 1 if one\n"
          "  fails, 2 on a usage error.\n", out);
}

typedef struct {
    const char *server;
    const char *key_id;
    unsigned char pk[MXF_ED25519_PK_BYTES];
} one_key_t;

static apr_status_t one_key_lookup(void *baton, apr_pool_t *p, const char *server_name,
                                   const char *key_id, apr_int64_t origin_server_ts,
                                   const mxf_roomver_t *rv,
                                   unsigned char pk[MXF_ED25519_PK_BYTES])
{
    const one_key_t *k = baton;

    if (strcmp(server_name, k->server) != 0 || strcmp(key_id, k->key_id) != 0) {
        return APR_NOTFOUND;
    }
    memcpy(pk, k->pk, MXF_ED25519_PK_BYTES);
    return APR_SUCCESS;
}

int mxf_cmd_verify_event(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *version = NULL, *pkb64 = NULL, *path = "-", *why = NULL;
    const char *event_id, *given_id;
    const mxf_roomver_t *rv;
    one_key_t key = { NULL, NULL, { 0 } };
    json_t *pdu = NULL;
    char *text;
    apr_size_t len;
    int i, r, have_path = 0, failed = 0;

    for (i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            verify_event_usage(stdout);
            return MXF_EXIT_OK;
        }
        if ((r = mxf_cmd_opt_value(argc, argv, &i, "--room-version", &version)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--server", &key.server)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--key-id", &key.key_id)) != 0
            || (r = mxf_cmd_opt_value(argc, argv, &i, "--public-key", &pkb64)) != 0) {
            if (r < 0) {
                return MXF_EXIT_USAGE;
            }
        }
        else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            mxf_cmd_error("verify-event: unknown option '%s'", argv[i]);
            verify_event_usage(stderr);
            return MXF_EXIT_USAGE;
        }
        else if (have_path) {
            mxf_cmd_error("verify-event: unexpected argument '%s'", argv[i]);
            return MXF_EXIT_USAGE;
        }
        else {
            path = argv[i];
            have_path = 1;
        }
    }
    if (!version || !key.server || !key.key_id || !pkb64) {
        mxf_cmd_error("verify-event needs --room-version, --server, --key-id and --public-key");
        verify_event_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    if ((rv = mxf_roomver_lookup(p, version, &why)) == NULL) {
        mxf_cmd_error("verify-event: %s", why ? why : "unknown room version");
        return MXF_EXIT_USAGE;
    }
    if (!mxf_id_server_name_valid(key.server, strlen(key.server))) {
        mxf_cmd_error("verify-event: --server '%s' is not a valid server name", key.server);
        return MXF_EXIT_USAGE;
    }
    if (!mxf_id_key_id_valid(key.key_id, strlen(key.key_id))) {
        mxf_cmd_error("verify-event: --key-id '%s' is not 'ed25519:' + [A-Za-z0-9_]",
                      key.key_id);
        return MXF_EXIT_USAGE;
    }
    if (mxf_b64_decode_exact(pkb64, strlen(pkb64), MXF_B64_STANDARD, key.pk,
                             sizeof(key.pk)) != APR_SUCCESS) {
        mxf_cmd_error("verify-event: --public-key is not base64 of 32 bytes");
        return MXF_EXIT_USAGE;
    }
    if ((text = read_all(p, path, &len)) == NULL) {
        return MXF_EXIT_FAILURE;
    }
    if (mxf_json_parse(p, text, len, rv->strict_canonical_json ? MXF_JSON_STRICT_INTS : 0,
                       &pdu, &why) != APR_SUCCESS) {
        mxf_cmd_error("verify-event: %s is not a JSON object%s: %s",
                      strcmp(path, "-") ? path : "stdin",
                      rv->strict_canonical_json ? " in canonical JSON range" : "", why);
        return MXF_EXIT_FAILURE;
    }

    if (mxf_event_check_content_hash(p, pdu, rv, &why) == APR_SUCCESS) {
        printf("content hash: ok\n");
    }
    else {
        printf("content hash: FAILED: %s\n", why);
        failed = 1;
    }
    event_id = mxf_event_id_compute(p, pdu, rv, &why);
    if (!event_id) {
        printf("event ID: FAILED: %s\n", why);
        failed = 1;
    }
    else {
        json_t *field = json_object_get(pdu, "event_id");

        given_id = json_is_string(field) ? json_string_value(field) : NULL;
        if (given_id && strcmp(given_id, event_id) != 0) {
            printf("event ID: FAILED: computed %s, the event says %s\n", event_id, given_id);
            failed = 1;
        }
        else {
            printf("event ID: %s\n", event_id);
        }
    }
    if (mxf_event_verify_signatures(p, pdu, rv, one_key_lookup, &key, &why) == APR_SUCCESS) {
        printf("signatures: ok\n");
    }
    else {
        printf("signatures: FAILED: %s\n", why);
        failed = 1;
    }
    return failed ? MXF_EXIT_FAILURE : MXF_EXIT_OK;
}
