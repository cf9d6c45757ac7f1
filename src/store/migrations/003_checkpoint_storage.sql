-- Migration 3: checkpoint cost.
-- The per-batch count arrays are tens of KiB; pglz on them took most of the checkpoint
-- backend's CPU. Keep them out of line, uncompressed, like tokens.
ALTER TABLE batches ALTER COLUMN project_ids SET STORAGE EXTERNAL;
ALTER TABLE batches ALTER COLUMN counts SET STORAGE EXTERNAL;
-- Room on every page so that each checkpoint's tally updates are HOT (no index insert).
ALTER TABLE tallies SET (fillfactor = 50);
