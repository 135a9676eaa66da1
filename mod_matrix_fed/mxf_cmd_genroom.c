/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed gen-room: writes a generated, fully signed room (see
 * mxf_genroom.h) into a directory:
 *
 *   DIR/room.jsonl            one PDU per line, topological order
 *   DIR/expected.jsonl        per-event expectations (all events or a sample)
 *   DIR/expected.json         the summary: room ID, counts, redactions, final state
 *   DIR/keys/<server>.key     the server's signing key (key-file format, mode 0600)
 *   DIR/keys/<server>.json    its /_matrix/key/v2/server response, self-signed
 *   DIR/keys/all.json         {"server_keys": [all those responses]} (the shape
 *                             of a notary /_matrix/key/v2/query response)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>

#include "mxf_cmd.h"
#include "mxf_genroom.h"
#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_log.h"

#define OUT_BUFFER (1024 * 1024)

typedef struct outputs {
    FILE *room;
    FILE *expect;
} outputs_t;

static apr_status_t write_line(void *baton, mxf_genroom_stream_t stream,
                               const char *data, apr_size_t len)
{
    outputs_t *o = baton;
    FILE *f = stream == MXF_GENROOM_OUT_ROOM ? o->room : o->expect;

    return fwrite(data, 1, len, f) == len ? APR_SUCCESS : APR_EGENERAL;
}

static void genroom_usage(FILE *out)
{
    fputs("Usage: matrix-fed gen-room --out DIR [--room-version V] [--events N]\n"
          "         [--servers S] [--users-per-server U] [--branchiness F]\n"
          "         [--redactions F] [--conflicts F] [--seed SEED] [--threads T]\n"
          "  Generates a room of N signed events (default 1000, room version 10)\n"
          "  among S homeservers hs1.example.. (default 4) with U users each\n"
          "  (default 5). F: per-step probability of concurrent branches (0.1) and\n"
          "  of redactions (0.02); --conflicts F: share of the forks whose branches\n"
          "  conflict in state (default 0; room versions 2+; the expected state after\n"
          "  their merge is the generator's prediction of state resolution).\n"
          "  Same options and seed (default 1) give the same\n"
          "  bytes, whatever the number of signing threads T (0-64, default 2; 0\n"
          "  signs in the calling thread); rooms of other seeds (below 2^48) or\n"
          "  room versions have other room and event IDs, so any of them can share\n"
          "  a database (in room version 12, whose room ID is the hash of the\n"
          "  create event, two seeds give the same room ID once in about 10^11\n"
          "  pairs).\n"
          "  Writes DIR/room.jsonl, DIR/expected.jsonl, DIR/expected.json\n"
          "  and DIR/keys/ (<server>.key, <server>.json, all.json).\n", out);
}


static int parse_u64(const char *name, const char *s, apr_uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s == '-' || *s == '+') {
        mxf_cmd_error("%s: '%s' is not a non-negative integer", name, s);
        return 0;
    }
    *out = (apr_uint64_t)v;
    return 1;
}

static int parse_int(const char *name, const char *s, int *out)
{
    apr_uint64_t v;

    if (!parse_u64(name, s, &v) || v > 1000000) {
        if (v > 1000000) {
            mxf_cmd_error("%s: '%s' is too large", name, s);
        }
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_fraction(const char *name, const char *s, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= 0.0 && v <= 1.0)) {
        mxf_cmd_error("%s: '%s' is not a number from 0 to 1", name, s);
        return 0;
    }
    *out = v;
    return 1;
}

/* Writes @a len bytes to @a path with @a mode (also when the file existed). */
static int write_file(const char *path, const char *data, apr_size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    apr_size_t off = 0;

    if (fd < 0) {
        mxf_cmd_error("cannot create %s: %s", path, strerror(errno));
        return 0;
    }
    if (fchmod(fd, mode) != 0) {
        mxf_cmd_error("cannot set the mode of %s: %s", path, strerror(errno));
        close(fd);
        return 0;
    }
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            mxf_cmd_error("cannot write %s: %s", path, strerror(errno));
            close(fd);
            return 0;
        }
        off += (apr_size_t)n;
    }
    if (close(fd) != 0) {
        mxf_cmd_error("cannot write %s: %s", path, strerror(errno));
        return 0;
    }
    return 1;
}

static int write_json(apr_pool_t *p, const char *path, const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(1) | JSON_SORT_KEYS);
    int ok;

    if (!text) {
        mxf_cmd_error("cannot encode %s", path);
        return 0;
    }
    ok = write_file(path, apr_pstrcat(p, text, "\n", NULL), strlen(text) + 1, 0644);
    free(text);
    return ok;
}

static int write_keys(apr_pool_t *p, const mxf_genroom_t *g, const char *dir)
{
    json_t *all = mxf_json_own(p, json_object());
    json_t *list = json_array();
    int i, n = mxf_genroom_server_count(g);

    json_object_set_new(all, "server_keys", list);
    for (i = 0; i < n; i++) {
        const char *name = mxf_genroom_server_name(g, i);
        const mxf_signing_key_t *key = mxf_genroom_server_key(g, i);
        char *line = mxf_key_format(p, key);
        const char *why = NULL;
        json_t *resp;
        int ok;

        ok = write_file(apr_pstrcat(p, dir, "/", name, ".key", NULL), line,
                        strlen(line), 0600);
        sodium_memzero(line, strlen(line));
        if (!ok) {
            return 0;
        }
        if (mxf_genroom_key_response(p, name, key, MXF_GENROOM_KEYS_VALID_UNTIL, &resp,
                                     &why) != APR_SUCCESS) {
            mxf_cmd_error("signing the key response of %s: %s", name, why);
            return 0;
        }
        if (!write_json(p, apr_pstrcat(p, dir, "/", name, ".json", NULL), resp)) {
            return 0;
        }
        json_array_append(list, resp);
    }
    return write_json(p, apr_pstrcat(p, dir, "/all.json", NULL), all);
}

static FILE *open_out(const char *path)
{
    FILE *f = fopen(path, "w");

    if (!f) {
        mxf_cmd_error("cannot create %s: %s", path, strerror(errno));
        return NULL;
    }
    setvbuf(f, NULL, _IOFBF, OUT_BUFFER);
    return f;
}

static int close_out(FILE *f, const char *path)
{
    int bad = ferror(f);

    if (fclose(f) != 0 || bad) {
        mxf_cmd_error("cannot write %s", path);
        return 0;
    }
    return 1;
}

int mxf_cmd_genroom(apr_pool_t *p, int argc, const char *const *argv)
{
    mxf_genroom_opts_t o;
    mxf_genroom_t *g;
    const char *dir = NULL, *value, *why = NULL, *room_path, *expect_path;
    outputs_t out;
    apr_time_t start;
    apr_status_t rv;
    int i, r, ok;

    mxf_genroom_opts_default(&o);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            genroom_usage(stdout);
            return MXF_EXIT_OK;
        }
        if ((r = mxf_cmd_opt_value(argc, argv, &i, "--out", &value)) != 0) {
            dir = value;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--room-version", &value)) != 0) {
            o.room_version = value;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--events", &value)) != 0) {
            r = r > 0 && parse_u64("--events", value, &o.events) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--servers", &value)) != 0) {
            r = r > 0 && parse_int("--servers", value, &o.servers) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--users-per-server", &value)) != 0) {
            r = r > 0 && parse_int("--users-per-server", value, &o.users_per_server) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--branchiness", &value)) != 0) {
            r = r > 0 && parse_fraction("--branchiness", value, &o.branchiness) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--conflicts", &value)) != 0) {
            r = r > 0 && parse_fraction("--conflicts", value, &o.conflicts) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--redactions", &value)) != 0) {
            r = r > 0 && parse_fraction("--redactions", value, &o.redactions) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--seed", &value)) != 0) {
            r = r > 0 && parse_u64("--seed", value, &o.seed) ? 1 : -1;
        }
        else if ((r = mxf_cmd_opt_value(argc, argv, &i, "--threads", &value)) != 0) {
            r = r > 0 && parse_int("--threads", value, &o.threads) ? 1 : -1;
        }
        else {
            mxf_cmd_error("unexpected argument '%s'", argv[i]);
            genroom_usage(stderr);
            return MXF_EXIT_USAGE;
        }
        if (r < 0) {
            return MXF_EXIT_USAGE;
        }
    }
    if (!dir) {
        mxf_cmd_error("gen-room needs --out DIR");
        genroom_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    if ((rv = mxf_genroom_create(p, &o, &g, &why)) != APR_SUCCESS) {
        mxf_cmd_error("gen-room: %s", why);
        return MXF_EXIT_USAGE;
    }
    if ((rv = apr_dir_make_recursive(apr_pstrcat(p, dir, "/keys", NULL),
                                     APR_FPROT_OS_DEFAULT, p)) != APR_SUCCESS) {
        char err[128];

        mxf_cmd_error("cannot create %s/keys: %s", dir, apr_strerror(rv, err, sizeof(err)));
        return MXF_EXIT_FAILURE;
    }
    if (!write_keys(p, g, apr_pstrcat(p, dir, "/keys", NULL))) {
        return MXF_EXIT_FAILURE;
    }
    room_path = apr_pstrcat(p, dir, "/room.jsonl", NULL);
    expect_path = apr_pstrcat(p, dir, "/expected.jsonl", NULL);
    if (!(out.room = open_out(room_path))) {
        return MXF_EXIT_FAILURE;
    }
    if (!(out.expect = open_out(expect_path))) {
        fclose(out.room);
        return MXF_EXIT_FAILURE;
    }
    start = apr_time_now();
    rv = mxf_genroom_run(g, write_line, &out, &why);
    ok = close_out(out.room, room_path);
    ok = close_out(out.expect, expect_path) && ok;
    if (rv != APR_SUCCESS) {
        mxf_log_perror(MXF_LOG_MARK, MXF_LOG_ERR, rv, p,
                       MXFLOGNO(24000) "gen-room failed: %s", why ? why : "?");
        return MXF_EXIT_FAILURE;
    }
    if (!ok || !write_json(p, apr_pstrcat(p, dir, "/expected.json", NULL),
                           mxf_genroom_summary(g, p))) {
        return MXF_EXIT_FAILURE;
    }
    printf("room %s (version %s): %" APR_UINT64_T_FMT " events in %.2f s -> %s\n",
           mxf_genroom_room_id(g), o.room_version, o.events,
           (double)(apr_time_now() - start) / APR_USEC_PER_SEC, dir);
    return MXF_EXIT_OK;
}
