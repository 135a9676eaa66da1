/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Finding the PDUs of an import's input (see mxf_pduinput.h). This is a
 * structural scan only - strings, brackets and the members of the outer
 * objects - so that each PDU keeps its own bytes; the importer parses and
 * checks every one of them afterwards.
 */
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>

#include "mxf_pduinput.h"

/* Deeper than the parser takes (128): a deeper PDU is refused by it. */
#define MAX_DEPTH 512

/* Members of a response that hold PDUs: arrays of them, or one ("event"). */
static const char *const holder_arrays[] = { "pdus", "auth_chain", "state", "events", NULL };
#define HOLDER_OBJECT "event"
#define MAX_HELD 8

typedef struct scan {
    apr_pool_t *p;
    apr_array_header_t *items;
    const char *end;                    /* end of what is scanned (a line, or the input) */
    long line;                          /* the line of the scan's position */
    const char *why;                    /* why the last step failed */
    int responses;                      /* responses found so far */
    int response;                       /* the one whose PDUs are being handed on, or 0 */
    mxf_pdu_role_t role;                /* theirs */
    int snapshot;                       /* it has an "auth_chain" */
    long partial_line;                  /* its "members_omitted": true, or 0 */
} scan_t;

typedef struct held {
    const char *key, *v, *ve;
    apr_size_t klen;
    long line;
} held_t;

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *skip_ws(scan_t *sc, const char *s)
{
    for (; s < sc->end && is_ws(*s); s++) {
        if (*s == '\n') {
            sc->line++;
        }
    }
    return s;
}

/* @a s is at a '"': the byte after the string, or NULL when it does not end. */
static const char *skip_string(scan_t *sc, const char *s)
{
    for (s++; s < sc->end; s++) {
        const char *q = memchr(s, '"', (apr_size_t)(sc->end - s));
        apr_size_t n = (apr_size_t)((q ? q : sc->end) - s);

        /* The common case, a string without escapes or raw line feeds, in
         * word-at-a-time searches rather than a byte loop. */
        if (!memchr(s, '\\', n) && !memchr(s, '\n', n)) {
            s += n;
        }
        else {
            while (s < sc->end && *s != '"' && *s != '\\' && *s != '\n') {
                s++;
            }
        }
        if (s == sc->end) {
            break;
        }
        if (*s == '\\') {
            if (++s == sc->end) {
                break;
            }
        }
        else if (*s == '"') {
            return s + 1;
        }
        if (*s == '\n') {
            sc->line++;
        }
    }
    sc->why = "a string does not end";
    return NULL;
}

/*
 * @a s is at the first byte of a value: the byte after it, or NULL when it
 * does not end, its brackets do not match, or there is no value there.
 */
static const char *skip_value(scan_t *sc, const char *s)
{
    char stack[MAX_DEPTH];
    int depth = 0;

    if (s == sc->end || *s == ',' || *s == ':' || *s == ']' || *s == '}') {
        sc->why = "a value is missing";
        return NULL;
    }
    if (*s == '"') {
        return skip_string(sc, s);
    }
    if (*s != '{' && *s != '[') {       /* a number or literal: the parser judges it */
        while (s < sc->end && !is_ws(*s) && *s != ',' && *s != ']' && *s != '}') {
            s++;
        }
        return s;
    }
    while (s < sc->end) {
        char c = *s;

        if (c == '"') {
            if ((s = skip_string(sc, s)) == NULL) {
                return NULL;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH) {
                sc->why = "nested too deeply";
                return NULL;
            }
            stack[depth++] = c;
        }
        else if (c == '}' || c == ']') {
            if (stack[depth - 1] != (c == '}' ? '{' : '[')) {
                sc->why = "a closing bracket does not match its opening one";
                return NULL;
            }
            if (--depth == 0) {
                return s + 1;
            }
        }
        else if (c == '\n') {
            sc->line++;
        }
        s++;
    }
    sc->why = "it does not end";
    return NULL;
}

/*
 * The PDU [s, e), starting on @a line: the input's bytes, or, when it spans
 * lines, a copy without the whitespace between its tokens.
 */
static void emit(scan_t *sc, const char *s, const char *e, long line, const char *where)
{
    mxf_pdu_item_t *it = apr_array_push(sc->items);
    apr_size_t len = (apr_size_t)(e - s);

    it->line = line;
    it->where = where;
    it->response = sc->response;
    it->role = sc->role;
    it->snapshot = sc->snapshot;
    it->partial_line = sc->partial_line;
    if (!memchr(s, '\n', len) && !memchr(s, '\r', len)) {
        it->text = s;
        it->len = len;
    }
    else {
        char *out = apr_palloc(sc->p, len + 1), *o = out;
        int in_string = 0, escaped = 0;

        for (; s < e; s++) {
            if (in_string) {
                *o++ = *s;
                if (escaped) {
                    escaped = 0;
                }
                else if (*s == '\\') {
                    escaped = 1;
                }
                else if (*s == '"') {
                    in_string = 0;
                }
            }
            else if (!is_ws(*s)) {
                *o++ = *s;
                in_string = *s == '"';
            }
        }
        *o = '\0';
        it->text = out;
        it->len = (apr_size_t)(o - out);
    }
}

static const char *where_of(scan_t *sc, const char *where, const char *key, apr_size_t klen,
                            int index)
{
    const char *sep = where && key ? "." : "";

    if (index < 0) {
        return apr_psprintf(sc->p, "%s%s%.*s", where ? where : "", sep, (int)klen, key);
    }
    return apr_psprintf(sc->p, "%s%s%.*s[%d]", where ? where : "", sep,
                        key ? (int)klen : 0, key ? key : "", index);
}

static const char *object(scan_t *sc, const char *s, const char *where);

/*
 * The elements of the array at @a s: each a PDU, or with @a may_hold an
 * object that may also be a response holding PDUs. The byte after the
 * array, or NULL.
 */
static const char *array(scan_t *sc, const char *s, const char *where, const char *key,
                         apr_size_t klen, int may_hold)
{
    int i;

    s = skip_ws(sc, s + 1);
    if (s < sc->end && *s == ']') {
        return s + 1;
    }
    for (i = 0; s < sc->end; i++) {
        const char *at = where_of(sc, where, key, klen, i), *e;
        long line = sc->line;

        if (i == 0 && may_hold && sc->end - s > 3 && !memcmp(s, "200", 3)
            && (is_ws(s[3]) || s[3] == ',')) {
            e = s + 3;                  /* a v1 /send_join answer: [200, {...}] */
        }
        else if (*s == '{' && may_hold) {
            e = object(sc, s, at);
        }
        else if ((e = skip_value(sc, s)) != NULL) {
            emit(sc, s, e, line, at);
        }
        if (!e) {
            return NULL;
        }
        s = skip_ws(sc, e);
        if (s < sc->end && *s == ',') {
            s = skip_ws(sc, s + 1);
            continue;
        }
        if (s < sc->end && *s == ']') {
            return s + 1;
        }
        break;
    }
    sc->why = s < sc->end ? "an array's elements are not separated by commas"
                          : "it does not end";
    return NULL;
}

static int is_holder(const char *key, apr_size_t klen, char first)
{
    int i;

    if (first == '{') {
        return klen == sizeof(HOLDER_OBJECT) - 1 && !memcmp(key, HOLDER_OBJECT, klen);
    }
    for (i = 0; first == '[' && holder_arrays[i]; i++) {
        if (strlen(holder_arrays[i]) == klen && !memcmp(key, holder_arrays[i], klen)) {
            return 1;
        }
    }
    return 0;
}

/*
 * The object at @a s (not inside a response): a PDU, or a response whose
 * PDUs are handed on. The byte after it, or NULL.
 */
static const char *object(scan_t *sc, const char *s, const char *where)
{
    const char *start = s, *end_of_object;
    long line0 = sc->line, line_after;
    held_t held[MAX_HELD];
    int nheld = 0, has_type = 0, i;
    long partial_line = 0;

    s = skip_ws(sc, s + 1);
    while (s < sc->end && *s != '}') {
        const char *key, *v, *ve;
        apr_size_t klen;
        long vline;

        if (*s != '"') {
            goto whole;
        }
        key = s + 1;
        if ((s = skip_string(sc, s)) == NULL) {
            goto whole;
        }
        klen = (apr_size_t)(s - 1 - key);
        s = skip_ws(sc, s);
        if (s == sc->end || *s != ':') {
            goto whole;
        }
        s = skip_ws(sc, s + 1);
        vline = sc->line;
        v = s;
        if ((ve = skip_value(sc, s)) == NULL) {
            goto whole;
        }
        if (klen == 4 && !memcmp(key, "type", 4)) {
            has_type = 1;
        }
        else if (klen == 15 && !memcmp(key, "members_omitted", 15) && ve - v == 4
                 && !memcmp(v, "true", 4)) {
            partial_line = vline;       /* a partial-state /send_join answer */
        }
        else if (is_holder(key, klen, *v)) {
            if (nheld == MAX_HELD) {
                goto whole;
            }
            held[nheld].key = key;
            held[nheld].klen = klen;
            held[nheld].v = v;
            held[nheld].ve = ve;
            held[nheld++].line = vline;
        }
        s = skip_ws(sc, ve);
        if (s < sc->end && *s == ',') {
            s = skip_ws(sc, s + 1);
            if (s < sc->end && *s == '}') {
                goto whole;             /* a trailing comma: the parser says so */
            }
        }
        else if (s == sc->end || *s != '}') {
            goto whole;
        }
    }
    if (s == sc->end) {
        goto whole;
    }
    end_of_object = s + 1;
    if (has_type || nheld == 0) {
        emit(sc, start, end_of_object, line0, where);
        return end_of_object;
    }
    /* A response: its PDUs, member by member. */
    line_after = sc->line;
    sc->response = ++sc->responses;
    sc->partial_line = partial_line;
    for (i = 0; i < nheld; i++) {
        sc->snapshot |= held[i].klen == 10 && !memcmp(held[i].key, "auth_chain", 10);
    }
    for (i = 0; i < nheld; i++) {
        const char *saved_end = sc->end, *e;

        sc->end = held[i].ve;
        sc->line = held[i].line;
        sc->role = *held[i].v == '{' ? MXF_PDU_EVENT
                   : held[i].klen == 5 && !memcmp(held[i].key, "state", 5) ? MXF_PDU_STATE
                   : MXF_PDU_LOOSE;
        if (*held[i].v == '{') {
            emit(sc, held[i].v, held[i].ve, held[i].line,
                 where_of(sc, where, held[i].key, held[i].klen, -1));
            e = held[i].ve;
        }
        else {
            e = array(sc, held[i].v, where, held[i].key, held[i].klen, 0);
        }
        sc->end = saved_end;
        sc->role = MXF_PDU_LOOSE;
        if (!e) {
            sc->response = sc->snapshot = 0;
            sc->partial_line = 0;
            return NULL;
        }
    }
    sc->response = sc->snapshot = 0;
    sc->partial_line = 0;
    sc->line = line_after;
    return end_of_object;

whole:
    /* Not shaped as a response: one PDU, for the parser to judge. */
    sc->line = line0;
    if ((s = skip_value(sc, start)) != NULL) {
        emit(sc, start, s, line0, where);
    }
    return s;
}

/* One value of the input, at @a s: the byte after it, or NULL. */
static const char *value(scan_t *sc, const char *s)
{
    const char *e;
    long line = sc->line;

    if (*s == '{') {
        return object(sc, s, NULL);
    }
    if (*s == '[') {
        return array(sc, s, NULL, NULL, 0, 1);
    }
    if ((e = skip_value(sc, s)) != NULL) {
        emit(sc, s, e, line, NULL);     /* not an object: refused by the importer */
    }
    return e;
}

/*
 * The line [s, e) numbered @a no, read as JSON lines: 1 when it held one
 * whole value (its PDUs appended), 0 when it was handed on as it is.
 */
static int one_line(scan_t *sc, const char *s, const char *e, long no)
{
    int n = sc->items->nelts;
    const char *v = s, *after;

    sc->end = e;
    sc->line = no;
    if ((after = value(sc, v)) != NULL && skip_ws(sc, after) == e) {
        return 1;
    }
    sc->items->nelts = n;               /* what it found is dropped: the line goes as it is */
    while (e > s && is_ws(e[-1])) {
        e--;
    }
    emit(sc, s, e, no, NULL);
    return 0;
}

/* Reads [s, end), whose first line is numbered @a no, as JSON lines. */
static void json_lines(scan_t *sc, const char *s, const char *end, long no)
{
    while (s < end) {
        const char *nl = memchr(s, '\n', (apr_size_t)(end - s));
        const char *e = nl ? nl : end, *t;

        for (t = s; t < e && is_ws(*t); t++) {
        }
        if (t < e) {
            one_line(sc, t, e, no);
        }
        no++;
        s = nl ? nl + 1 : end;
    }
}

/*
 * Whether most of the lines after the first of [s, end) are whole JSON
 * values (of the next 1,000 that are not blank): JSON lines whose first
 * line is bad, not one value spread over many lines.
 */
static int looks_like_lines(apr_pool_t *p, const char *s, const char *end)
{
    scan_t sc;
    const char *nl = memchr(s, '\n', (apr_size_t)(end - s));
    int whole = 0, seen = 0;

    memset(&sc, 0, sizeof(sc));
    sc.p = p;
    sc.items = apr_array_make(p, 4, sizeof(mxf_pdu_item_t));
    for (s = nl ? nl + 1 : end; s < end && seen < 1000; ) {
        const char *e, *t;

        nl = memchr(s, '\n', (apr_size_t)(end - s));
        e = nl ? nl : end;
        for (t = s; t < e && is_ws(*t); t++) {
        }
        if (t < e) {
            seen++;
            whole += one_line(&sc, t, e, 1);
            sc.items->nelts = 0;
        }
        s = nl ? nl + 1 : end;
    }
    return 2 * whole > seen;
}

apr_status_t mxf_pdu_input_split(apr_pool_t *p, const char *buf, apr_size_t len,
                                 apr_array_header_t *items, long *err_line, const char **why)
{
    scan_t sc;
    const char *s = buf, *end = buf + len, *nl = NULL, *e = end, *t = end;
    long no;
    int n0 = items->nelts;

    memset(&sc, 0, sizeof(sc));
    sc.p = p;
    sc.items = items;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        s += 3;
    }
    /* The first line that is not blank decides: one whole value, JSON lines. */
    for (no = 1; s < end; no++) {
        nl = memchr(s, '\n', (apr_size_t)(end - s));
        e = nl ? nl : end;
        for (t = s; t < e && is_ws(*t); t++) {
        }
        if (t < e) {
            break;
        }
        s = nl ? nl + 1 : end;
    }
    if (s >= end) {
        return APR_SUCCESS;             /* nothing but blank lines */
    }
    if (one_line(&sc, t, e, no)) {
        json_lines(&sc, nl ? nl + 1 : end, end, no + 1);
        return APR_SUCCESS;
    }

    /* A sequence of JSON values, each over as many lines as it takes. */
    items->nelts = n0;
    sc.end = end;
    sc.line = no;
    for (t = skip_ws(&sc, s); t < end; t = skip_ws(&sc, e)) {
        long line = sc.line;

        e = value(&sc, t);
        if (!e || (e < end && !is_ws(*e))) {
            if (looks_like_lines(p, s, end)) {
                items->nelts = n0;
                json_lines(&sc, s, end, no);
                return APR_SUCCESS;
            }
            *err_line = e ? sc.line : line;
            *why = e ? "JSON values must be separated by whitespace"
                     : apr_psprintf(p, "the JSON value that starts here is not well formed: "
                                    "%s", sc.why ? sc.why : "it does not end");
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

/*
 * Whether the key whose text (quotes included) starts at @a key, @a klen
 * bytes between its quotes, is @a name: compared as written, or read by
 * the parser when it has escapes.
 */
static int key_is(const char *key, apr_size_t klen, const char *name, apr_size_t nlen)
{
    json_t *k;
    int same;

    if (!memchr(key + 1, '\\', klen)) {
        return klen == nlen && !memcmp(key + 1, name, nlen);
    }
    k = json_loadb(key, klen + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    same = json_is_string(k) && json_string_length(k) == nlen
           && !memcmp(json_string_value(k), name, nlen);
    json_decref(k);
    return same;
}

apr_status_t mxf_pdu_drop_member(apr_pool_t *p, const char *text, apr_size_t len,
                                 const char *name, const char **out, apr_size_t *out_len)
{
    scan_t sc;
    const char *s, *prev_end = NULL, *cut_from = NULL, *cut_to = NULL;
    apr_size_t nlen = strlen(name);
    char *o;

    memset(&sc, 0, sizeof(sc));
    sc.p = p;
    sc.end = text + len;
    s = skip_ws(&sc, text);
    if (s == sc.end || *s != '{') {
        return APR_ENOENT;
    }
    s = skip_ws(&sc, s + 1);
    while (s < sc.end && *s != '}') {
        const char *key = s, *ve;
        apr_size_t klen;

        if (*s != '"' || (s = skip_string(&sc, s)) == NULL) {
            return APR_ENOENT;
        }
        klen = (apr_size_t)(s - 1 - (key + 1));
        s = skip_ws(&sc, s);
        if (s == sc.end || *s != ':') {
            return APR_ENOENT;
        }
        s = skip_ws(&sc, s + 1);
        if ((ve = skip_value(&sc, s)) == NULL) {
            return APR_ENOENT;
        }
        if (!cut_from && key_is(key, klen, name, nlen)) {
            /* From the comma before it, or (the first member) to the one after it. */
            cut_from = prev_end ? prev_end : key;
            cut_to = ve;
        }
        s = skip_ws(&sc, ve);
        if (s < sc.end && *s == ',') {
            if (cut_to == ve && !prev_end) {
                cut_to = skip_ws(&sc, s + 1);
            }
            prev_end = ve;
            s = skip_ws(&sc, s + 1);
        }
        else if (s == sc.end || *s != '}') {
            return APR_ENOENT;
        }
    }
    if (!cut_from || s == sc.end) {
        return APR_ENOENT;
    }
    o = apr_palloc(p, len - (apr_size_t)(cut_to - cut_from) + 1);
    memcpy(o, text, (apr_size_t)(cut_from - text));
    memcpy(o + (cut_from - text), cut_to, (apr_size_t)(text + len - cut_to));
    *out_len = len - (apr_size_t)(cut_to - cut_from);
    o[*out_len] = '\0';
    *out = o;
    return APR_SUCCESS;
}
