-- mailctl's own tables: greylisting (`[server.greylisting]`). One row per (client network, sender, recipient)
-- triplet seen, with when it was first seen and when a retry was taken; and the client networks that retried,
-- exempt until a time. Shared by every node on the database.
CREATE TABLE IF NOT EXISTS mailctl_greylist (
  network varchar(64) NOT NULL,
  sender varchar(255) NOT NULL,
  recipient varchar(255) NOT NULL,
  first_seen bigint NOT NULL,
  passed bigint NOT NULL,
  PRIMARY KEY (network, sender, recipient)
);
CREATE TABLE IF NOT EXISTS mailctl_greylist_networks (
  network varchar(64) NOT NULL PRIMARY KEY,
  until bigint NOT NULL
);
