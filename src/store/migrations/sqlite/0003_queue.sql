-- mailctl's own tables: the outbound queue when [server.queue] backend = "database". The configuration only
-- allows that backend on MySQL/MariaDB (the queue is shared by nodes); the SQLite tables exist so the same
-- code runs in unit tests. Columns and meanings as in the MySQL migration.
CREATE TABLE IF NOT EXISTS mailctl_queue (
  id varchar(24) NOT NULL PRIMARY KEY,
  sender varchar(320) NOT NULL,
  created datetime NOT NULL,
  size bigint NOT NULL,
  hold int NOT NULL DEFAULT 0,
  next_attempt datetime NOT NULL,
  record text NOT NULL,
  lease_holder varchar(255),
  lease_claim bigint,
  lease_pid bigint,
  lease_expires datetime
);
CREATE INDEX IF NOT EXISTS mailctl_queue_due ON mailctl_queue (hold, next_attempt);
CREATE TABLE IF NOT EXISTS mailctl_queue_bodies (
  id varchar(24) NOT NULL,
  seq int NOT NULL,
  chunk blob NOT NULL,
  PRIMARY KEY (id, seq)
);
