-- mailctl's own tables: the reports receivers send about the hosted domains (`mailctl reports`). One row per
-- report in mailctl_reports, unique by (kind, reporting organization, report id), so a report stored twice is
-- stored once; its DMARC records or TLS results in the two detail tables, removed with it.
CREATE TABLE IF NOT EXISTS mailctl_reports (
  id INTEGER PRIMARY KEY,
  kind varchar(8) NOT NULL,
  domain varchar(255) NOT NULL,
  org_name varchar(255) NOT NULL,
  report_id varchar(255) NOT NULL,
  email varchar(255) NOT NULL,
  date_begin datetime NOT NULL,
  date_end datetime NOT NULL,
  policy varchar(255) NOT NULL,
  messages bigint NOT NULL,
  failed bigint NOT NULL,
  source varchar(255) NOT NULL,
  received datetime NOT NULL,
  UNIQUE (kind, org_name, report_id)
);
CREATE INDEX IF NOT EXISTS mailctl_reports_domain ON mailctl_reports (domain, date_end);
CREATE TABLE IF NOT EXISTS mailctl_report_dmarc (
  report bigint NOT NULL,
  source_ip varchar(45) NOT NULL,
  count bigint NOT NULL,
  disposition varchar(16) NOT NULL,
  dkim varchar(16) NOT NULL,
  spf varchar(16) NOT NULL,
  header_from varchar(255) NOT NULL,
  envelope_from varchar(255) NOT NULL,
  dkim_auth varchar(1000) NOT NULL,
  spf_auth varchar(1000) NOT NULL,
  reason varchar(255) NOT NULL
);
CREATE INDEX IF NOT EXISTS mailctl_report_dmarc_report ON mailctl_report_dmarc (report);
CREATE TABLE IF NOT EXISTS mailctl_report_tls (
  report bigint NOT NULL,
  policy_type varchar(32) NOT NULL,
  policy_domain varchar(255) NOT NULL,
  result varchar(64) NOT NULL,
  sending_ip varchar(45) NOT NULL,
  receiving_mx varchar(255) NOT NULL,
  receiving_ip varchar(45) NOT NULL,
  count bigint NOT NULL,
  detail varchar(1000) NOT NULL
);
CREATE INDEX IF NOT EXISTS mailctl_report_tls_report ON mailctl_report_tls (report);
