/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_roomver.h"

#define DEPTH_63 9223372036854775807LL   /* 2^63 - 1 */
#define DEPTH_53 9007199254740991LL      /* 2^53 - 1 */

/* Flags not named for a version are 0. */
static const mxf_roomver_t versions[] = {
    { .id = "1", .event_id_format = MXF_EVID_CARRIED, .redaction = MXF_REDACT_V1,
      .state_res = MXF_STATERES_V1, .ref_pairs = 1, .redaction_auth_rule = 1,
      .aliases_auth_rule = 1, .lenient_byte_limits = 1, .max_depth = DEPTH_63 },
    { .id = "2", .event_id_format = MXF_EVID_CARRIED, .redaction = MXF_REDACT_V1,
      .state_res = MXF_STATERES_V2, .ref_pairs = 1, .redaction_auth_rule = 1,
      .aliases_auth_rule = 1, .lenient_byte_limits = 1, .max_depth = DEPTH_63 },
    { .id = "3", .event_id_format = MXF_EVID_HASH_STD, .redaction = MXF_REDACT_V1,
      .state_res = MXF_STATERES_V2, .aliases_auth_rule = 1,
      .lenient_byte_limits = 1, .max_depth = DEPTH_63 },
    { .id = "4", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V1,
      .state_res = MXF_STATERES_V2, .aliases_auth_rule = 1,
      .lenient_byte_limits = 1, .max_depth = DEPTH_63 },
    { .id = "5", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V1,
      .state_res = MXF_STATERES_V2, .aliases_auth_rule = 1, .enforce_key_validity = 1,
      .lenient_byte_limits = 1, .max_depth = DEPTH_63 },
    { .id = "6", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V6,
      .state_res = MXF_STATERES_V2, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1,
      .lenient_byte_limits = 1, .max_depth = DEPTH_53 },
    { .id = "7", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V6,
      .state_res = MXF_STATERES_V2, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1, .knock = 1,
      .lenient_byte_limits = 1, .max_depth = DEPTH_53 },
    { .id = "8", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V8,
      .state_res = MXF_STATERES_V2, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1, .knock = 1,
      .restricted = 1, .lenient_byte_limits = 1, .max_depth = DEPTH_53 },
    { .id = "9", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V9,
      .state_res = MXF_STATERES_V2, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1, .knock = 1,
      .restricted = 1, .lenient_byte_limits = 1, .max_depth = DEPTH_53 },
    { .id = "10", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V9,
      .state_res = MXF_STATERES_V2, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1, .knock = 1,
      .restricted = 1, .knock_restricted = 1, .int_power_levels = 1,
      .lenient_byte_limits = 1, .max_depth = DEPTH_53 },
    { .id = "11", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V11,
      .state_res = MXF_STATERES_V2, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1, .knock = 1,
      .restricted = 1, .knock_restricted = 1, .int_power_levels = 1,
      .redacts_in_content = 1, .implicit_creator = 1, .max_depth = DEPTH_53 },
    { .id = "12", .event_id_format = MXF_EVID_HASH_URLSAFE, .redaction = MXF_REDACT_V11,
      .state_res = MXF_STATERES_V2_1, .enforce_key_validity = 1,
      .strict_canonical_json = 1, .notifications_pl_auth = 1, .knock = 1,
      .restricted = 1, .knock_restricted = 1, .int_power_levels = 1,
      .redacts_in_content = 1, .implicit_creator = 1, .room_id_is_create_hash = 1,
      .max_depth = DEPTH_53 },
};

#define NVERSIONS (sizeof(versions) / sizeof(versions[0]))

const mxf_roomver_t *mxf_roomver_get(const char *id)
{
    apr_size_t i;

    if (id == NULL) {
        return NULL;
    }
    for (i = 0; i < NVERSIONS; i++) {
        if (strcmp(versions[i].id, id) == 0) {
            return &versions[i];
        }
    }
    return NULL;
}

int mxf_roomver_id_valid(const char *id)
{
    apr_size_t n;

    if (id == NULL) {
        return 0;
    }
    for (n = 0; id[n]; n++) {
        char c = id[n];
        if (n >= 32 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                         || c == '.' || c == '-')) {
            return 0;
        }
    }
    return n > 0;
}

const mxf_roomver_t *mxf_roomver_lookup(apr_pool_t *p, const char *id, const char **why)
{
    const mxf_roomver_t *rv = mxf_roomver_get(id);

    if (rv == NULL && why) {
        if (id == NULL) {
            *why = "no room version given";
        }
        else if (!mxf_roomver_id_valid(id)) {
            *why = "malformed room version string";
        }
        else {
            *why = apr_psprintf(p, "unsupported room version \"%s\" (supported: 1 to 12)", id);
        }
    }
    return rv;
}

const mxf_roomver_t *mxf_roomver_all(apr_size_t *count)
{
    if (count) {
        *count = NVERSIONS;
    }
    return versions;
}
