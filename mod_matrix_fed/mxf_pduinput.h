/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * The PDUs of an import's input, found without parsing them: the input may
 * be JSON lines (one PDU per line, the export format), or JSON as other
 * servers answer it and as operators save it - an array of PDUs, or a
 * federation response holding them (a transaction or /backfill answer's
 * "pdus", /state's "pdus" and "auth_chain", /event_auth's "auth_chain",
 * /get_missing_events' "events", /send_join's "state", "auth_chain" and
 * "event"), on one line or pretty-printed over many.
 *
 * Each PDU is handed on as the input's own bytes, so the importer stores
 * and exports it as it came; one spread over several lines is first copied
 * without the whitespace between its tokens (the bytes of its strings and
 * numbers unchanged), so that it fits on one line of an export.
 */
#ifndef mxf_pduinput_h
#define mxf_pduinput_h

#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_tables.h>

/* What a PDU is in the response that holds it. */
typedef enum {
    MXF_PDU_LOOSE = 0,                  /* a PDU of its own, or of a response's other lists */
    MXF_PDU_STATE,                      /* of /send_join's "state" (the state before "event") */
    MXF_PDU_EVENT                       /* /send_join's "event" */
} mxf_pdu_role_t;

typedef struct mxf_pdu_item {
    const char *text;                   /* the PDU's JSON (not NUL-terminated) */
    apr_size_t len;
    long line;                          /* the input line it starts on, from 1 */
    const char *where;                  /* NULL, or where in a response: "pdus[3]" */
    int response;                       /* the response holding it (from 1), or 0 */
    mxf_pdu_role_t role;
    int snapshot;                       /* its response has an "auth_chain" (/state,
                                         * /event_auth, /send_join): not history */
    long partial_line;                  /* its response says "members_omitted": true (a
                                         * partial-state /send_join answer): the line of
                                         * that member; else 0 */
} mxf_pdu_item_t;

/*
 * Appends the PDUs of @a buf to @a items (mxf_pdu_item_t), in input order.
 *
 * When the first line that is not blank holds one whole JSON value, the
 * input is read as JSON lines: each line that is not blank is one PDU, or
 * one array or response holding PDUs. A line that is not one whole JSON
 * value is handed on as it is, for the parser to say what is wrong with it.
 * Otherwise the input is read as a sequence of JSON values, each a PDU, an
 * array or a response; where one of them does not end, APR_EINVAL, with its
 * line in @a err_line and the reason in @a why - unless more than half of
 * the lines after the first are whole values (JSON lines whose first line
 * is bad), which are then read as JSON lines, every bad line handed on.
 * A v1 /send_join answer, [200, {...}], is read as its object.
 *
 * PDUs of the same response share its number, counted from 1 in input
 * order; those of a /send_join answer's "state" and "event" say so (role).
 * Those of a response with "members_omitted": true (a partial-state
 * /send_join answer, whose "state" lacks the members' events) say so too
 * (partial_line), for the importer to refuse them.
 *
 * An object is a PDU when it has a "type" member or none of the members
 * that hold PDUs in responses; elements of arrays that are not objects are
 * handed on as they are (the importer refuses them). A UTF-8 byte order mark
 * at the start is skipped.
 */
apr_status_t mxf_pdu_input_split(apr_pool_t *p, const char *buf, apr_size_t len,
                                 apr_array_header_t *items, long *err_line, const char **why);

/*
 * @a text, one JSON object, without its top-level member @a name (and the
 * comma that went with it), as *out and *out_len (from @a p): for a PDU
 * that the parser refuses only for what its "unsigned" carries (which
 * receivers strip first). APR_ENOENT when it has no such member, or is not
 * an object this scan can read.
 */
apr_status_t mxf_pdu_drop_member(apr_pool_t *p, const char *text, apr_size_t len,
                                 const char *name, const char **out, apr_size_t *out_len);

#endif /* mxf_pduinput_h */
