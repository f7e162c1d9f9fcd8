-- postfixadmin's vacation tables (its vacation.pl's), created only when missing: the auto-reply of a mailbox
-- (subject, body, the period it is active in, how often one sender hears it) and whom it has answered when.
-- Times are TIMESTAMP as in postfixadmin (UTC in mailctl's sessions), so a postfixadmin writing local times is
-- read right.
CREATE TABLE IF NOT EXISTS vacation (
  email varchar(255) NOT NULL,
  subject varchar(255) CHARACTER SET utf8mb4 NOT NULL,
  body text CHARACTER SET utf8mb4 NOT NULL,
  activefrom timestamp NOT NULL DEFAULT '2000-01-01 00:00:00',
  activeuntil timestamp NOT NULL DEFAULT '2038-01-18 00:00:00',
  cache text NOT NULL,
  domain varchar(255) NOT NULL,
  interval_time int NOT NULL DEFAULT 0,
  created datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
  modified timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  active tinyint(1) NOT NULL DEFAULT 1,
  PRIMARY KEY (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS vacation_notification (
  on_vacation varchar(255) NOT NULL,
  notified varchar(255) NOT NULL DEFAULT '',
  notified_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (on_vacation, notified),
  CONSTRAINT vacation_notification_pkey FOREIGN KEY (on_vacation) REFERENCES vacation (email) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
