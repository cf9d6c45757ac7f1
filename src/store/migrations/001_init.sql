-- Migration 1: the consultation, its areas and projects, collectors, the batch record,
-- tallies, checkpoints, and the read-only views dashboards and BI tools use.
-- Applied by store_migrate() in one transaction; never edit an applied migration,
-- add NNN_next.sql instead.

CREATE TABLE consultation (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,63}$'),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO consultation (id, name)
SELECT 'default', 'Consulta Popular Nacional'
WHERE NOT EXISTS (SELECT 1 FROM consultation);

-- A tree: state > (municipality >) circuit. States use their name as code; circuits use
-- their registry circuit_id in canonical decimal and carry the number of funded seats.
CREATE TABLE areas (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind      text NOT NULL CHECK (kind IN ('state', 'municipality', 'circuit')),
    code      text NOT NULL,
    name      text NOT NULL,
    parent_id bigint REFERENCES areas (id),
    seats     int CHECK (seats > 0),
    UNIQUE (kind, code),
    CHECK ((kind = 'circuit') = (seats IS NOT NULL)),
    CHECK (kind <> 'circuit' OR code ~ '^(0|[1-9][0-9]{0,9})$')
);
CREATE INDEX areas_parent_idx ON areas (parent_id);

CREATE TABLE projects (
    id              bigint PRIMARY KEY CHECK (id BETWEEN 0 AND 4294967295),
    name            text NOT NULL,
    circuit_area_id bigint NOT NULL REFERENCES areas (id)
);
CREATE INDEX projects_circuit_idx ON projects (circuit_area_id);

-- The circuit_id is computed under CASE so the cast never runs on a state's code,
-- whatever order the planner evaluates quals in.
CREATE VIEW circuits AS
SELECT CASE WHEN c.kind = 'circuit' THEN c.code::bigint END AS circuit_id,
       c.name,
       CASE WHEN p.kind = 'state' THEN p.name
            WHEN g.kind = 'state' THEN g.name END AS state,
       c.seats,
       c.id AS area_id
FROM areas c
LEFT JOIN areas p ON p.id = c.parent_id
LEFT JOIN areas g ON g.id = p.parent_id
WHERE c.kind = 'circuit';

CREATE TABLE checkpoints (
    id           bigint PRIMARY KEY CHECK (id > 0),
    committed_at timestamptz NOT NULL DEFAULT now(),
    batches      int NOT NULL,
    votes        bigint NOT NULL,
    accepted     bigint NOT NULL
);

CREATE TABLE collectors (
    id                 text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,63}$'),
    circuits           bigint[],          -- NULL: every circuit (restriction comes later)
    durable_seq        bigint NOT NULL DEFAULT 0 CHECK (durable_seq >= 0),
    batches            bigint NOT NULL DEFAULT 0,
    votes              bigint NOT NULL DEFAULT 0,
    accepted           bigint NOT NULL DEFAULT 0,
    duplicate          bigint NOT NULL DEFAULT 0,
    rejected           bigint NOT NULL DEFAULT 0,
    last_checkpoint_id bigint REFERENCES checkpoints (id),
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per applied batch. tokens: the accepted ballot tokens, sorted, 8 bytes each,
-- little-endian; project_ids/counts: accepted votes per project. Nothing links a token
-- to a project.
CREATE TABLE batches (
    collector_id     text NOT NULL REFERENCES collectors (id),
    seq              bigint NOT NULL CHECK (seq > 0),
    checkpoint_id    bigint NOT NULL REFERENCES checkpoints (id),
    votes            int NOT NULL,
    accepted         int NOT NULL,
    duplicate        int NOT NULL,
    rejected_unknown int NOT NULL,
    tokens           bytea NOT NULL CHECK (length(tokens) % 8 = 0),
    project_ids      bigint[] NOT NULL,
    counts           int[] NOT NULL CHECK (cardinality(counts) = cardinality(project_ids)),
    PRIMARY KEY (collector_id, seq)
);
-- Random tokens do not compress: skip pglz's attempt on every write.
ALTER TABLE batches ALTER COLUMN tokens SET STORAGE EXTERNAL;

CREATE TABLE tallies (
    project_id bigint PRIMARY KEY REFERENCES projects (id),
    votes      bigint NOT NULL DEFAULT 0 CHECK (votes >= 0)
);

CREATE VIEW results AS
SELECT p.id AS project_id,
       p.name AS project_name,
       c.circuit_id,
       c.name AS circuit_name,
       c.state,
       c.seats,
       coalesce(t.votes, 0) AS votes,
       rank() OVER (PARTITION BY c.area_id ORDER BY coalesce(t.votes, 0) DESC) AS rank
FROM projects p
JOIN circuits c ON c.area_id = p.circuit_area_id
LEFT JOIN tallies t ON t.project_id = p.id;

-- The projects each circuit funds. tie: this project's vote count is shared with a
-- project ranked past the last seat, so the seat is not decided by votes alone.
CREATE VIEW circuit_winners AS
SELECT project_id, project_name, circuit_id, circuit_name, state, seats, votes, rank,
       (rank + same_votes - 1 > seats) AS tie
FROM (SELECT r.*, count(*) OVER (PARTITION BY r.circuit_id, r.votes) AS same_votes
      FROM results r) x
WHERE rank <= seats;

CREATE VIEW collector_progress AS
SELECT c.id AS collector_id,
       c.durable_seq,
       c.batches,
       c.votes,
       c.accepted,
       c.duplicate,
       c.rejected,
       c.last_checkpoint_id,
       k.committed_at AS last_checkpoint_at,
       c.created_at
FROM collectors c
LEFT JOIN checkpoints k ON k.id = c.last_checkpoint_id;
