-- The licensing centre's schema. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Identifiers and counters are assigned by the application; times are RFC 3339 UTC text.

CREATE TABLE products (
    key_id               TEXT    PRIMARY KEY,
    product_name         TEXT    NOT NULL,
    article              TEXT    NOT NULL,
    article_name         TEXT    NOT NULL,
    product_version      BIGINT  NOT NULL,
    product_version_name TEXT,
    flags                BIGINT  NOT NULL,
    next_key_no          BIGINT  NOT NULL,
    next_reg_no          BIGINT  NOT NULL
);

CREATE TABLE codes (
    code             TEXT    PRIMARY KEY,
    key_id           TEXT    NOT NULL REFERENCES products (key_id),
    key_type         BIGINT  NOT NULL,
    service_type     BIGINT  NOT NULL,
    licence_count    BIGINT  NOT NULL,
    period_days      BIGINT  NOT NULL,
    start_date       TEXT,
    itn              TEXT,
    iec              TEXT,
    support_date     TEXT,
    support_end_date TEXT,
    support_type     BIGINT,
    restore_limit    BIGINT  NOT NULL,
    created          TEXT    NOT NULL
);

CREATE TABLE activations (
    code      TEXT    PRIMARY KEY REFERENCES codes (code),
    key_id    TEXT    NOT NULL,
    key_no    BIGINT  NOT NULL,
    reg_no    BIGINT  NOT NULL,
    binding   TEXT    NOT NULL,
    itn       TEXT,
    iec       TEXT,
    activated TEXT    NOT NULL,
    updated   TEXT    NOT NULL,
    restores  BIGINT  NOT NULL,
    UNIQUE (key_id, key_no),
    UNIQUE (key_id, reg_no)
);
