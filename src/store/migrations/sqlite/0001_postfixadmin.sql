-- postfixadmin's tables in SQLite, with the same columns and meanings as its MySQL schema.
CREATE TABLE IF NOT EXISTS domain (
  domain varchar(255) NOT NULL PRIMARY KEY,
  description varchar(255) NOT NULL DEFAULT '',
  aliases int NOT NULL DEFAULT 0,
  mailboxes int NOT NULL DEFAULT 0,
  maxquota bigint NOT NULL DEFAULT 0,
  quota bigint NOT NULL DEFAULT 0,
  transport varchar(255) NOT NULL DEFAULT '',
  backupmx int NOT NULL DEFAULT 0,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active int NOT NULL DEFAULT 1,
  password_expiry int DEFAULT 0
);

CREATE TABLE IF NOT EXISTS mailbox (
  username varchar(255) NOT NULL PRIMARY KEY,
  password varchar(255) NOT NULL,
  name varchar(255) NOT NULL DEFAULT '',
  maildir varchar(255) NOT NULL,
  quota bigint NOT NULL DEFAULT 0,
  local_part varchar(255) NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active int NOT NULL DEFAULT 1,
  phone varchar(30) NOT NULL DEFAULT '',
  email_other varchar(255) NOT NULL DEFAULT '',
  token varchar(255) NOT NULL DEFAULT '',
  token_validity datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  password_expiry datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  smtp_active int NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS mailbox_domain ON mailbox (domain);

CREATE TABLE IF NOT EXISTS alias (
  address varchar(255) NOT NULL PRIMARY KEY,
  goto text NOT NULL,
  domain varchar(255) NOT NULL,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active int NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alias_domain_idx ON alias (domain);

CREATE TABLE IF NOT EXISTS alias_domain (
  alias_domain varchar(255) NOT NULL PRIMARY KEY,
  target_domain varchar(255) NOT NULL,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  active int NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alias_domain_target ON alias_domain (target_domain);
