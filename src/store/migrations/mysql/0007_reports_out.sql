-- mailctl's own tables: the reports this server sends to other domains (`mailctl reports send`). What `serve`
-- saw, one row per message (DMARC) or per delivery attempt (TLS), waits in mailctl_report_events until the daily
-- report about it is built; mailctl_reports_sent keeps one line per report built, unique by report id, so two
-- nodes sharing the database never send the same report twice.
CREATE TABLE IF NOT EXISTS mailctl_report_events (
  id bigint NOT NULL AUTO_INCREMENT,
  kind varchar(8) NOT NULL,
  domain varchar(255) NOT NULL,
  at bigint NOT NULL,
  rua varchar(2000) NOT NULL,
  policy text NOT NULL,
  detail text NOT NULL,
  PRIMARY KEY (id),
  KEY mailctl_report_events_at (kind, at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS mailctl_reports_sent (
  id bigint NOT NULL AUTO_INCREMENT,
  kind varchar(8) NOT NULL,
  domain varchar(255) NOT NULL,
  report_id varchar(255) NOT NULL,
  date_begin datetime NOT NULL,
  date_end datetime NOT NULL,
  records bigint NOT NULL,
  messages bigint NOT NULL,
  destinations varchar(2000) NOT NULL,
  outcome varchar(2000) NOT NULL,
  sent datetime NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY mailctl_reports_sent_key (kind, report_id),
  KEY mailctl_reports_sent_domain (domain, date_end)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
