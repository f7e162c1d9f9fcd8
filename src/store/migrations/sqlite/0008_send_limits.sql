-- mailctl's own tables: sending limits of logged-in users (`mailctl limits`) and the breaker. A limit row per scope (`default`,
-- a domain or an address; NULL: no limit of that kind); the usage of each sender per hour (`H` + YYYYMMDDHH) and
-- per day (`D` + YYYYMMDD), shared by every node on this database; and whom each sender has written to, for
-- the limit on new recipients per day.
CREATE TABLE IF NOT EXISTS mailctl_send_limits (
  scope varchar(255) NOT NULL PRIMARY KEY,
  messages_per_hour bigint,
  recipients_per_day bigint,
  new_recipients_per_day bigint,
  unknown_recipients_per_day bigint,
  modified datetime NOT NULL
);
CREATE TABLE IF NOT EXISTS mailctl_send_usage (
  address varchar(255) NOT NULL,
  period varchar(16) NOT NULL,
  messages bigint NOT NULL,
  recipients bigint NOT NULL,
  new_recipients bigint NOT NULL,
  refused bigint NOT NULL,
  unknown bigint NOT NULL,
  PRIMARY KEY (address, period)
);
CREATE TABLE IF NOT EXISTS mailctl_send_recipients (
  address varchar(255) NOT NULL,
  recipient varchar(255) NOT NULL,
  first_sent datetime NOT NULL,
  PRIMARY KEY (address, recipient)
);
