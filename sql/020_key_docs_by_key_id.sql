-- Server Keys objects by key ID, for the notary endpoints.
--
-- mxf_server_key_responses (011) keeps one object per server, the latest.
-- A key its server no longer lists (a rotation that leaves it out of
-- old_verify_keys, or a wrong answer from a misconfigured server) could then
-- no longer be had from this notary, though other servers still need it to
-- check events signed with it. Every object stored there is now also kept
-- under each key ID of its verify_keys, the latest object that listed that
-- key, by a trigger, so that both writers (the module's key fetches and
-- `matrix-fed import --keys`) keep them. The notary adds these to its
-- answer for the key IDs a request names that the latest object lacks.
CREATE TABLE mxf_server_key_docs (
    server_name     text    NOT NULL,
    key_id          text    NOT NULL,
    -- the object as received (JSON text), as in mxf_server_key_responses
    response        text    NOT NULL,
    valid_until_ts  bigint  NOT NULL,
    fetched_ts      bigint  NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- An object that PostgreSQL's jsonb cannot read (a \u0000 in a string,
-- which JSON allows) is kept as the latest, only not by key ID.
CREATE FUNCTION mxf_keep_key_docs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys jsonb;
BEGIN
    BEGIN
        keys := NEW.response::jsonb -> 'verify_keys';
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        RAISE WARNING 'the Server Keys object of % is not kept by key ID: %',
            NEW.server_name, SQLERRM;
        RETURN NEW;
    END;
    IF jsonb_typeof(keys) IS DISTINCT FROM 'object' THEN
        RETURN NEW;
    END IF;
    INSERT INTO mxf_server_key_docs (server_name, key_id, response, valid_until_ts, fetched_ts)
    SELECT NEW.server_name, k, NEW.response, NEW.valid_until_ts, NEW.fetched_ts
      FROM jsonb_object_keys(keys) k
    ON CONFLICT (server_name, key_id) DO UPDATE
       SET response = EXCLUDED.response, valid_until_ts = EXCLUDED.valid_until_ts,
           fetched_ts = EXCLUDED.fetched_ts
     WHERE EXCLUDED.fetched_ts >= mxf_server_key_docs.fetched_ts;
    RETURN NEW;
END
$$;

CREATE TRIGGER mxf_keep_key_docs AFTER INSERT OR UPDATE ON mxf_server_key_responses
    FOR EACH ROW EXECUTE FUNCTION mxf_keep_key_docs();

-- The objects kept so far, through the trigger.
UPDATE mxf_server_key_responses SET response = response;
