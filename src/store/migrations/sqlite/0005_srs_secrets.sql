-- mailctl's own table: the secrets of the Sender Rewriting Scheme (SRS) for forwarded mail, shared by every
-- node that uses this database. The newest signs new addresses, all verify (`mailctl srs rotate`); like the
-- DKIM private keys they are never printed. (No AUTOINCREMENT: rowids only grow, since the newest secret is
-- never deleted, and SQLite keeps no sqlite_sequence table beside postfixadmin's.)
CREATE TABLE IF NOT EXISTS mailctl_srs_secrets (
  id INTEGER PRIMARY KEY,
  secret varchar(255) NOT NULL,
  created datetime NOT NULL
);
