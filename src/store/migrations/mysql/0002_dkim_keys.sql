-- mailctl's own table: DKIM keys, shared by every node that uses this database. A retired key keeps its row
-- (state 'retired', private key erased) so its selector is never handed out again. active_domain makes
-- "exactly one active key per domain" a constraint, not just a rule of the code.
CREATE TABLE IF NOT EXISTS mailctl_dkim_keys (
  domain varchar(255) NOT NULL,
  selector varchar(63) NOT NULL,
  algorithm varchar(32) NOT NULL,
  bits int NOT NULL,
  private_key text NOT NULL,
  public_key text NOT NULL,
  state varchar(16) NOT NULL,
  created datetime NOT NULL,
  modified datetime NOT NULL,
  active_domain varchar(255) AS (IF(state = 'active', domain, NULL)) STORED,
  PRIMARY KEY (domain, selector),
  UNIQUE KEY one_active_key (active_domain)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
