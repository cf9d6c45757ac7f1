-- Migration 4: the record made safe (docs/record.md).
--  * writer: the single-writer epoch. The tallyd that holds the writer advisory lock bumps
--    it when it takes over; every checkpoint transaction checks it.
--  * token_pages: accepted ballot tokens, apart from every count, each page holding at
--    least --min-anonymity tokens.
--  * checkpoints gain their count deltas (the tally is the sum of them), the token pages
--    they wrote, and a hash chain over all of it.
--  * batches gain their content digest.
-- The rows an earlier schema wrote (tokens and counts per batch) are converted by a step
-- in C that runs in this migration's transaction (store/convert.c); migration 5 then
-- drops the old columns.

CREATE TABLE writer (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch       bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    host        text,
    pid         int,
    since       timestamptz
);
INSERT INTO writer DEFAULT VALUES;

CREATE TABLE token_pages (
    id     bigint PRIMARY KEY CHECK (id > 0),
    salt   bytea NOT NULL CHECK (length(salt) = 16),
    tokens bytea NOT NULL CHECK (length(tokens) % 8 = 0)
);
-- Random tokens do not compress: skip pglz's attempt on every write.
ALTER TABLE token_pages ALTER COLUMN tokens SET STORAGE EXTERNAL;

ALTER TABLE checkpoints
    ADD COLUMN epoch        bigint NOT NULL DEFAULT 0,
    ADD COLUMN duplicate    bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejected     bigint NOT NULL DEFAULT 0,
    ADD COLUMN delta_ids    bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN delta_votes  bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN page_ids     bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN page_digests bytea NOT NULL DEFAULT '',
    ADD COLUMN prev_hash    bytea,
    ADD COLUMN hash         bytea;
ALTER TABLE checkpoints ALTER COLUMN delta_ids SET STORAGE EXTERNAL;
ALTER TABLE checkpoints ALTER COLUMN delta_votes SET STORAGE EXTERNAL;

ALTER TABLE batches ADD COLUMN digest bytea CHECK (digest IS NULL OR length(digest) = 32);

-- tallies is now a cache: votes summed over the deltas of checkpoints 1..through.
CREATE TABLE tally_compaction (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    through bigint NOT NULL DEFAULT 0 CHECK (through >= 0)
);
INSERT INTO tally_compaction DEFAULT VALUES;
