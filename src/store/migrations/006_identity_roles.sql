-- Migration 6: collectors bound to a certificate and to circuits, disabled collectors, the
-- per-batch count of votes outside a collector's circuits, and the least-privilege roles
-- tallyd and auditors run as (docs/sql.md).
--
--  * collectors.cert_pin: SHA-256 of the pinned certificate's SubjectPublicKeyInfo (NULL:
--    none); one certificate identifies at most one collector.
--  * collectors.disabled_at: when tallyctl disable-collector ran (NULL: enabled).
--  * collectors.circuits (since migration 1, never written before): the registry's circuit
--    ids (circuits.circuit_id, the circuit_id column of the registry CSV) this collector
--    may take votes for; NULL: every circuit.
--  * batches.rejected_not_allowed: votes of the batch for a project outside the
--    collector's circuits. batches.rejected_unknown keeps its meaning (unknown project);
--    checkpoints.rejected and collectors.rejected count both.

ALTER TABLE collectors
    ADD COLUMN cert_pin bytea UNIQUE CHECK (length(cert_pin) = 32),
    ADD COLUMN disabled_at timestamptz,
    ADD CHECK (circuits IS NULL
               OR (array_ndims(circuits) = 1 AND array_position(circuits, NULL) IS NULL
                   AND 0 <= ALL (circuits) AND 4294967295 >= ALL (circuits)));

ALTER TABLE batches ADD COLUMN rejected_not_allowed integer NOT NULL DEFAULT 0
    CHECK (rejected_not_allowed >= 0);

COMMENT ON COLUMN collectors.cert_pin IS
    'SHA-256 of the SubjectPublicKeyInfo of the certificate this collector must present '
    '(tallyctl add-collector --cert); NULL: none pinned.';
COMMENT ON COLUMN collectors.disabled_at IS
    'When tallyctl disable-collector ran; NULL: enabled. A disabled collector is refused.';
COMMENT ON COLUMN collectors.circuits IS
    'Registry circuit ids (circuits.circuit_id) this collector may take votes for; NULL: every '
    'circuit. A vote outside them is rejected as not_allowed.';
COMMENT ON COLUMN batches.rejected_not_allowed IS
    'Votes of this batch for a project outside the collector''s circuits.';
COMMENT ON COLUMN collector_progress.rejected IS
    'Votes rejected (unknown project, or outside the collector''s circuits).';

-- Roles, as in migration 2: cluster-wide, so each may exist already or be created
-- concurrently by the migration of another database; without CREATEROLE the role is not
-- made and its grants are skipped with a WARNING (docs/sql.md gives the statements).
--
-- tally_writer: exactly what a running tallyd needs, read off the statements of
-- src/store (writer.c, checkpoint.c, pages.c, recover.c, catalog.c, migrate.c's version
-- read). No DDL, no DELETE or TRUNCATE anywhere, no sequence (every id tallyd writes is
-- chosen by tallyd), nothing on the registry but reading it, and on collectors only the
-- watermark and totals: a tallyd cannot register a collector, change its certificate, its
-- circuits or whether it is disabled. Advisory locks (the writer lock) and pg_locks /
-- pg_database (naming the lock's holder) need no grant. A login is made by a DBA:
--     CREATE ROLE tallyd LOGIN PASSWORD '...' IN ROLE tally_writer;
--
-- tally_auditor: SELECT on what tallyctl verify reads (store/verify.c, verify_pages.c), and
-- on what tallyctl status and results read; nothing else.
DO $$
DECLARE
    r text;
    have_role boolean;
BEGIN
    FOREACH r IN ARRAY ARRAY['tally_writer', 'tally_auditor'] LOOP
        SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) INTO have_role;
        IF NOT have_role THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
                have_role := true;
            EXCEPTION
                -- Made meanwhile by a migration of another database of this cluster.
                WHEN duplicate_object OR unique_violation THEN
                    have_role := true;
                WHEN insufficient_privilege THEN
                    RAISE WARNING 'role % not created: % lacks CREATEROLE; '
                                  'see docs/sql.md to create it and grant its rights by hand',
                                  r, current_user;
            END;
        END IF;
        IF have_role THEN
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), r);
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), r);
        END IF;
        IF have_role AND r = 'tally_writer' THEN
            -- start-up: is the schema current (no DDL when it is)
            GRANT SELECT ON schema_migrations TO tally_writer;
            -- recovery and the results API's catalog: the registry, read only
            GRANT SELECT ON consultation, areas, projects, circuits, project_votes
                TO tally_writer;
            -- the writer epoch: taken over at start (UPDATE ... RETURNING), read FOR SHARE
            -- by every checkpoint and compaction (FOR SHARE needs UPDATE)
            GRANT SELECT, UPDATE ON writer TO tally_writer;
            -- the checkpoint row; read back for the chain head and a lost COMMIT's hash
            GRANT SELECT, INSERT ON checkpoints TO tally_writer;
            -- the collectors list (recovery, the refresh); watermarks and totals only
            GRANT SELECT ON collectors TO tally_writer;
            GRANT UPDATE (durable_seq, batches, votes, accepted, duplicate, rejected,
                          last_checkpoint_id) ON collectors TO tally_writer;
            -- batch rows (COPY ... FROM STDIN needs INSERT); digests read at recovery
            GRANT SELECT, INSERT ON batches TO tally_writer;
            -- new token pages (COPY), the newest page rewritten in place, tokens read at
            -- recovery
            GRANT SELECT, INSERT ON token_pages TO tally_writer;
            GRANT UPDATE (salt, tokens) ON token_pages TO tally_writer;
            -- compaction: the mark moves, deltas fold into tallies (an upsert)
            GRANT SELECT, UPDATE ON tally_compaction TO tally_writer;
            GRANT SELECT, INSERT (project_id, votes), UPDATE (votes) ON tallies TO tally_writer;
        END IF;
        IF have_role AND r = 'tally_auditor' THEN
            -- verify: the schema version, the compaction mark, the writer epoch, every
            -- table of the record, the registry's projects, and the views it compares
            GRANT SELECT ON schema_migrations, tally_compaction, writer, checkpoints,
                            batches, token_pages, tallies, collectors, projects,
                            project_votes, results TO tally_auditor;
            -- status and results (store_recover): the consultation and the circuits
            GRANT SELECT ON consultation, areas TO tally_auditor;
        END IF;
    END LOOP;
END
$$;
