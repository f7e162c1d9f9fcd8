-- mailctl's own tables: the outbound queue when [server.queue] backend = "database", shared by every `serve`
-- node on this database (issue 6). One row per queued message in mailctl_queue, its bytes in
-- mailctl_queue_bodies (in chunks, so a 25 MiB message never meets max_allowed_packet).
--
-- record is the queue entry as JSON (the same record the spool writes); sender, created and size repeat it
-- for people reading the table. hold and next_attempt drive the due scan: next_attempt is when a delivery
-- run has work on the row next (its earliest due recipient, notice or removal), pushed to the lease expiry
-- while a node holds a lease, so the scan never walks leased rows. The lease_* columns name the node
-- delivering the row and until when; an expired lease is taken over by any node.
CREATE TABLE IF NOT EXISTS mailctl_queue (
  id char(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  sender varchar(320) NOT NULL,
  created datetime(6) NOT NULL,
  size bigint NOT NULL,
  hold tinyint NOT NULL DEFAULT 0,
  next_attempt datetime(6) NOT NULL,
  record mediumtext NOT NULL,
  lease_holder varchar(255) NULL,
  lease_claim bigint NULL,
  lease_pid bigint NULL,
  lease_expires datetime(6) NULL,
  PRIMARY KEY (id),
  KEY mailctl_queue_due (hold, next_attempt)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE IF NOT EXISTS mailctl_queue_bodies (
  id char(24) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  seq int NOT NULL,
  chunk mediumblob NOT NULL,
  PRIMARY KEY (id, seq)
) ENGINE=InnoDB;
