-- Migration 7: voting tables and their electors, a project's minimum votes to win, tally
-- sheets, per-batch counts, corrections, and chain format v3 with a Merkle root over each
-- checkpoint's batches (docs/consultation.md, docs/record.md).

ALTER TABLE projects ADD COLUMN min_votes bigint NOT NULL DEFAULT 0
    CHECK (min_votes BETWEEN 0 AND 2147483647);

CREATE TABLE voting_tables (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,63}$'),
    circuit_area_id bigint NOT NULL REFERENCES areas (id),
    electors        int NOT NULL CHECK (electors >= 0)
);
CREATE INDEX voting_tables_circuit_idx ON voting_tables (circuit_area_id);

-- Batches: what kind, every rejection reason (rejected_by_reason[k] is reason k of
-- docs/consultation.md: votes of a ballot batch, sheets of a sheet batch), the sheet
-- figures, and the batch's own counts (LEB128 pairs: project id step, votes) and ballots
-- per table. No token is anywhere near these columns.
ALTER TABLE batches
    ADD COLUMN kind text NOT NULL DEFAULT 'ballots' CHECK (kind IN ('ballots', 'sheets')),
    ADD COLUMN rejected_by_reason int[] NOT NULL DEFAULT '{}'
        CHECK (array_ndims(rejected_by_reason) IS NULL OR array_ndims(rejected_by_reason) = 1),
    ADD COLUMN sheets int NOT NULL DEFAULT 0 CHECK (sheets >= 0),
    ADD COLUMN sheets_accepted int NOT NULL DEFAULT 0 CHECK (sheets_accepted >= 0),
    ADD COLUMN sheets_duplicate int NOT NULL DEFAULT 0 CHECK (sheets_duplicate >= 0),
    ADD COLUMN counts bytea,
    ADD COLUMN table_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN table_ballots int[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(table_ids) = cardinality(table_ballots));

-- Collectors: their sheet figures beside the vote figures.
ALTER TABLE collectors
    ADD COLUMN sheets bigint NOT NULL DEFAULT 0,
    ADD COLUMN sheets_accepted bigint NOT NULL DEFAULT 0,
    ADD COLUMN sheets_duplicate bigint NOT NULL DEFAULT 0,
    ADD COLUMN sheets_rejected bigint NOT NULL DEFAULT 0;

ALTER TABLE checkpoints
    ADD COLUMN format int CHECK (format IS NULL OR format = 3),
    ADD COLUMN table_ids text[] NOT NULL DEFAULT '{}',
    ADD COLUMN table_ballots bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN merkle_root bytea CHECK (merkle_root IS NULL OR length(merkle_root) = 32),
    ADD COLUMN body_hash bytea CHECK (body_hash IS NULL OR length(body_hash) = 32),
    ADD CHECK (cardinality(table_ids) = cardinality(table_ballots)),
    ADD CHECK ((format IS NULL) = (merkle_root IS NULL) AND (format IS NULL) = (body_hash IS NULL));

-- Every accepted tally sheet; a table's current sheet is its highest version.
CREATE TABLE sheets (
    table_id      text NOT NULL REFERENCES voting_tables (id),
    version       int NOT NULL CHECK (version > 0),
    checkpoint_id bigint NOT NULL REFERENCES checkpoints (id),
    collector_id  text NOT NULL,
    seq           bigint NOT NULL,
    digest        bytea NOT NULL CHECK (length(digest) = 32),
    project_ids   bigint[] NOT NULL,
    votes         bigint[] NOT NULL CHECK (cardinality(votes) = cardinality(project_ids)),
    blank         int NOT NULL CHECK (blank >= 0),
    null_ballots  int NOT NULL CHECK (null_ballots >= 0),
    PRIMARY KEY (table_id, version),
    FOREIGN KEY (collector_id, seq) REFERENCES batches (collector_id, seq)
        DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE corrections (
    id            bigint PRIMARY KEY CHECK (id > 0),
    checkpoint_id bigint NOT NULL REFERENCES checkpoints (id),
    kind          text NOT NULL CHECK (kind IN ('sheet', 'retract')),
    actor         text NOT NULL,
    reason        text NOT NULL,
    at            timestamptz NOT NULL,
    table_id      text,
    collector_id  text,
    seq           bigint,
    from_version  int,
    to_version    int,
    project_ids   bigint[] NOT NULL,
    deltas        bigint[] NOT NULL CHECK (cardinality(deltas) = cardinality(project_ids)),
    blank_delta   bigint NOT NULL DEFAULT 0,
    null_delta    bigint NOT NULL DEFAULT 0,
    ballots_delta bigint NOT NULL DEFAULT 0
);
CREATE INDEX corrections_checkpoint_idx ON corrections (checkpoint_id);

COMMENT ON TABLE voting_tables IS
    'Voting tables (mesas): each in one circuit, with its number of electors.';
COMMENT ON COLUMN projects.min_votes IS 'Votes a project needs at least to win a seat.';
COMMENT ON TABLE sheets IS
    'Accepted tally sheets (actas): counts per project of one table, blank and null ballots. '
    'A later version replaces an earlier one; the highest version is the table''s.';
COMMENT ON TABLE corrections IS
    'Every correction of the count: a replaced tally sheet or a retracted batch, with who, '
    'why, when and the count deltas. Hashed into the chain of its checkpoint.';
COMMENT ON COLUMN batches.counts IS
    'Accepted votes of this batch per project (ballot batches): LEB128 varint pairs '
    '(project id minus the previous id, votes), ascending. No token is stored with them.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_writer') THEN
        GRANT SELECT ON voting_tables TO tally_writer;
        GRANT SELECT, INSERT ON sheets, corrections TO tally_writer;
        GRANT UPDATE (sheets, sheets_accepted, sheets_duplicate, sheets_rejected)
            ON collectors TO tally_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_auditor') THEN
        GRANT SELECT ON voting_tables, sheets, corrections TO tally_auditor;
    END IF;
END
$$;
