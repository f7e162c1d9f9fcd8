
use builtin;
use str;

set edit:completion:arg-completer[mailctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'mailctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'mailctl'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand domain 'Manage hosted domains'
            cand mailbox 'Manage mailboxes'
            cand user 'Manage mailboxes'
            cand alias 'Manage aliases, forwardings and catch-alls (@domain)'
            cand alias-domain 'Manage alias domains (every address of one domain delivered to the same address of another)'
            cand dkim 'DKIM keys: generate, rotate, publish, sign and verify'
            cand dns 'The DNS records a domain must publish'
            cand audit 'Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)'
            cand serve 'Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)'
            cand queue 'Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats'
            cand relay 'Relay hosts (smarthosts) per sender domain: set, list, delete'
            cand limits 'Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show, delete, usage'
            cand srs 'SRS secrets for forwarded mail: rotate, list, forward, reverse'
            cand reports 'DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary'
            cand bench 'Load generators for measuring a running server'
            cand cert 'The listeners'' TLS certificate: status, renew (from the ACME CA of [server.acme])'
            cand vacation 'Out-of-office auto-replies of mailboxes: set, show, off'
            cand checkpassword 'Dovecot''s checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)'
            cand import 'Import domains, mailboxes and aliases from a CSV file, all or nothing'
            cand export 'Export every domain, mailbox and alias as CSV or JSON'
            cand config 'Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve'
            cand db 'Database schema: migrate, status'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;domain'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add a hosted domain'
            cand list 'List hosted domains with their usage'
            cand show 'Show one domain with its limits and usage'
            cand update 'Change a domain''s description, limits or flags'
            cand delete 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;domain;add'= {
            cand --description 'Free-text description'
            cand --max-mailboxes 'Most mailboxes allowed (0 unlimited, -1 none)'
            cand --max-aliases 'Most aliases allowed, catch-all included (0 unlimited, -1 none)'
            cand --max-quota-mb 'Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default'
            cand --domain-quota-mb 'Total quota of all mailboxes in MB (0 unlimited)'
            cand --backup-mx 'This server is only a backup MX for the domain (relays to the primary)'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --active 'Mark as active'
            cand --inactive 'Mark as inactive (kept, but mail is not accepted or delivered)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;domain;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;domain;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;domain;update'= {
            cand --description 'Free-text description'
            cand --max-mailboxes 'Most mailboxes allowed (0 unlimited, -1 none)'
            cand --max-aliases 'Most aliases allowed, catch-all included (0 unlimited, -1 none)'
            cand --max-quota-mb 'Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default'
            cand --domain-quota-mb 'Total quota of all mailboxes in MB (0 unlimited)'
            cand --backup-mx 'This server is only a backup MX for the domain (relays to the primary)'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --active 'Mark as active'
            cand --inactive 'Mark as inactive (kept, but mail is not accepted or delivered)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;domain;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --force 'Also delete every mailbox, alias and alias-domain mapping of the domain'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;domain;help'= {
            cand add 'Add a hosted domain'
            cand list 'List hosted domains with their usage'
            cand show 'Show one domain with its limits and usage'
            cand update 'Change a domain''s description, limits or flags'
            cand delete 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;domain;help;add'= {
        }
        &'mailctl;domain;help;list'= {
        }
        &'mailctl;domain;help;show'= {
        }
        &'mailctl;domain;help;update'= {
        }
        &'mailctl;domain;help;delete'= {
        }
        &'mailctl;domain;help;help'= {
        }
        &'mailctl;mailbox'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add a mailbox (and its self-alias row, as postfixadmin does)'
            cand list 'List mailboxes, all or of one domain'
            cand show 'Show one mailbox'
            cand update 'Change a mailbox''s name, quota or flags'
            cand passwd 'Set a new password'
            cand enable 'Let the mailbox receive mail and log in again'
            cand disable 'Stop delivery and logins for the mailbox, keeping its mail'
            cand delete 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)'
            cand app-password 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)'
            cand totp 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add a mailbox (and its self-alias row, as postfixadmin does)'
            cand list 'List mailboxes, all or of one domain'
            cand show 'Show one mailbox'
            cand update 'Change a mailbox''s name, quota or flags'
            cand passwd 'Set a new password'
            cand enable 'Let the mailbox receive mail and log in again'
            cand disable 'Stop delivery and logins for the mailbox, keeping its mail'
            cand delete 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)'
            cand app-password 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)'
            cand totp 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;add'= {
            cand --name 'Display name'
            cand --quota-mb 'Quota in MB (0 unlimited) [default: the domain''s max quota per mailbox]'
            cand --scheme 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --inactive 'Create it inactive'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --random-password 'Generate a random password and print it once'
            cand --random 'Generate a random password and print it once'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;add'= {
            cand --name 'Display name'
            cand --quota-mb 'Quota in MB (0 unlimited) [default: the domain''s max quota per mailbox]'
            cand --scheme 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --inactive 'Create it inactive'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --random-password 'Generate a random password and print it once'
            cand --random 'Generate a random password and print it once'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;update'= {
            cand --name 'Display name'
            cand --quota-mb 'Quota in MB (0 unlimited)'
            cand --smtp 'Allow (true) or refuse (false) SMTP AUTH for this mailbox'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --active 'Mark as active'
            cand --inactive 'Mark as inactive (kept, but mail is not accepted or delivered)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;update'= {
            cand --name 'Display name'
            cand --quota-mb 'Quota in MB (0 unlimited)'
            cand --smtp 'Allow (true) or refuse (false) SMTP AUTH for this mailbox'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --active 'Mark as active'
            cand --inactive 'Mark as inactive (kept, but mail is not accepted or delivered)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;passwd'= {
            cand --scheme 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --random-password 'Generate a random password and print it once'
            cand --random 'Generate a random password and print it once'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;passwd'= {
            cand --scheme 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --random-password 'Generate a random password and print it once'
            cand --random 'Generate a random password and print it once'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;enable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;enable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;disable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;disable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;app-password'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;app-password;add'= {
            cand --description 'What it is for, like "phone" or "laptop"'
            cand --scheme 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --random-password 'Generate a random password and print it once'
            cand --random 'Generate a random password and print it once'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;app-password;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;app-password;revoke'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;app-password;help'= {
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;app-password;help;add'= {
        }
        &'mailctl;mailbox;app-password;help;list'= {
        }
        &'mailctl;mailbox;app-password;help;revoke'= {
        }
        &'mailctl;mailbox;app-password;help;help'= {
        }
        &'mailctl;user;app-password'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;app-password;add'= {
            cand --description 'What it is for, like "phone" or "laptop"'
            cand --scheme 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --password-stdin 'Read the password from the first line of standard input'
            cand --random-password 'Generate a random password and print it once'
            cand --random 'Generate a random password and print it once'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;app-password;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;app-password;revoke'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;app-password;help'= {
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;app-password;help;add'= {
        }
        &'mailctl;user;app-password;help;list'= {
        }
        &'mailctl;user;app-password;help;revoke'= {
        }
        &'mailctl;user;app-password;help;help'= {
        }
        &'mailctl;mailbox;totp'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;totp;enable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;totp;disable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;totp;exception'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;totp;exception;add'= {
            cand --for 'A mailbox address or a domain'
            cand --description 'Why (e.g. "office webmail")'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;totp;exception;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;totp;exception;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;mailbox;totp;exception;help'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;totp;exception;help;add'= {
        }
        &'mailctl;mailbox;totp;exception;help;list'= {
        }
        &'mailctl;mailbox;totp;exception;help;delete'= {
        }
        &'mailctl;mailbox;totp;exception;help;help'= {
        }
        &'mailctl;mailbox;totp;help'= {
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;totp;help;enable'= {
        }
        &'mailctl;mailbox;totp;help;disable'= {
        }
        &'mailctl;mailbox;totp;help;exception'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
        }
        &'mailctl;mailbox;totp;help;exception;add'= {
        }
        &'mailctl;mailbox;totp;help;exception;list'= {
        }
        &'mailctl;mailbox;totp;help;exception;delete'= {
        }
        &'mailctl;mailbox;totp;help;help'= {
        }
        &'mailctl;user;totp'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;totp;enable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;totp;disable'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;totp;exception'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;totp;exception;add'= {
            cand --for 'A mailbox address or a domain'
            cand --description 'Why (e.g. "office webmail")'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;totp;exception;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;totp;exception;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;user;totp;exception;help'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;totp;exception;help;add'= {
        }
        &'mailctl;user;totp;exception;help;list'= {
        }
        &'mailctl;user;totp;exception;help;delete'= {
        }
        &'mailctl;user;totp;exception;help;help'= {
        }
        &'mailctl;user;totp;help'= {
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;totp;help;enable'= {
        }
        &'mailctl;user;totp;help;disable'= {
        }
        &'mailctl;user;totp;help;exception'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
        }
        &'mailctl;user;totp;help;exception;add'= {
        }
        &'mailctl;user;totp;help;exception;list'= {
        }
        &'mailctl;user;totp;help;exception;delete'= {
        }
        &'mailctl;user;totp;help;help'= {
        }
        &'mailctl;mailbox;help'= {
            cand add 'Add a mailbox (and its self-alias row, as postfixadmin does)'
            cand list 'List mailboxes, all or of one domain'
            cand show 'Show one mailbox'
            cand update 'Change a mailbox''s name, quota or flags'
            cand passwd 'Set a new password'
            cand enable 'Let the mailbox receive mail and log in again'
            cand disable 'Stop delivery and logins for the mailbox, keeping its mail'
            cand delete 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)'
            cand app-password 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)'
            cand totp 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;mailbox;help;add'= {
        }
        &'mailctl;mailbox;help;list'= {
        }
        &'mailctl;mailbox;help;show'= {
        }
        &'mailctl;mailbox;help;update'= {
        }
        &'mailctl;mailbox;help;passwd'= {
        }
        &'mailctl;mailbox;help;enable'= {
        }
        &'mailctl;mailbox;help;disable'= {
        }
        &'mailctl;mailbox;help;delete'= {
        }
        &'mailctl;mailbox;help;app-password'= {
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
        }
        &'mailctl;mailbox;help;app-password;add'= {
        }
        &'mailctl;mailbox;help;app-password;list'= {
        }
        &'mailctl;mailbox;help;app-password;revoke'= {
        }
        &'mailctl;mailbox;help;totp'= {
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
        }
        &'mailctl;mailbox;help;totp;enable'= {
        }
        &'mailctl;mailbox;help;totp;disable'= {
        }
        &'mailctl;mailbox;help;totp;exception'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
        }
        &'mailctl;mailbox;help;totp;exception;add'= {
        }
        &'mailctl;mailbox;help;totp;exception;list'= {
        }
        &'mailctl;mailbox;help;totp;exception;delete'= {
        }
        &'mailctl;mailbox;help;help'= {
        }
        &'mailctl;user;help'= {
            cand add 'Add a mailbox (and its self-alias row, as postfixadmin does)'
            cand list 'List mailboxes, all or of one domain'
            cand show 'Show one mailbox'
            cand update 'Change a mailbox''s name, quota or flags'
            cand passwd 'Set a new password'
            cand enable 'Let the mailbox receive mail and log in again'
            cand disable 'Stop delivery and logins for the mailbox, keeping its mail'
            cand delete 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)'
            cand app-password 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)'
            cand totp 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;user;help;add'= {
        }
        &'mailctl;user;help;list'= {
        }
        &'mailctl;user;help;show'= {
        }
        &'mailctl;user;help;update'= {
        }
        &'mailctl;user;help;passwd'= {
        }
        &'mailctl;user;help;enable'= {
        }
        &'mailctl;user;help;disable'= {
        }
        &'mailctl;user;help;delete'= {
        }
        &'mailctl;user;help;app-password'= {
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
        }
        &'mailctl;user;help;app-password;add'= {
        }
        &'mailctl;user;help;app-password;list'= {
        }
        &'mailctl;user;help;app-password;revoke'= {
        }
        &'mailctl;user;help;totp'= {
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
        }
        &'mailctl;user;help;totp;enable'= {
        }
        &'mailctl;user;help;totp;disable'= {
        }
        &'mailctl;user;help;totp;exception'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
        }
        &'mailctl;user;help;totp;exception;add'= {
        }
        &'mailctl;user;help;totp;exception;list'= {
        }
        &'mailctl;user;help;totp;exception;delete'= {
        }
        &'mailctl;user;help;help'= {
        }
        &'mailctl;alias'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Add an alias forwarding to one or more destinations; @domain makes a catch-all'
            cand list 'List aliases, all or of one domain'
            cand show 'Show one alias'
            cand update 'Replace an alias''s destinations and/or switch it on or off'
            cand delete 'Delete an alias'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;alias;add'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --inactive 'Create it inactive'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --all 'Also list mailboxes'' own alias rows (address = destination)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias;update'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --active 'Mark as active'
            cand --inactive 'Mark as inactive (kept, but mail is not accepted or delivered)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias;help'= {
            cand add 'Add an alias forwarding to one or more destinations; @domain makes a catch-all'
            cand list 'List aliases, all or of one domain'
            cand show 'Show one alias'
            cand update 'Replace an alias''s destinations and/or switch it on or off'
            cand delete 'Delete an alias'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;alias;help;add'= {
        }
        &'mailctl;alias;help;list'= {
        }
        &'mailctl;alias;help;show'= {
        }
        &'mailctl;alias;help;update'= {
        }
        &'mailctl;alias;help;delete'= {
        }
        &'mailctl;alias;help;help'= {
        }
        &'mailctl;alias-domain'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN'
            cand list 'List alias domains'
            cand delete 'Remove an alias domain (and its domain row when it holds nothing else)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;alias-domain;add'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --inactive 'Create the mapping inactive'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias-domain;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias-domain;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;alias-domain;help'= {
            cand add 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN'
            cand list 'List alias domains'
            cand delete 'Remove an alias domain (and its domain row when it holds nothing else)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;alias-domain;help;add'= {
        }
        &'mailctl;alias-domain;help;list'= {
        }
        &'mailctl;alias-domain;help;delete'= {
        }
        &'mailctl;alias-domain;help;help'= {
        }
        &'mailctl;dkim'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand generate 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record'
            cand list 'List keys with their state; --check-dns also asks DNS whether each key is published'
            cand show 'Print a key''s DNS record (the active key unless --selector)'
            cand rotate 'Generate a new pending key to replace the active one; publish it, then `dkim activate`'
            cand activate 'Make a key the signing key once DNS serves it; the previous key becomes retiring'
            cand retire 'Delete a pending or retiring key (its record can then leave DNS)'
            cand export 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd'
            cand import 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)'
            cand sign 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)'
            cand verify 'Verify every DKIM-Signature of a message from standard input through DNS'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;dkim;generate'= {
            cand --selector 'Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]'
            cand --algorithm 'Key type'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;list'= {
            cand --nameserver 'Ask this nameserver (IP or IP:PORT) instead of the system resolver'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --check-dns 'Look each key''s record up in DNS and compare it with the key'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;show'= {
            cand --selector 'Selector [default: the active key]'
            cand --format 'zone: BIND syntax, split in 255-byte strings; plain: name and value on two lines; json'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;rotate'= {
            cand --selector 'Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]'
            cand --algorithm 'Key type'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;activate'= {
            cand --nameserver 'Ask this nameserver (IP or IP:PORT) instead of the system resolver'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --force 'Activate without checking DNS'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;retire'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;export'= {
            cand --out 'File to write'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --force 'Overwrite FILE if it exists'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;import'= {
            cand --key 'PEM file'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;sign'= {
            cand --domain 'Domain whose key signs (d=)'
            cand --selector 'Selector of the key [default: the active key]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;verify'= {
            cand --nameserver 'Ask this nameserver (IP or IP:PORT) instead of the system resolver'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dkim;help'= {
            cand generate 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record'
            cand list 'List keys with their state; --check-dns also asks DNS whether each key is published'
            cand show 'Print a key''s DNS record (the active key unless --selector)'
            cand rotate 'Generate a new pending key to replace the active one; publish it, then `dkim activate`'
            cand activate 'Make a key the signing key once DNS serves it; the previous key becomes retiring'
            cand retire 'Delete a pending or retiring key (its record can then leave DNS)'
            cand export 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd'
            cand import 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)'
            cand sign 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)'
            cand verify 'Verify every DKIM-Signature of a message from standard input through DNS'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;dkim;help;generate'= {
        }
        &'mailctl;dkim;help;list'= {
        }
        &'mailctl;dkim;help;show'= {
        }
        &'mailctl;dkim;help;rotate'= {
        }
        &'mailctl;dkim;help;activate'= {
        }
        &'mailctl;dkim;help;retire'= {
        }
        &'mailctl;dkim;help;export'= {
        }
        &'mailctl;dkim;help;import'= {
        }
        &'mailctl;dkim;help;sign'= {
        }
        &'mailctl;dkim;help;verify'= {
        }
        &'mailctl;dkim;help;help'= {
        }
        &'mailctl;dns'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand records 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;dns;records'= {
            cand --format 'zone: a BIND zone fragment; json; table'
            cand --mx-host 'MX host name [default: config server.hostname, else mail.DOMAIN]'
            cand --ip 'Public IP of the mail server (repeat for several) [default: config server.public_ips]'
            cand --dmarc-policy 'DMARC policy for mail that fails'
            cand --report-address 'Address that receives DMARC and TLS-RPT reports [default: postmaster@DOMAIN]'
            cand --mta-sts-mode 'MTA-STS mode; start with testing, move to enforce once TLS reports are clean [default: [server.https] mta_sts_mode, else testing]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;dns;help'= {
            cand records 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;dns;help;records'= {
        }
        &'mailctl;dns;help;help'= {
        }
        &'mailctl;audit'= {
            cand --nameserver 'Ask these nameservers (IP or IP:PORT, repeatable) instead of the system resolver'
            cand --ip 'An outbound IP of your server (repeatable) [default: config server.public_ips]'
            cand --selector 'A DKIM selector to check (repeatable) [default: the database''s keys, else common selectors]'
            cand --rbl 'An IP blocklist zone (repeatable; replaces the defaults: zen.spamhaus.org, bl.spamcop.net, b.barracudacentral.org, psbl.surriel.com)'
            cand --dbl 'A domain blocklist zone (repeatable; replaces the default dbl.spamhaus.org)'
            cand --only 'Only these check ids or families (comma-separated: spf,dkim.record)'
            cand --skip 'Skip these check ids or families (comma-separated)'
            cand --timeout 'Seconds to wait for each DNS answer or SMTP reply'
            cand --format 'Output format'
            cand --extra-ca 'Also trust the CA certificates in this PEM file (a private CA, a lab) for the SMTP certificate and the MTA-STS policy fetch'
            cand --smtp-port 'Port the SMTP probe connects to (25 is what senders use; another port audits a lab or test server)'
            cand --https-port 'Port of the MTA-STS policy fetch (443 is what senders use)'
            cand --connect-to 'Connect the SMTP probe to this IP instead of each MX address (a lab, or a server behind NAT); names, PTR and certificate checks still use the MX''s own address and name'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --all 'Audit every active domain in the database'
            cand --no-connect 'Do not connect to the MX hosts (DNS checks only)'
            cand --relay-test 'Also try to relay an outside address through each MX (never sends DATA)'
            cand --fetch-policy 'Fetch the MTA-STS policy over HTTPS and compare it with the MX records'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;serve'= {
            cand --listen 'Run only these listeners, at these addresses (NAME = smtp, submission or submissions; repeatable; replaces [server.listen] entirely; port 0 picks a free port)'
            cand --nameserver 'Ask this nameserver (IP or IP:PORT) instead of the system resolver'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --check-config 'Check the configuration and the setup (TLS files, Maildir root, spool, LMTP, database) as the user the daemon runs as, list every problem and exit'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state'
            cand show 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers'
            cand flush 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll'
            cand hold 'Hold a message: it is not delivered until released (a delivery already running finishes)'
            cand release 'Release a held message'
            cand delete 'Delete a message from the queue (refused while a running serve is delivering it)'
            cand stats 'Counts: messages by state, recipients by status, bytes, age of the oldest message'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;queue;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --body 'Print the whole message instead of its header block'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;flush'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;hold'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;release'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --bounce 'Send the sender a bounce naming every recipient not yet delivered'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;stats'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;queue;help'= {
            cand list 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state'
            cand show 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers'
            cand flush 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll'
            cand hold 'Hold a message: it is not delivered until released (a delivery already running finishes)'
            cand release 'Release a held message'
            cand delete 'Delete a message from the queue (refused while a running serve is delivering it)'
            cand stats 'Counts: messages by state, recipients by status, bytes, age of the oldest message'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;queue;help;list'= {
        }
        &'mailctl;queue;help;show'= {
        }
        &'mailctl;queue;help;flush'= {
        }
        &'mailctl;queue;help;hold'= {
        }
        &'mailctl;queue;help;release'= {
        }
        &'mailctl;queue;help;delete'= {
        }
        &'mailctl;queue;help;stats'= {
        }
        &'mailctl;queue;help;help'= {
        }
        &'mailctl;relay'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand set 'Send DOMAIN''s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain''s route'
            cand list 'List the routes (passwords are never shown)'
            cand delete 'Send DOMAIN''s mail as configured again ([server.outbound.relay] or the recipients'' MX hosts)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;relay;set'= {
            cand --tls '"required" (a verified certificate for HOST) or "none" (a relay on this machine only)'
            cand --username 'Log in as this user (AUTH PLAIN or LOGIN; the password is read from standard input)'
            cand --spf-include 'The provider''s SPF include: domain, which `dns records` adds to the domain''s SPF record'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --password-stdin 'Read the AUTH password from the first line of standard input'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;relay;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;relay;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;relay;help'= {
            cand set 'Send DOMAIN''s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain''s route'
            cand list 'List the routes (passwords are never shown)'
            cand delete 'Send DOMAIN''s mail as configured again ([server.outbound.relay] or the recipients'' MX hosts)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;relay;help;set'= {
        }
        &'mailctl;relay;help;list'= {
        }
        &'mailctl;relay;help;delete'= {
        }
        &'mailctl;relay;help;help'= {
        }
        &'mailctl;limits'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand set 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox'
            cand show 'Show the limits set for every scope'
            cand delete 'Remove every limit of default, a domain or an address'
            cand usage 'What a mailbox sent this hour and today, against the limits in force and where each comes from'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;limits;set'= {
            cand --messages-per-hour 'Messages per hour'
            cand --recipients-per-day 'Recipients per day'
            cand --new-recipients-per-day 'Recipients the sender never wrote to before, per day'
            cand --unknown-recipients-per-day 'Recipients other servers may refuse as unknown per day; beyond it the breaker turns SMTP off'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;limits;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;limits;delete'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;limits;usage'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;limits;help'= {
            cand set 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox'
            cand show 'Show the limits set for every scope'
            cand delete 'Remove every limit of default, a domain or an address'
            cand usage 'What a mailbox sent this hour and today, against the limits in force and where each comes from'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;limits;help;set'= {
        }
        &'mailctl;limits;help;show'= {
        }
        &'mailctl;limits;help;delete'= {
        }
        &'mailctl;limits;help;usage'= {
        }
        &'mailctl;limits;help;help'= {
        }
        &'mailctl;srs'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand rotate 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd''s secret file); older secrets keep verifying until every address they signed has expired (21 days)'
            cand list 'List the secrets by id and age (never the secrets themselves)'
            cand forward 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN'
            cand reverse 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;srs;rotate'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --secret-stdin 'Read the secret from the first line of standard input instead of generating one'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;srs;list'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;srs;forward'= {
            cand --domain 'The forwarding (hosted) domain'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;srs;reverse'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;srs;help'= {
            cand rotate 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd''s secret file); older secrets keep verifying until every address they signed has expired (21 days)'
            cand list 'List the secrets by id and age (never the secrets themselves)'
            cand forward 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN'
            cand reverse 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;srs;help;rotate'= {
        }
        &'mailctl;srs;help;list'= {
        }
        &'mailctl;srs;help;forward'= {
        }
        &'mailctl;srs;help;reverse'= {
        }
        &'mailctl;srs;help;help'= {
        }
        &'mailctl;reports'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand import 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is'
            cand list 'List stored reports, oldest first'
            cand show 'Show one report with its records (DMARC) or results (TLS)'
            cand summary 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)'
            cand send 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;reports;import'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;reports;list'= {
            cand --since 'Only reports whose period ended within this time (30d, 12h) or since this date (2026-11-01)'
            cand --domain 'Only reports about these domains'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --sent 'The reports this server sent to other domains instead (`reports send`, or serve''s daily run)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;reports;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;reports;summary'= {
            cand --since 'Reports whose period ended within this time (7d, 12h) or since this date (2026-11-01)'
            cand --format 'Output: table, json (same as --json) or nagios (one line and performance data)'
            cand --warn 'WARNING when at least this share of own mail failed DMARC, or of TLS sessions failed'
            cand --crit 'CRITICAL from this share on'
            cand --nameserver 'Ask this nameserver for PTR names and the relay''s addresses (IP or IP:PORT; repeatable)'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;reports;send'= {
            cand --nameserver 'Ask this nameserver for the destinations'' authorization records (IP or IP:PORT; repeatable)'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --now 'Include what was seen today (by default a report covers one whole UTC day and today''s waits for tomorrow, as `serve` does it)'
            cand --dry-run 'Show what would be sent, build nothing and change nothing'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;reports;help'= {
            cand import 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is'
            cand list 'List stored reports, oldest first'
            cand show 'Show one report with its records (DMARC) or results (TLS)'
            cand summary 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)'
            cand send 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;reports;help;import'= {
        }
        &'mailctl;reports;help;list'= {
        }
        &'mailctl;reports;help;show'= {
        }
        &'mailctl;reports;help;summary'= {
        }
        &'mailctl;reports;help;send'= {
        }
        &'mailctl;reports;help;help'= {
        }
        &'mailctl;bench'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand smtp 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency'
            cand connections 'Open many idle connections and hold them; report how many the server kept and its memory use'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;bench;smtp'= {
            cand --to 'Recipient of every message'
            cand --from 'Sender of every message [default: the --auth user, else bench@bench.test]'
            cand --sessions 'Concurrent SMTP sessions'
            cand --messages 'Messages to send in total'
            cand --size 'Size of each message in bytes (headers and body)'
            cand --server-pid 'PID of the server: report its CPU time (user + system, from /proc) per accepted message'
            cand --duration 'Stop after this many seconds even if not every message was sent'
            cand --log 'Append "Message-ID reply" for every accepted message to FILE, each line written as it happens'
            cand --auth 'Log in once per session with AUTH PLAIN after STARTTLS (implies --starttls), e.g. to benchmark a submission listener. The server''s certificate is NOT verified (this is a benchmark tool), so the password goes to whatever answers at ADDR: use it only against your own server and a test account'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --pipelining 'Send MAIL, RCPT and DATA in one write when the server offers PIPELINING'
            cand --new-connection 'Open a new connection for every message (QUIT after each), as Postfix''s smtp-source does by default and most MX traffic arrives; without it each session sends all its messages over one connection'
            cand --starttls 'Start every session with STARTTLS (any certificate is accepted: this is a benchmark tool, not a mail client)'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;bench;connections'= {
            cand --count 'Connections to open'
            cand --hold 'Seconds to hold them once all are open'
            cand --batch 'Connections opened at once while ramping up'
            cand --server-pid 'PID of the server, to report its VmRSS and VmHWM while the connections are held'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;bench;help'= {
            cand smtp 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency'
            cand connections 'Open many idle connections and hold them; report how many the server kept and its memory use'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;bench;help;smtp'= {
        }
        &'mailctl;bench;help;connections'= {
        }
        &'mailctl;bench;help;help'= {
        }
        &'mailctl;cert'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand status 'Show the certificate in use: names, issuer, validity, renewal date, its key''s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)'
            cand renew 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;cert;status'= {
            cand --nameserver 'DNS server for the name checks, IP[:PORT] [default: config dns.nameserver, else the system''s]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;cert;renew'= {
            cand --nameserver 'DNS server for the name checks and the CA, IP[:PORT] [default: config dns.nameserver]'
            cand --wait 'Seconds to wait for the running serve to finish the renewal'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --force 'Renew even when the certificate is not due'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;cert;help'= {
            cand status 'Show the certificate in use: names, issuer, validity, renewal date, its key''s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)'
            cand renew 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;cert;help;status'= {
        }
        &'mailctl;cert;help;renew'= {
        }
        &'mailctl;cert;help;help'= {
        }
        &'mailctl;vacation'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand set 'Set (or replace) a mailbox''s auto-reply; the senders it answered before hear it again'
            cand show 'Show a mailbox''s auto-reply'
            cand off 'Switch a mailbox''s auto-reply off'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;vacation;set'= {
            cand --subject 'Subject of the reply'
            cand --body-file 'File with the reply''s text (UTF-8); `-` reads standard input'
            cand --from 'First day of replies, YYYY-MM-DD (UTC) [default: now]'
            cand --until 'Last day of replies, YYYY-MM-DD (UTC, through its end) [default: none]'
            cand --interval 'Days before the same sender is answered again; 0 answers each sender once per vacation'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;vacation;show'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;vacation;off'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;vacation;help'= {
            cand set 'Set (or replace) a mailbox''s auto-reply; the senders it answered before hear it again'
            cand show 'Show a mailbox''s auto-reply'
            cand off 'Switch a mailbox''s auto-reply off'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;vacation;help;set'= {
        }
        &'mailctl;vacation;help;show'= {
        }
        &'mailctl;vacation;help;off'= {
        }
        &'mailctl;vacation;help;help'= {
        }
        &'mailctl;checkpassword'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;import'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --dry-run 'Check every row against the database and report, without changing anything'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;export'= {
            cand --format 'Output format [default: csv, or json with --json]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;config'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand postfix 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them'
            cand dovecot 'Dovecot passdb/userdb SQL configuration'
            cand systemd 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;config;postfix'= {
            cand --out 'Write the files into DIR (created if needed) instead of printing them'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;config;dovecot'= {
            cand --out 'Write the files into DIR (created if needed) instead of printing them'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;config;systemd'= {
            cand --out 'Write mailctl.service into DIR (created if needed) instead of printing it'
            cand --user 'The dedicated system user (and group) the daemon runs as [default: server.user, else mailctl]'
            cand --binary 'Absolute path of the mailctl binary the unit starts [default: this binary]'
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;config;help'= {
            cand postfix 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them'
            cand dovecot 'Dovecot passdb/userdb SQL configuration'
            cand systemd 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;config;help;postfix'= {
        }
        &'mailctl;config;help;dovecot'= {
        }
        &'mailctl;config;help;systemd'= {
        }
        &'mailctl;config;help;help'= {
        }
        &'mailctl;db'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand migrate 'Apply pending schema migrations (also done automatically on first use)'
            cand status 'Show the database, its schema version and pending migrations (changes nothing)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;db;migrate'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;db;status'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;db;help'= {
            cand migrate 'Apply pending schema migrations (also done automatically on first use)'
            cand status 'Show the database, its schema version and pending migrations (changes nothing)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;db;help;migrate'= {
        }
        &'mailctl;db;help;status'= {
        }
        &'mailctl;db;help;help'= {
        }
        &'mailctl;completions'= {
            cand --config 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]'
            cand --database-url 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]'
            cand --json 'Print data as JSON (one document per run) instead of tables'
            cand -v 'Print more detail on stderr'
            cand --verbose 'Print more detail on stderr'
            cand -q 'Print nothing but data and errors'
            cand --quiet 'Print nothing but data and errors'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'mailctl;help'= {
            cand domain 'Manage hosted domains'
            cand mailbox 'Manage mailboxes'
            cand alias 'Manage aliases, forwardings and catch-alls (@domain)'
            cand alias-domain 'Manage alias domains (every address of one domain delivered to the same address of another)'
            cand dkim 'DKIM keys: generate, rotate, publish, sign and verify'
            cand dns 'The DNS records a domain must publish'
            cand audit 'Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)'
            cand serve 'Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)'
            cand queue 'Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats'
            cand relay 'Relay hosts (smarthosts) per sender domain: set, list, delete'
            cand limits 'Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show, delete, usage'
            cand srs 'SRS secrets for forwarded mail: rotate, list, forward, reverse'
            cand reports 'DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary'
            cand bench 'Load generators for measuring a running server'
            cand cert 'The listeners'' TLS certificate: status, renew (from the ACME CA of [server.acme])'
            cand vacation 'Out-of-office auto-replies of mailboxes: set, show, off'
            cand checkpassword 'Dovecot''s checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)'
            cand import 'Import domains, mailboxes and aliases from a CSV file, all or nothing'
            cand export 'Export every domain, mailbox and alias as CSV or JSON'
            cand config 'Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve'
            cand db 'Database schema: migrate, status'
            cand completions 'Print a shell completion script'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'mailctl;help;domain'= {
            cand add 'Add a hosted domain'
            cand list 'List hosted domains with their usage'
            cand show 'Show one domain with its limits and usage'
            cand update 'Change a domain''s description, limits or flags'
            cand delete 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)'
        }
        &'mailctl;help;domain;add'= {
        }
        &'mailctl;help;domain;list'= {
        }
        &'mailctl;help;domain;show'= {
        }
        &'mailctl;help;domain;update'= {
        }
        &'mailctl;help;domain;delete'= {
        }
        &'mailctl;help;mailbox'= {
            cand add 'Add a mailbox (and its self-alias row, as postfixadmin does)'
            cand list 'List mailboxes, all or of one domain'
            cand show 'Show one mailbox'
            cand update 'Change a mailbox''s name, quota or flags'
            cand passwd 'Set a new password'
            cand enable 'Let the mailbox receive mail and log in again'
            cand disable 'Stop delivery and logins for the mailbox, keeping its mail'
            cand delete 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)'
            cand app-password 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)'
            cand totp 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)'
        }
        &'mailctl;help;mailbox;add'= {
        }
        &'mailctl;help;mailbox;list'= {
        }
        &'mailctl;help;mailbox;show'= {
        }
        &'mailctl;help;mailbox;update'= {
        }
        &'mailctl;help;mailbox;passwd'= {
        }
        &'mailctl;help;mailbox;enable'= {
        }
        &'mailctl;help;mailbox;disable'= {
        }
        &'mailctl;help;mailbox;delete'= {
        }
        &'mailctl;help;mailbox;app-password'= {
            cand add 'Add an app password (one with the same description is replaced)'
            cand list 'List a mailbox''s app passwords (never the passwords)'
            cand revoke 'Revoke an app password by its id (from `list`)'
        }
        &'mailctl;help;mailbox;app-password;add'= {
        }
        &'mailctl;help;mailbox;app-password;list'= {
        }
        &'mailctl;help;mailbox;app-password;revoke'= {
        }
        &'mailctl;help;mailbox;totp'= {
            cand enable 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
            cand disable 'Remove the mailbox''s TOTP secret: its main password works for mail logins again'
            cand exception 'Client addresses from which a TOTP mailbox may still log in with its main password'
        }
        &'mailctl;help;mailbox;totp;enable'= {
        }
        &'mailctl;help;mailbox;totp;disable'= {
        }
        &'mailctl;help;mailbox;totp;exception'= {
            cand add 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all'
            cand list 'List the exceptions'
            cand delete 'Delete an exception by its id (from `list`)'
        }
        &'mailctl;help;mailbox;totp;exception;add'= {
        }
        &'mailctl;help;mailbox;totp;exception;list'= {
        }
        &'mailctl;help;mailbox;totp;exception;delete'= {
        }
        &'mailctl;help;alias'= {
            cand add 'Add an alias forwarding to one or more destinations; @domain makes a catch-all'
            cand list 'List aliases, all or of one domain'
            cand show 'Show one alias'
            cand update 'Replace an alias''s destinations and/or switch it on or off'
            cand delete 'Delete an alias'
        }
        &'mailctl;help;alias;add'= {
        }
        &'mailctl;help;alias;list'= {
        }
        &'mailctl;help;alias;show'= {
        }
        &'mailctl;help;alias;update'= {
        }
        &'mailctl;help;alias;delete'= {
        }
        &'mailctl;help;alias-domain'= {
            cand add 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN'
            cand list 'List alias domains'
            cand delete 'Remove an alias domain (and its domain row when it holds nothing else)'
        }
        &'mailctl;help;alias-domain;add'= {
        }
        &'mailctl;help;alias-domain;list'= {
        }
        &'mailctl;help;alias-domain;delete'= {
        }
        &'mailctl;help;dkim'= {
            cand generate 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record'
            cand list 'List keys with their state; --check-dns also asks DNS whether each key is published'
            cand show 'Print a key''s DNS record (the active key unless --selector)'
            cand rotate 'Generate a new pending key to replace the active one; publish it, then `dkim activate`'
            cand activate 'Make a key the signing key once DNS serves it; the previous key becomes retiring'
            cand retire 'Delete a pending or retiring key (its record can then leave DNS)'
            cand export 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd'
            cand import 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)'
            cand sign 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)'
            cand verify 'Verify every DKIM-Signature of a message from standard input through DNS'
        }
        &'mailctl;help;dkim;generate'= {
        }
        &'mailctl;help;dkim;list'= {
        }
        &'mailctl;help;dkim;show'= {
        }
        &'mailctl;help;dkim;rotate'= {
        }
        &'mailctl;help;dkim;activate'= {
        }
        &'mailctl;help;dkim;retire'= {
        }
        &'mailctl;help;dkim;export'= {
        }
        &'mailctl;help;dkim;import'= {
        }
        &'mailctl;help;dkim;sign'= {
        }
        &'mailctl;help;dkim;verify'= {
        }
        &'mailctl;help;dns'= {
            cand records 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain'
        }
        &'mailctl;help;dns;records'= {
        }
        &'mailctl;help;audit'= {
        }
        &'mailctl;help;serve'= {
        }
        &'mailctl;help;queue'= {
            cand list 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state'
            cand show 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers'
            cand flush 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll'
            cand hold 'Hold a message: it is not delivered until released (a delivery already running finishes)'
            cand release 'Release a held message'
            cand delete 'Delete a message from the queue (refused while a running serve is delivering it)'
            cand stats 'Counts: messages by state, recipients by status, bytes, age of the oldest message'
        }
        &'mailctl;help;queue;list'= {
        }
        &'mailctl;help;queue;show'= {
        }
        &'mailctl;help;queue;flush'= {
        }
        &'mailctl;help;queue;hold'= {
        }
        &'mailctl;help;queue;release'= {
        }
        &'mailctl;help;queue;delete'= {
        }
        &'mailctl;help;queue;stats'= {
        }
        &'mailctl;help;relay'= {
            cand set 'Send DOMAIN''s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain''s route'
            cand list 'List the routes (passwords are never shown)'
            cand delete 'Send DOMAIN''s mail as configured again ([server.outbound.relay] or the recipients'' MX hosts)'
        }
        &'mailctl;help;relay;set'= {
        }
        &'mailctl;help;relay;list'= {
        }
        &'mailctl;help;relay;delete'= {
        }
        &'mailctl;help;limits'= {
            cand set 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox'
            cand show 'Show the limits set for every scope'
            cand delete 'Remove every limit of default, a domain or an address'
            cand usage 'What a mailbox sent this hour and today, against the limits in force and where each comes from'
        }
        &'mailctl;help;limits;set'= {
        }
        &'mailctl;help;limits;show'= {
        }
        &'mailctl;help;limits;delete'= {
        }
        &'mailctl;help;limits;usage'= {
        }
        &'mailctl;help;srs'= {
            cand rotate 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd''s secret file); older secrets keep verifying until every address they signed has expired (21 days)'
            cand list 'List the secrets by id and age (never the secrets themselves)'
            cand forward 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN'
            cand reverse 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)'
        }
        &'mailctl;help;srs;rotate'= {
        }
        &'mailctl;help;srs;list'= {
        }
        &'mailctl;help;srs;forward'= {
        }
        &'mailctl;help;srs;reverse'= {
        }
        &'mailctl;help;reports'= {
            cand import 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is'
            cand list 'List stored reports, oldest first'
            cand show 'Show one report with its records (DMARC) or results (TLS)'
            cand summary 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)'
            cand send 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one'
        }
        &'mailctl;help;reports;import'= {
        }
        &'mailctl;help;reports;list'= {
        }
        &'mailctl;help;reports;show'= {
        }
        &'mailctl;help;reports;summary'= {
        }
        &'mailctl;help;reports;send'= {
        }
        &'mailctl;help;bench'= {
            cand smtp 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency'
            cand connections 'Open many idle connections and hold them; report how many the server kept and its memory use'
        }
        &'mailctl;help;bench;smtp'= {
        }
        &'mailctl;help;bench;connections'= {
        }
        &'mailctl;help;cert'= {
            cand status 'Show the certificate in use: names, issuer, validity, renewal date, its key''s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)'
            cand renew 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly'
        }
        &'mailctl;help;cert;status'= {
        }
        &'mailctl;help;cert;renew'= {
        }
        &'mailctl;help;vacation'= {
            cand set 'Set (or replace) a mailbox''s auto-reply; the senders it answered before hear it again'
            cand show 'Show a mailbox''s auto-reply'
            cand off 'Switch a mailbox''s auto-reply off'
        }
        &'mailctl;help;vacation;set'= {
        }
        &'mailctl;help;vacation;show'= {
        }
        &'mailctl;help;vacation;off'= {
        }
        &'mailctl;help;checkpassword'= {
        }
        &'mailctl;help;import'= {
        }
        &'mailctl;help;export'= {
        }
        &'mailctl;help;config'= {
            cand postfix 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them'
            cand dovecot 'Dovecot passdb/userdb SQL configuration'
            cand systemd 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user'
        }
        &'mailctl;help;config;postfix'= {
        }
        &'mailctl;help;config;dovecot'= {
        }
        &'mailctl;help;config;systemd'= {
        }
        &'mailctl;help;db'= {
            cand migrate 'Apply pending schema migrations (also done automatically on first use)'
            cand status 'Show the database, its schema version and pending migrations (changes nothing)'
        }
        &'mailctl;help;db;migrate'= {
        }
        &'mailctl;help;db;status'= {
        }
        &'mailctl;help;completions'= {
        }
        &'mailctl;help;help'= {
        }
    ]
    $completions[$command]
}
