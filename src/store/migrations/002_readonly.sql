-- Migration 2: a read-only group role for dashboards and BI tools that read PostgreSQL
-- directly, and the documentation of the views they read (COMMENT ON, shown by \d+ in psql
-- and by most BI tools). docs/sql.md says the same with examples.
--
-- tally_reader may read the views results, circuit_winners, collector_progress and
-- circuits, and nothing else: not the tables, and in particular not batches, whose ballot
-- tokens are not for dashboards. The views run with their owner's rights, so no grant on
-- the tables underneath is needed. A login for a dashboard is made by a DBA, e.g.
--     CREATE ROLE grafana LOGIN PASSWORD '...' IN ROLE tally_reader;
--
-- Roles belong to the whole cluster while this migration runs once per database: the
-- role may exist already (another consultation's database, a DBA who made it beforehand)
-- or be created by a concurrent migration of another database; all are fine. If the user
-- migrating may not create roles, the grants are skipped with a WARNING rather than
-- failing tallyd's start; docs/sql.md gives the statements a DBA runs then.

DO $$
DECLARE
    have_role boolean;
BEGIN
    SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tally_reader') INTO have_role;
    IF NOT have_role THEN
        BEGIN
            CREATE ROLE tally_reader NOLOGIN;
            have_role := true;
        EXCEPTION
            -- Made meanwhile by a migration of another database of this cluster.
            WHEN duplicate_object OR unique_violation THEN
                have_role := true;
            WHEN insufficient_privilege THEN
                RAISE WARNING 'role tally_reader not created: % lacks CREATEROLE; '
                              'see docs/sql.md to create it and grant its rights by hand',
                              current_user;
        END;
    END IF;
    IF have_role THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO tally_reader', current_database());
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO tally_reader', current_schema());
        GRANT SELECT ON results, circuit_winners, collector_progress, circuits TO tally_reader;
    END IF;
END
$$;

COMMENT ON VIEW circuits IS
    'Communal circuits: each elects (funds) its top `seats` projects. One row per circuit.';
COMMENT ON COLUMN circuits.circuit_id IS 'Circuit id from the registry (circuit_id column of the CSV).';
COMMENT ON COLUMN circuits.name IS 'Circuit name.';
COMMENT ON COLUMN circuits.state IS 'State (or Distrito Capital / Dependencias Federales) the circuit belongs to.';
COMMENT ON COLUMN circuits.seats IS 'Number of projects the circuit funds (its top `seats` by votes).';
COMMENT ON COLUMN circuits.area_id IS 'Internal area id; joins projects.circuit_area_id. Not stable across databases.';

COMMENT ON VIEW results IS
    'Durable votes of every project, zeros included, with its rank inside its circuit. '
    'Only what a committed checkpoint holds: the same numbers as tallyctl results and the HTTP API.';
COMMENT ON COLUMN results.project_id IS 'Project id from the registry.';
COMMENT ON COLUMN results.project_name IS 'Project name.';
COMMENT ON COLUMN results.circuit_id IS 'Circuit the project competes in (circuits.circuit_id).';
COMMENT ON COLUMN results.circuit_name IS 'Name of that circuit.';
COMMENT ON COLUMN results.state IS 'State of that circuit.';
COMMENT ON COLUMN results.seats IS 'Projects the circuit funds.';
COMMENT ON COLUMN results.votes IS 'Accepted votes for the project (durable; 0 when none yet).';
COMMENT ON COLUMN results.rank IS
    'Competition rank inside the circuit by votes (1, 2, 2, 4): equal votes share a rank.';

COMMENT ON VIEW circuit_winners IS
    'Projects ranked within their circuit''s seats (rank <= seats). When tie is true the '
    'seat is not decided by votes alone: the project shares its vote count with one ranked '
    'past the last seat, and no winner should be announced for that seat.';
COMMENT ON COLUMN circuit_winners.project_id IS 'Project id from the registry.';
COMMENT ON COLUMN circuit_winners.project_name IS 'Project name.';
COMMENT ON COLUMN circuit_winners.circuit_id IS 'Circuit id.';
COMMENT ON COLUMN circuit_winners.circuit_name IS 'Circuit name.';
COMMENT ON COLUMN circuit_winners.state IS 'State of the circuit.';
COMMENT ON COLUMN circuit_winners.seats IS 'Projects the circuit funds.';
COMMENT ON COLUMN circuit_winners.votes IS 'Accepted votes for the project (durable).';
COMMENT ON COLUMN circuit_winners.rank IS 'Competition rank inside the circuit (1 = most votes).';
COMMENT ON COLUMN circuit_winners.tie IS
    'True when this project''s vote count is shared with a project ranked past the last seat: '
    'the seat is undecided.';

COMMENT ON VIEW collector_progress IS
    'One row per registered collector: what of its batches is durable. Counts are of '
    'committed checkpoints only.';
COMMENT ON COLUMN collector_progress.collector_id IS 'Collector id (as in tallyctl add-collector).';
COMMENT ON COLUMN collector_progress.durable_seq IS
    'Highest batch sequence number of this collector committed to PostgreSQL (0: none yet).';
COMMENT ON COLUMN collector_progress.batches IS 'Batches of this collector committed.';
COMMENT ON COLUMN collector_progress.votes IS 'Votes received in those batches (accepted + duplicate + rejected).';
COMMENT ON COLUMN collector_progress.accepted IS 'Votes counted.';
COMMENT ON COLUMN collector_progress.duplicate IS
    'Votes not counted because their ballot had already voted (at any collector).';
COMMENT ON COLUMN collector_progress.rejected IS 'Votes rejected (unknown project).';
COMMENT ON COLUMN collector_progress.last_checkpoint_id IS
    'Last checkpoint that committed a batch of this collector (NULL: none yet).';
COMMENT ON COLUMN collector_progress.last_checkpoint_at IS 'When that checkpoint committed.';
COMMENT ON COLUMN collector_progress.created_at IS 'When the collector was registered.';
