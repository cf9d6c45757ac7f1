-- Migration 8: the consultation's state (embargo, close, tie rule, certification), the
-- requests tallyctl leaves for the running tallyd (retract, close, tie rule: each applied by
-- the single writer inside a checkpoint, so it enters the chain), and the views that read
-- the embargo and report progress by table and circuit (docs/consultation.md).

CREATE TABLE consultation_state (
    one                     boolean PRIMARY KEY DEFAULT true CHECK (one),
    -- One embargo gate: while true every output shows progress but no counts, ranks or
    -- winners. embargo_applied is what tallyd's own outputs apply now (tallyd writes it
    -- within a second of a change; tallyctl embargo waits for it).
    embargo                 boolean NOT NULL DEFAULT false,
    embargo_changed_at      timestamptz,
    embargo_actor           text,
    embargo_applied         boolean,
    closed_at               timestamptz,
    closed_checkpoint_id    bigint REFERENCES checkpoints (id),
    tie_rule                text CHECK (tie_rule IS NULL OR tie_rule = 'lot'),
    tie_seed                bytea CHECK (tie_seed IS NULL OR length(tie_seed) BETWEEN 16 AND 64),
    tie_seed_hash           bytea CHECK (tie_seed_hash IS NULL OR length(tie_seed_hash) = 32),
    certified_at            timestamptz,
    certified_checkpoint_id bigint REFERENCES checkpoints (id),
    certified_hash          bytea CHECK (certified_hash IS NULL OR length(certified_hash) = 32),
    certified_by            text,
    report_sha256           bytea,
    CHECK ((tie_rule IS NULL) = (tie_seed IS NULL) AND (tie_seed IS NULL) = (tie_seed_hash IS NULL)),
    CHECK (certified_at IS NULL OR closed_at IS NOT NULL)
);
INSERT INTO consultation_state DEFAULT VALUES;

CREATE TABLE requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('retract', 'close', 'tie_rule')),
    actor         text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    reason        text NOT NULL DEFAULT '' CHECK (length(reason) <= 1000),
    collector_id  text,
    seq           bigint,
    seed          bytea,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    checkpoint_id bigint REFERENCES checkpoints (id),
    outcome       text,
    CHECK ((kind = 'retract') = (collector_id IS NOT NULL AND seq IS NOT NULL)),
    CHECK ((kind = 'tie_rule') = (seed IS NOT NULL))
);
CREATE INDEX requests_pending_idx ON requests (id) WHERE done_at IS NULL;

-- A batch is retracted at most once.
CREATE UNIQUE INDEX corrections_retract_once ON corrections (collector_id, seq)
    WHERE kind = 'retract';

-- The results views under the embargo: rows stay (progress), counts and ranks go.
CREATE OR REPLACE VIEW results AS
SELECT p.id AS project_id,
       p.name AS project_name,
       c.circuit_id,
       c.name AS circuit_name,
       c.state,
       c.seats,
       CASE WHEN s.embargo THEN NULL ELSE v.votes END AS votes,
       CASE WHEN s.embargo THEN NULL
            ELSE rank() OVER (PARTITION BY c.area_id ORDER BY v.votes DESC) END AS rank,
       p.min_votes
FROM projects p
JOIN circuits c ON c.area_id = p.circuit_area_id
JOIN project_votes v ON v.project_id = p.id
CROSS JOIN consultation_state s;

-- Winners among the projects that reach their min_votes, ranked among themselves.
CREATE OR REPLACE VIEW circuit_winners AS
SELECT project_id, project_name, circuit_id, circuit_name, state, seats, votes, rank,
       (rank + same_votes - 1 > seats) AS tie
FROM (SELECT e.*, count(*) OVER (PARTITION BY e.circuit_id, e.votes) AS same_votes
      FROM (SELECT r.project_id, r.project_name, r.circuit_id, r.circuit_name, r.state,
                   r.seats, r.votes,
                   rank() OVER (PARTITION BY r.circuit_id ORDER BY r.votes DESC) AS rank
            FROM results r
            WHERE r.votes >= r.min_votes) e) x
WHERE rank <= seats;

-- Per voting table: how it reported and how many ballots it holds (progress, shown under
-- the embargo too). ballots: accepted per-ballot votes, or the current sheet's blank + null
-- + rows.
CREATE VIEW table_progress AS
SELECT t.id AS table_id,
       c.circuit_id,
       c.state,
       t.electors,
       CASE WHEN sh.table_id IS NOT NULL THEN 'sheet'
            WHEN coalesce(tb.ballots, 0) > 0 THEN 'ballots'
            ELSE 'none' END AS mode,
       (sh.table_id IS NOT NULL OR coalesce(tb.ballots, 0) > 0) AS reported,
       coalesce(sh.ballots, tb.ballots, 0)::bigint AS ballots,
       sh.version AS sheet_version
FROM voting_tables t
JOIN circuits c ON c.area_id = t.circuit_area_id
LEFT JOIN (SELECT u.id, sum(u.n) AS ballots
           FROM checkpoints k
           CROSS JOIN LATERAL unnest(k.table_ids, k.table_ballots) AS u(id, n)
           GROUP BY u.id) tb ON tb.id = t.id
LEFT JOIN (SELECT DISTINCT ON (table_id) table_id, version,
                  blank + null_ballots + (SELECT coalesce(sum(x), 0) FROM unnest(votes) AS x)
                      AS ballots
           FROM sheets ORDER BY table_id, version DESC) sh ON sh.table_id = t.id;

-- Per circuit: tables expected and reported, electors, ballots and turnout of the reported
-- tables, and the votes still possible (electors not yet voted at tables that report
-- ballot by ballot or have not reported).
CREATE VIEW circuit_progress AS
SELECT c.circuit_id,
       c.name AS circuit_name,
       c.state,
       count(t.table_id) AS tables,
       count(t.table_id) FILTER (WHERE t.reported) AS tables_reported,
       coalesce(sum(t.electors), 0)::bigint AS electors,
       coalesce(sum(t.electors) FILTER (WHERE t.reported), 0)::bigint AS electors_reported,
       coalesce(sum(t.ballots), 0)::bigint AS ballots,
       round(coalesce(sum(t.ballots), 0)::numeric
             / nullif(sum(t.electors) FILTER (WHERE t.reported), 0), 4) AS turnout,
       coalesce(sum(greatest(t.electors - t.ballots, 0)) FILTER (WHERE t.mode <> 'sheet'), 0)
           ::bigint AS remaining
FROM circuits c
LEFT JOIN table_progress t ON t.circuit_id = c.circuit_id
GROUP BY c.circuit_id, c.name, c.state;

-- Per circuit: decided when the votes still possible (remaining; 0 once closed; unknown for a
-- circuit without tables before close) cannot change its winners. The rule of
-- src/rules/rules.h: winners are the projects with votes > 0 and at least their min_votes,
-- seats filled a block of equal votes at a time; a block of such projects straddling the
-- last seat is a tie and never decided; otherwise decided iff every non-winner j has
-- votes_j + remaining < max(min_votes_j, 1, fewest votes of a winner when every seat is
-- filled). NULL under the embargo.
CREATE VIEW circuit_decided AS
WITH p AS (
    SELECT c.circuit_id, c.seats, pr.id AS project_id, v.votes, pr.min_votes,
           (v.votes > 0 AND v.votes >= pr.min_votes) AS candidate
    FROM projects pr
    JOIN circuits c ON c.area_id = pr.circuit_area_id
    JOIN project_votes v ON v.project_id = pr.id
), ranked AS (
    SELECT p.*,
           count(*) FILTER (WHERE candidate) OVER (PARTITION BY circuit_id ORDER BY votes DESC
                                                   RANGE BETWEEN UNBOUNDED PRECEDING
                                                   AND 1 PRECEDING) AS ahead,
           count(*) FILTER (WHERE candidate) OVER (PARTITION BY circuit_id, votes) AS block
    FROM p
), judged AS (
    SELECT r.*,
           (candidate AND coalesce(ahead, 0) + block <= seats) AS winner,
           (candidate AND coalesce(ahead, 0) < seats AND coalesce(ahead, 0) + block > seats)
               AS tie
    FROM ranked r
), circuit AS (
    SELECT circuit_id, seats, count(*) FILTER (WHERE winner) AS winners,
           min(votes) FILTER (WHERE winner) AS weakest, bool_or(tie) AS tie
    FROM judged GROUP BY circuit_id, seats
)
SELECT k.circuit_id,
       CASE WHEN st.embargo THEN NULL
            WHEN st.closed_at IS NULL AND cp.tables = 0 THEN false
            ELSE NOT k.tie AND (k.seats = 0 OR NOT EXISTS (
                SELECT 1 FROM judged j
                WHERE j.circuit_id = k.circuit_id AND NOT j.winner
                  AND j.votes + CASE WHEN st.closed_at IS NOT NULL THEN 0 ELSE cp.remaining END
                      >= CASE WHEN k.winners >= k.seats
                              THEN greatest(j.min_votes, 1, k.weakest)
                              ELSE greatest(j.min_votes, 1) END))
       END AS decided
FROM circuit k
JOIN circuit_progress cp ON cp.circuit_id = k.circuit_id
CROSS JOIN consultation_state st;

COMMENT ON VIEW circuit_decided IS
    'Per circuit: true when the votes still possible cannot change its winners (NULL under '
    'the embargo; false for a circuit without voting tables before close).';

-- What the public may know of the consultation's state.
CREATE VIEW consultation_status AS
SELECT CASE WHEN certified_at IS NOT NULL THEN 'official' ELSE 'provisional' END AS status,
       embargo,
       closed_at,
       certified_at,
       encode(certified_hash, 'hex') AS certified_hash,
       tie_rule,
       encode(tie_seed_hash, 'hex') AS tie_seed_hash
FROM consultation_state;

COMMENT ON TABLE consultation_state IS
    'The consultation''s state: embargo, close, tie rule (its seed stays here, its hash is '
    'public), certification. One row.';
COMMENT ON TABLE requests IS
    'What tallyctl asked the running tallyd to do (retract, close, tie rule): applied in a '
    'checkpoint, which enters the chain; outcome says how.';
COMMENT ON VIEW table_progress IS
    'Per voting table: how it reported (sheet, ballots or none) and its ballots.';
COMMENT ON VIEW circuit_progress IS
    'Per circuit: tables expected and reported, electors, ballots, turnout of the reported '
    'tables, and the votes still possible.';
COMMENT ON VIEW consultation_status IS
    'provisional or official (with the certified head hash), the embargo, close and tie rule.';
COMMENT ON COLUMN results.min_votes IS 'Votes the project needs at least to win a seat.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_reader') THEN
        GRANT SELECT ON table_progress, circuit_progress, circuit_decided, consultation_status
            TO tally_reader;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_writer') THEN
        GRANT SELECT ON consultation_state, requests TO tally_writer;
        GRANT UPDATE (embargo, embargo_changed_at, embargo_actor, embargo_applied, closed_at,
                      closed_checkpoint_id, tie_rule, tie_seed, tie_seed_hash)
            ON consultation_state TO tally_writer;
        GRANT UPDATE (done_at, checkpoint_id, outcome) ON requests TO tally_writer;
        GRANT SELECT ON table_progress, circuit_progress, circuit_decided, consultation_status
            TO tally_writer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_auditor') THEN
        GRANT SELECT ON consultation_state, requests, table_progress, circuit_progress,
                        circuit_decided, consultation_status TO tally_auditor;
    END IF;
END
$$;
