-- Server signing keys: this server's published keys and the keys of other
-- servers, learnt from key files given to the importer or fetched by the
-- module. Shared by the module and the matrix-fed tool.
CREATE TABLE mxf_server_keys (
    server_name     text    NOT NULL,
    key_id          text    NOT NULL,
    public_key      bytea   NOT NULL CHECK (octet_length(public_key) = 32),
    valid_until_ts  bigint  NOT NULL,
    -- Set when the key was retired (an old_verify_keys entry).
    expired_ts      bigint,
    -- Where the key came from: 'file', 'direct', 'notary:<name>' or 'local'.
    source          text    NOT NULL,
    fetched_ts      bigint  NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
