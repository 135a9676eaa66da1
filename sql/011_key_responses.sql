-- Server Keys objects as their servers signed them, one per server (the one
-- valid longest), kept by the module's key fetches and `matrix-fed import
-- --keys` once verified. The module answers the notary endpoints
-- (/_matrix/key/v2/query) from them, adding its own signature; the keys
-- themselves are also in mxf_server_keys, which request authentication reads.
CREATE TABLE mxf_server_key_responses (
    server_name     text    PRIMARY KEY,
    -- The object as received (JSON text), signatures included.
    response        text    NOT NULL,
    valid_until_ts  bigint  NOT NULL,
    fetched_ts      bigint  NOT NULL
);
