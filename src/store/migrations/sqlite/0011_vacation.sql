-- postfixadmin's vacation tables (its vacation.pl's; upgrade_1824_sqlite), created only when missing: the
-- auto-reply of a mailbox (subject, body, the period it is active in, how often one sender hears it) and whom
-- it has answered when.
CREATE TABLE IF NOT EXISTS vacation (
  email varchar(255) NOT NULL PRIMARY KEY,
  subject varchar(255) NOT NULL,
  body text NOT NULL DEFAULT '',
  activefrom datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  activeuntil datetime NOT NULL DEFAULT '2038-01-18 00:00:00',
  cache text NOT NULL DEFAULT '',
  domain varchar(255) NOT NULL,
  interval_time int NOT NULL DEFAULT 0,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  active int NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS vacation_notification (
  on_vacation varchar(255) NOT NULL,
  notified varchar(255) NOT NULL DEFAULT '',
  notified_at datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (on_vacation, notified),
  FOREIGN KEY (on_vacation) REFERENCES vacation (email) ON DELETE CASCADE
);
