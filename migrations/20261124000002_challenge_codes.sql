-- A challenge is issued for one activation code (its SHA-256, hex; never the code) and serves
-- only that code's activation. Rows from before this column have none: they serve no code and
-- expire. The index backs the per-code cap on outstanding challenges.

ALTER TABLE challenges ADD COLUMN code_hash TEXT;

CREATE INDEX challenges_code_hash ON challenges (code_hash);
