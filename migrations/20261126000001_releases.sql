-- Licensed releases (docs/releases.md). Portable SQL: the same file runs on SQLite and
-- PostgreSQL. Identifiers are assigned by the application; times are RFC 3339 UTC text;
-- version strings are compared by the application, part by part.

CREATE TABLE releases (
    id                   BIGINT  PRIMARY KEY,
    type                 TEXT    NOT NULL,
    version              TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    description          TEXT    NOT NULL,
    developer            TEXT    NOT NULL,
    changelog            TEXT    NOT NULL,
    promo_link           TEXT    NOT NULL,
    lic_product_id       TEXT    NOT NULL REFERENCES products (key_id),
    lic_feature_id       BIGINT,
    conf                 TEXT    NOT NULL,
    min_conf_version     TEXT    NOT NULL,
    -- A JSON array of version strings.
    tested_conf_versions TEXT    NOT NULL,
    published            TEXT    NOT NULL,
    withdrawn            TEXT,
    UNIQUE (type, version)
);

CREATE INDEX releases_type ON releases (type, lic_product_id);

-- A release's files, in the vendor's order (the first is the release's download_link); the
-- bytes live once in the file store under their SHA-256.
CREATE TABLE release_files (
    release_id BIGINT  NOT NULL REFERENCES releases (id),
    position   BIGINT  NOT NULL,
    name       TEXT    NOT NULL,
    size       BIGINT  NOT NULL,
    md5        TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    PRIMARY KEY (release_id, position),
    UNIQUE (release_id, name)
);

CREATE INDEX release_files_sha256 ON release_files (sha256);

-- Completed downloads: one row per release, key and UTC day. key_tag is a keyed hash of the
-- key (never the key).
CREATE TABLE release_downloads (
    release_id BIGINT  NOT NULL REFERENCES releases (id),
    key_tag    TEXT    NOT NULL,
    day        TEXT    NOT NULL,
    PRIMARY KEY (release_id, key_tag, day)
);

-- Activation codes whose release access the vendor revoked: their KEY lists nothing.
CREATE TABLE release_revoked_keys (
    code    TEXT    PRIMARY KEY REFERENCES codes (code),
    revoked TEXT    NOT NULL
);

-- Secrets every centre sharing this database must share: the key download links are
-- authenticated with.
CREATE TABLE release_secrets (
    name  TEXT    PRIMARY KEY,
    value TEXT    NOT NULL
);
