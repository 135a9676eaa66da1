-- Server Keys objects by key ID, for the notary endpoints.
--
-- mxf_server_key_responses (011) keeps one object per server, the latest.
-- A key its server no longer lists (a rotation that leaves it out of
-- old_verify_keys, or a wrong answer from a misconfigured server) could then
-- no longer be had from this notary, though other servers still need it to
-- check events signed with it. Every object stored there is now also kept,
-- once (mxf_server_key_bodies, by its SHA-256), with the key IDs of its
-- verify_keys pointing at it (mxf_server_key_docs: the latest object that
-- listed each key), by a trigger, so that both writers (the module's key
-- fetches and `matrix-fed import --keys`) keep them. An object no key ID
-- points at any more is dropped. The notary adds these objects to its
-- answer for the key IDs a request names that the latest object lacks.
-- Each object is stored once whatever the number of its keys: a server
-- may list thousands in one object.
CREATE TABLE mxf_server_key_bodies (
    server_name     text    NOT NULL,
    sha256          bytea   NOT NULL,
    -- the object as received (JSON text), as in mxf_server_key_responses
    response        text    NOT NULL,
    valid_until_ts  bigint  NOT NULL,
    fetched_ts      bigint  NOT NULL,
    PRIMARY KEY (server_name, sha256)
);

CREATE TABLE mxf_server_key_docs (
    server_name     text    NOT NULL,
    key_id          text    NOT NULL,
    sha256          bytea   NOT NULL,
    fetched_ts      bigint  NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
CREATE INDEX mxf_server_key_docs_body ON mxf_server_key_docs (server_name, sha256);

-- An object that PostgreSQL's jsonb cannot read (a \u0000 in a string,
-- which JSON allows) is kept as the latest, only not by key ID.
--
-- The function runs with its owner's rights (the role that ran db init),
-- so that the roles writing mxf_server_key_responses need no grant on these
-- tables (README: the module's role writes the two key tables). It is
-- written so that such a role cannot make it run code of its own: every
-- function and operator it calls is named in pg_catalog (a function of the
-- same name in a schema the role can create in, public before PostgreSQL
-- 15, would otherwise be chosen where it matches the arguments better), and
-- it runs with pg_catalog, this schema and pg_temp last as its search path,
-- so that no temporary table of the writing session stands in for ours.
CREATE FUNCTION mxf_keep_key_docs() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    keys jsonb;
    h    bytea := pg_catalog.sha256(pg_catalog.convert_to(NEW.response, 'UTF8'::pg_catalog.name));
BEGIN
    BEGIN
        keys := NEW.response::pg_catalog.jsonb OPERATOR(pg_catalog.->) 'verify_keys'::pg_catalog.text;
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        RAISE WARNING 'the Server Keys object of % is not kept by key ID: %',
            NEW.server_name, SQLERRM;
        RETURN NEW;
    END;
    IF keys IS NULL
       OR pg_catalog.jsonb_typeof(keys) OPERATOR(pg_catalog.<>) 'object'::pg_catalog.text THEN
        RETURN NEW;
    END IF;
    INSERT INTO mxf_server_key_bodies (server_name, sha256, response, valid_until_ts, fetched_ts)
    VALUES (NEW.server_name, h, NEW.response, NEW.valid_until_ts, NEW.fetched_ts)
    ON CONFLICT (server_name, sha256) DO UPDATE
       SET fetched_ts = greatest(mxf_server_key_bodies.fetched_ts, EXCLUDED.fetched_ts);
    INSERT INTO mxf_server_key_docs (server_name, key_id, sha256, fetched_ts)
    SELECT NEW.server_name, k, h, NEW.fetched_ts FROM pg_catalog.jsonb_object_keys(keys) k
    ON CONFLICT (server_name, key_id) DO UPDATE
       SET sha256 = EXCLUDED.sha256, fetched_ts = EXCLUDED.fetched_ts
     WHERE EXCLUDED.fetched_ts OPERATOR(pg_catalog.>=) mxf_server_key_docs.fetched_ts;
    DELETE FROM mxf_server_key_bodies b
     WHERE b.server_name OPERATOR(pg_catalog.=) NEW.server_name
       AND NOT EXISTS (SELECT 1 FROM mxf_server_key_docs d
                        WHERE d.server_name OPERATOR(pg_catalog.=) b.server_name
                          AND d.sha256 OPERATOR(pg_catalog.=) b.sha256);
    RETURN NEW;
END
$$;
DO $$
BEGIN
    EXECUTE pg_catalog.format('ALTER FUNCTION mxf_keep_key_docs() SET search_path = pg_catalog, %I, pg_temp',
                              pg_catalog.current_schema());
END
$$;

CREATE TRIGGER mxf_keep_key_docs AFTER INSERT OR UPDATE ON mxf_server_key_responses
    FOR EACH ROW EXECUTE FUNCTION mxf_keep_key_docs();

-- The objects kept so far, through the trigger.
UPDATE mxf_server_key_responses SET response = response;
