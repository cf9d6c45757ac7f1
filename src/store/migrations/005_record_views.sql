-- Migration 5: drop what migration 4 converted (per-batch tokens and counts: the record
-- no longer links a token to a choice), make the chain mandatory, and have the views sum
-- the compacted tallies and the count deltas of the checkpoints after them.

ALTER TABLE batches DROP COLUMN tokens, DROP COLUMN project_ids, DROP COLUMN counts;
ALTER TABLE checkpoints ALTER COLUMN prev_hash SET NOT NULL,
                        ALTER COLUMN hash SET NOT NULL,
                        ADD CHECK (length(prev_hash) = 32 AND length(hash) = 32),
                        ADD CHECK (cardinality(delta_ids) = cardinality(delta_votes)),
                        ADD CHECK (length(page_digests) = 32 * cardinality(page_ids));
CREATE UNIQUE INDEX checkpoints_hash_idx ON checkpoints (hash);

-- Durable votes per project: the compacted cache plus every later checkpoint's delta.
CREATE VIEW project_votes AS
SELECT p.id AS project_id,
       coalesce(t.votes, 0) + coalesce(d.votes, 0) AS votes
FROM projects p
LEFT JOIN tallies t ON t.project_id = p.id
LEFT JOIN (SELECT u.id, sum(u.n)::bigint AS votes
           FROM checkpoints c
           CROSS JOIN LATERAL unnest(c.delta_ids, c.delta_votes) AS u(id, n)
           WHERE c.id > (SELECT through FROM tally_compaction)
           GROUP BY u.id) d ON d.id = p.id;

CREATE OR REPLACE VIEW results AS
SELECT p.id AS project_id,
       p.name AS project_name,
       c.circuit_id,
       c.name AS circuit_name,
       c.state,
       c.seats,
       v.votes,
       rank() OVER (PARTITION BY c.area_id ORDER BY v.votes DESC) AS rank
FROM projects p
JOIN circuits c ON c.area_id = p.circuit_area_id
JOIN project_votes v ON v.project_id = p.id;

COMMENT ON TABLE token_pages IS
    'Accepted ballot tokens, sorted little-endian 8-byte values, at least --min-anonymity '
    'per page. No column links a token to a batch, a collector, a project or a count.';
COMMENT ON TABLE checkpoints IS
    'One row per committed checkpoint: count deltas, token pages written, and the hash chain '
    '(docs/record.md). tallyctl verify recomputes all of it.';
