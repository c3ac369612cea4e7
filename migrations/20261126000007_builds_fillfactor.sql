-- A build's row is updated after it is inserted (routing, assignment, rejection, test counts, expiry). Room on each
-- page lets those updates stay on the page (HOT) without touching the primary key's index. `lathe replay` copies
-- the table's storage options to the tables it rebuilds.
ALTER TABLE read.builds SET (fillfactor = 70);
