-- postfixadmin's tables for app passwords and the TOTP rule (its upgrade_1849), created only when missing: an
-- adopted postfixadmin 3.3+/4 database keeps its own. The `mailbox.totp_secret` column is added the same way
-- (see `ADD_COLUMNS` in migrate.rs: MySQL has no ADD COLUMN IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS mailbox_app_password (
  id int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  password_hash varchar(255) DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS totp_exception_address (
  id int(11) NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ip varchar(46) NOT NULL,
  username varchar(255) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  UNIQUE KEY ip_user (ip, username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
