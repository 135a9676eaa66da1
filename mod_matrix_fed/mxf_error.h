/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Matrix error codes (errcode values of the {"errcode","error"} bodies) used
 * by the core and the module.
 */
#ifndef mxf_error_h
#define mxf_error_h

#define MXF_M_UNRECOGNIZED   "M_UNRECOGNIZED"
#define MXF_M_NOT_FOUND      "M_NOT_FOUND"
#define MXF_M_FORBIDDEN      "M_FORBIDDEN"
#define MXF_M_UNAUTHORIZED   "M_UNAUTHORIZED"
#define MXF_M_BAD_JSON       "M_BAD_JSON"
#define MXF_M_NOT_JSON       "M_NOT_JSON"
#define MXF_M_INVALID_PARAM  "M_INVALID_PARAM"
#define MXF_M_MISSING_PARAM  "M_MISSING_PARAM"
#define MXF_M_TOO_LARGE      "M_TOO_LARGE"
#define MXF_M_UNKNOWN        "M_UNKNOWN"
#define MXF_M_LIMIT_EXCEEDED "M_LIMIT_EXCEEDED"

#endif /* mxf_error_h */
