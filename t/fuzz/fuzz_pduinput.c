/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * libFuzzer target for finding the PDUs of an import's input
 * (mxf_pdu_input_split, mxf_pduinput.h).
 *
 * For every input: split it; every item handed on lies inside the input or
 * is a copy without line breaks outside strings, and starts on a line the
 * input has; an item that is an object with "unsigned" loses exactly that
 * member through mxf_pdu_drop_member(). When the input is one JSON array (or one response object) of
 * PDU-shaped objects, as jansson reads it, the split must find exactly those
 * PDUs, each parsing to an equal value.
 *
 *   CC=clang ./configure --enable-fuzzers && make t/fuzz/fuzz_pduinput
 *   ./t/fuzz/fuzz_pduinput -max_total_time=20 <srcdir>/t/fuzz/corpus/pduinput
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <jansson.h>

#include "mxf_pduinput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static apr_pool_t *root;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&root, NULL) != APR_SUCCESS) {
        abort();
    }
    return 0;
}

/* The PDUs jansson finds in the whole input, when it is an array of them or a response. */
static json_t *expected_pdus(const char *text, size_t size)
{
    json_t *doc = json_loadb(text, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL), *list;
    size_t i;
    json_t *v;

    if (!doc) {
        return NULL;
    }
    if (json_is_object(doc) && !json_object_get(doc, "type")) {
        list = json_object_get(doc, "pdus");
        if (!json_is_array(list) || json_object_size(doc) != 1) {
            json_decref(doc);
            return NULL;
        }
        json_incref(list);
        json_decref(doc);
        doc = list;
    }
    if (!json_is_array(doc)) {
        json_decref(doc);
        return NULL;
    }
    json_array_foreach(doc, i, v) {
        if (!json_is_object(v) || !json_is_string(json_object_get(v, "type"))) {
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    apr_array_header_t *items;
    const char *text = (const char *)data, *why = NULL;
    long err_line = 0, lines = 1;
    size_t i;
    json_t *want;
    int k;

    for (i = 0; i < size; i++) {
        lines += data[i] == '\n';
    }
    apr_pool_create(&p, root);
    items = apr_array_make(p, 4, sizeof(mxf_pdu_item_t));
    if (mxf_pdu_input_split(p, text, size, items, &err_line, &why) != APR_SUCCESS) {
        if (!why || err_line < 1 || err_line > lines) {
            abort();
        }
        apr_pool_destroy(p);
        return 0;
    }
    for (k = 0; k < items->nelts; k++) {
        const mxf_pdu_item_t *it = &APR_ARRAY_IDX(items, k, mxf_pdu_item_t);
        int inside = it->text >= text && it->text + it->len <= text + size;
        json_t *obj;
        if (it->line < 1 || it->line > lines || it->len == 0) {
            abort();
        }
        if (!inside && (memchr(it->text, '\n', it->len) && !memchr(it->text, '"', it->len))) {
            abort();            /* a copy keeps line breaks only inside strings */
        }
        /* An object with "unsigned" (jansson's reading, no duplicate keys) loses
         * exactly that member. */
        obj = json_loadb(it->text, it->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
        if (json_is_object(obj) && json_object_get(obj, "unsigned")) {
            const char *out = NULL;
            apr_size_t out_len = 0;
            json_t *less;
            if (mxf_pdu_drop_member(p, it->text, it->len, "unsigned", &out, &out_len)
                != APR_SUCCESS) {
                abort();
            }
            less = json_loadb(out, out_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
            json_object_del(obj, "unsigned");
            if (!less || !json_equal(less, obj)) {
                abort();
            }
            json_decref(less);
        }
        json_decref(obj);
    }
    want = expected_pdus(text, size);
    if (want) {
        if ((size_t)items->nelts != json_array_size(want)) {
            abort();
        }
        for (k = 0; k < items->nelts; k++) {
            const mxf_pdu_item_t *it = &APR_ARRAY_IDX(items, k, mxf_pdu_item_t);
            json_t *got = json_loadb(it->text, it->len, JSON_ALLOW_NUL, NULL);
            if (!got || !json_equal(got, json_array_get(want, (size_t)k))) {
                abort();
            }
            json_decref(got);
        }
        json_decref(want);
    }
    apr_pool_destroy(p);
    return 0;
}
