-- Customer accounts (абоненты), their service users and servicing organisations: the data of
-- the Service Manager account API (docs/accounts.md). Portable SQL for SQLite and PostgreSQL;
-- booleans are BIGINT 0/1, money is BIGINT kopecks, times are RFC 3339 UTC text.

CREATE TABLE accounts (
    id        BIGINT  PRIMARY KEY,
    name      TEXT    NOT NULL,
    site      TEXT    NOT NULL DEFAULT '',
    city      TEXT    NOT NULL DEFAULT '',
    email     TEXT    NOT NULL DEFAULT '',
    phone     TEXT    NOT NULL DEFAULT '',
    itn       TEXT,
    iec       TEXT,
    -- Bumped first by every change to the account's users: the UPDATE takes the row's lock,
    -- so on PostgreSQL concurrent changes to one account's users run one after another and
    -- the "at least one owner" check of each sees the other's result.
    revision  BIGINT  NOT NULL DEFAULT 0,
    created   TEXT    NOT NULL
);

-- A service user: one login across every account it is attached to. login_key is the login
-- in lower case (logins are unique regardless of case). password_hash is NULL for a user
-- created without a password: it cannot log in until the vendor sets one.
CREATE TABLE service_users (
    login_key     TEXT  PRIMARY KEY,
    login         TEXT  NOT NULL,
    name          TEXT  NOT NULL,
    email         TEXT  NOT NULL DEFAULT '',
    phone         TEXT  NOT NULL DEFAULT '',
    timezone      TEXT  NOT NULL DEFAULT '',
    password_hash TEXT,
    created       TEXT  NOT NULL,
    -- The account whose owner or administrator created it (NULL: the vendor); bounds how
    -- many service users one account can make.
    created_by    BIGINT
);

CREATE INDEX service_users_created_by ON service_users (created_by);

-- A service user's role in an account. temporary_until: access ends then (is_temporary).
CREATE TABLE account_users (
    account_id          BIGINT  NOT NULL REFERENCES accounts (id),
    login_key           TEXT    NOT NULL REFERENCES service_users (login_key),
    role                TEXT    NOT NULL,
    description         TEXT    NOT NULL DEFAULT '',
    session_restriction BIGINT  NOT NULL DEFAULT 0,
    temporary_until     TEXT,
    PRIMARY KEY (account_id, login_key)
);

CREATE INDEX account_users_login ON account_users (login_key);

-- An account that is a servicing organisation (обслуживающая организация).
CREATE TABLE servants (
    account_id                 BIGINT  PRIMARY KEY REFERENCES accounts (id),
    servant_id                 TEXT    NOT NULL DEFAULT '',
    tariff_subscribe_allowed   BIGINT  NOT NULL DEFAULT 0,
    automatic_billing_allowed  BIGINT  NOT NULL DEFAULT 0,
    tariff_override_allowed    BIGINT  NOT NULL DEFAULT 0,
    tariff_selection_page_only BIGINT  NOT NULL DEFAULT 0,
    tariff_selection_page      TEXT
);

-- Which servicing organisations serve which accounts.
CREATE TABLE account_servants (
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    servant    BIGINT NOT NULL REFERENCES servants (account_id),
    PRIMARY KEY (account_id, servant)
);

CREATE INDEX account_servants_servant ON account_servants (servant);

CREATE TABLE servant_tariffs (
    servant           BIGINT  NOT NULL REFERENCES servants (account_id),
    id                TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    tariff_id         TEXT    NOT NULL,
    brief_description TEXT    NOT NULL DEFAULT '',
    description_html  TEXT    NOT NULL DEFAULT '',
    is_extension      BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (servant, id)
);

CREATE TABLE tariff_images (
    servant  BIGINT  NOT NULL,
    tariff   TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    data     TEXT    NOT NULL,
    position BIGINT  NOT NULL,
    PRIMARY KEY (servant, tariff, name)
);

CREATE TABLE tariff_periods (
    servant     BIGINT  NOT NULL,
    tariff      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    period      TEXT    NOT NULL,
    quantity    BIGINT  NOT NULL,
    cost_kopecks BIGINT,
    comment     TEXT    NOT NULL DEFAULT '',
    recommended BIGINT  NOT NULL DEFAULT 0,
    position    BIGINT  NOT NULL,
    PRIMARY KEY (servant, tariff, id)
);

-- The additional attributes (fields) and properties an account, and an account's user, may
-- carry: configured by the vendor. target: account_field, account_property or user_field;
-- kind: string, number, date or boolean.
CREATE TABLE attached_definitions (
    target TEXT NOT NULL,
    name   TEXT NOT NULL,
    kind   TEXT NOT NULL,
    PRIMARY KEY (target, name)
);

-- Values, as JSON text. login_key is the user's for user_field, '' for an account's own.
CREATE TABLE attached_values (
    target     TEXT    NOT NULL,
    account_id BIGINT  NOT NULL,
    login_key  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    PRIMARY KEY (target, account_id, login_key, name)
);

-- The account a code was issued to; licences activated from it belong to that account.
ALTER TABLE codes ADD COLUMN account_id BIGINT REFERENCES accounts (id);

CREATE INDEX codes_account ON codes (account_id);
