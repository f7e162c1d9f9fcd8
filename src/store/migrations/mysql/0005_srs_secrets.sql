-- mailctl's own table: the secrets of the Sender Rewriting Scheme (SRS) for forwarded mail, shared by every
-- node that uses this database. The newest signs new addresses, all verify (`mailctl srs rotate`); like the
-- DKIM private keys they are never printed.
CREATE TABLE IF NOT EXISTS mailctl_srs_secrets (
  id bigint NOT NULL AUTO_INCREMENT,
  secret varchar(255) NOT NULL,
  created datetime NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
