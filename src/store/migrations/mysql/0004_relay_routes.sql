-- mailctl's own table: the relay host (smarthost) each sender domain's outbound mail goes through, shared by
-- every node that uses this database (`mailctl relay set`). The password is stored as the relay needs it (it
-- cannot be hashed); like the DKIM private keys it is never printed.
CREATE TABLE IF NOT EXISTS mailctl_relay_routes (
  domain varchar(255) NOT NULL,
  url varchar(512) NOT NULL,
  tls varchar(16) NOT NULL,
  username varchar(255) NULL,
  password text NULL,
  spf_include varchar(255) NULL,
  created datetime NOT NULL,
  modified datetime NOT NULL,
  PRIMARY KEY (domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
