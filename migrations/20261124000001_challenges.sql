-- Attestation challenges the centre has issued and not yet seen used. A row is deleted when
-- its challenge is used (once) or once it has expired; the application caps how many exist.
-- expires_ms: Unix time in milliseconds, so "not yet expired" is a plain integer comparison.

CREATE TABLE challenges (
    challenge  TEXT    PRIMARY KEY,
    expires_ms BIGINT  NOT NULL
);

CREATE INDEX challenges_expires ON challenges (expires_ms);
