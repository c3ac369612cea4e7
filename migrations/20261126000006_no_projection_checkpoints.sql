-- Projections are applied in the append's own transaction, and a rebuild catches up by the events' global order,
-- so per-aggregate checkpoints decided nothing; writing three of them per build was most of an append's cost.
-- A projection's health is now read from the read model itself (streams without their row).
DROP TABLE read.projection_checkpoints;
