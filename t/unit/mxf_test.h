/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/* Shared by the unit test suites of the core (Check). */
#ifndef mxf_test_h
#define mxf_test_h

#include <check.h>
#include <apr_pools.h>

#include "mxf_json.h"

/* A fresh pool per test, destroyed after it (see main.c). */
extern apr_pool_t *mxf_test_pool;

void mxf_test_setup(void);
void mxf_test_teardown(void);

/* Parses @a text strictly (a test failure if it does not parse). */
json_t *mxf_test_parse(const char *text);

/* Canonical JSON of @a j (a test failure if it cannot be encoded). */
const char *mxf_test_canon(const json_t *j);

/* Adds a test case with the per-test pool fixture. */
TCase *mxf_test_case(const char *name);

Suite *mxf_suite_json(void);
Suite *mxf_suite_base64(void);
Suite *mxf_suite_key(void);
Suite *mxf_suite_acl(void);
Suite *mxf_suite_gate(void);
Suite *mxf_suite_iprange(void);
Suite *mxf_suite_genroom(void);
Suite *mxf_suite_canonical(void);
Suite *mxf_suite_sign(void);
Suite *mxf_suite_xmatrix(void);
Suite *mxf_suite_serverkeys(void);
Suite *mxf_suite_roomver(void);
Suite *mxf_suite_id(void);
Suite *mxf_suite_event(void);
Suite *mxf_suite_stateres(void);
Suite *mxf_suite_authrules(void);
Suite *mxf_suite_pduinput(void);

#endif /* mxf_test_h */
