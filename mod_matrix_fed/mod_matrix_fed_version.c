/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include "mxf_version.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_router.h"

/* GET /_matrix/federation/v1/version */
int mxf_handle_version(mxf_req_t *req)
{
    json_t *body = mxf_json_own(req->r->pool,
                                json_pack("{s:{s:s, s:s}}", "server",
                                          "name", MXF_PACKAGE_NAME,
                                          "version", MXF_PACKAGE_VERSION));

    return mxf_http_send_json(req->r, HTTP_OK, body);
}
