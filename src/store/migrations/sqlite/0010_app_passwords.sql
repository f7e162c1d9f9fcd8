-- postfixadmin's tables for app passwords and the TOTP rule (its upgrade_1849), created only when missing: an
-- adopted postfixadmin 3.3+/4 database keeps its own. The `mailbox.totp_secret` column is added the same way
-- (see `ADD_COLUMNS` in migrate.rs: SQLite has no ADD COLUMN IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS mailbox_app_password (
  id integer PRIMARY KEY AUTOINCREMENT,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  password_hash varchar(255) DEFAULT NULL
);
CREATE TABLE IF NOT EXISTS totp_exception_address (
  id integer PRIMARY KEY AUTOINCREMENT,
  ip varchar(46) NOT NULL,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  UNIQUE (ip, username)
);
CREATE INDEX IF NOT EXISTS mailbox_app_password_username ON mailbox_app_password (username);
