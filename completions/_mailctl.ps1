
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'mailctl' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'mailctl'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'mailctl' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('domain', 'domain', [CompletionResultType]::ParameterValue, 'Manage hosted domains')
            [CompletionResult]::new('mailbox', 'mailbox', [CompletionResultType]::ParameterValue, 'Manage mailboxes')
            [CompletionResult]::new('user', 'user', [CompletionResultType]::ParameterValue, 'Manage mailboxes')
            [CompletionResult]::new('alias', 'alias', [CompletionResultType]::ParameterValue, 'Manage aliases, forwardings and catch-alls (@domain)')
            [CompletionResult]::new('alias-domain', 'alias-domain', [CompletionResultType]::ParameterValue, 'Manage alias domains (every address of one domain delivered to the same address of another)')
            [CompletionResult]::new('dkim', 'dkim', [CompletionResultType]::ParameterValue, 'DKIM keys: generate, rotate, publish, sign and verify')
            [CompletionResult]::new('dns', 'dns', [CompletionResultType]::ParameterValue, 'The DNS records a domain must publish')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)')
            [CompletionResult]::new('queue', 'queue', [CompletionResultType]::ParameterValue, 'Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats')
            [CompletionResult]::new('relay', 'relay', [CompletionResultType]::ParameterValue, 'Relay hosts (smarthosts) per sender domain: set, list, delete')
            [CompletionResult]::new('limits', 'limits', [CompletionResultType]::ParameterValue, 'Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show, delete, usage')
            [CompletionResult]::new('srs', 'srs', [CompletionResultType]::ParameterValue, 'SRS secrets for forwarded mail: rotate, list, forward, reverse')
            [CompletionResult]::new('reports', 'reports', [CompletionResultType]::ParameterValue, 'DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load generators for measuring a running server')
            [CompletionResult]::new('cert', 'cert', [CompletionResultType]::ParameterValue, 'The listeners'' TLS certificate: status, renew (from the ACME CA of [server.acme])')
            [CompletionResult]::new('vacation', 'vacation', [CompletionResultType]::ParameterValue, 'Out-of-office auto-replies of mailboxes: set, show, off')
            [CompletionResult]::new('checkpassword', 'checkpassword', [CompletionResultType]::ParameterValue, 'Dovecot''s checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import domains, mailboxes and aliases from a CSV file, all or nothing')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export every domain, mailbox and alias as CSV or JSON')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve')
            [CompletionResult]::new('db', 'db', [CompletionResultType]::ParameterValue, 'Database schema: migrate, status')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;domain' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a hosted domain')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List hosted domains with their usage')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one domain with its limits and usage')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a domain''s description, limits or flags')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;domain;add' {
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'Free-text description')
            [CompletionResult]::new('--max-mailboxes', '--max-mailboxes', [CompletionResultType]::ParameterName, 'Most mailboxes allowed (0 unlimited, -1 none)')
            [CompletionResult]::new('--max-aliases', '--max-aliases', [CompletionResultType]::ParameterName, 'Most aliases allowed, catch-all included (0 unlimited, -1 none)')
            [CompletionResult]::new('--max-quota-mb', '--max-quota-mb', [CompletionResultType]::ParameterName, 'Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default')
            [CompletionResult]::new('--domain-quota-mb', '--domain-quota-mb', [CompletionResultType]::ParameterName, 'Total quota of all mailboxes in MB (0 unlimited)')
            [CompletionResult]::new('--backup-mx', '--backup-mx', [CompletionResultType]::ParameterName, 'This server is only a backup MX for the domain (relays to the primary)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--active', '--active', [CompletionResultType]::ParameterName, 'Mark as active')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Mark as inactive (kept, but mail is not accepted or delivered)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;domain;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;domain;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;domain;update' {
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'Free-text description')
            [CompletionResult]::new('--max-mailboxes', '--max-mailboxes', [CompletionResultType]::ParameterName, 'Most mailboxes allowed (0 unlimited, -1 none)')
            [CompletionResult]::new('--max-aliases', '--max-aliases', [CompletionResultType]::ParameterName, 'Most aliases allowed, catch-all included (0 unlimited, -1 none)')
            [CompletionResult]::new('--max-quota-mb', '--max-quota-mb', [CompletionResultType]::ParameterName, 'Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default')
            [CompletionResult]::new('--domain-quota-mb', '--domain-quota-mb', [CompletionResultType]::ParameterName, 'Total quota of all mailboxes in MB (0 unlimited)')
            [CompletionResult]::new('--backup-mx', '--backup-mx', [CompletionResultType]::ParameterName, 'This server is only a backup MX for the domain (relays to the primary)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--active', '--active', [CompletionResultType]::ParameterName, 'Mark as active')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Mark as inactive (kept, but mail is not accepted or delivered)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;domain;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Also delete every mailbox, alias and alias-domain mapping of the domain')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;domain;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a hosted domain')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List hosted domains with their usage')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one domain with its limits and usage')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a domain''s description, limits or flags')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;domain;help;add' {
            break
        }
        'mailctl;domain;help;list' {
            break
        }
        'mailctl;domain;help;show' {
            break
        }
        'mailctl;domain;help;update' {
            break
        }
        'mailctl;domain;help;delete' {
            break
        }
        'mailctl;domain;help;help' {
            break
        }
        'mailctl;mailbox' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a mailbox (and its self-alias row, as postfixadmin does)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List mailboxes, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one mailbox')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a mailbox''s name, quota or flags')
            [CompletionResult]::new('passwd', 'passwd', [CompletionResultType]::ParameterValue, 'Set a new password')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Let the mailbox receive mail and log in again')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Stop delivery and logins for the mailbox, keeping its mail')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)')
            [CompletionResult]::new('app-password', 'app-password', [CompletionResultType]::ParameterValue, 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)')
            [CompletionResult]::new('totp', 'totp', [CompletionResultType]::ParameterValue, 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a mailbox (and its self-alias row, as postfixadmin does)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List mailboxes, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one mailbox')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a mailbox''s name, quota or flags')
            [CompletionResult]::new('passwd', 'passwd', [CompletionResultType]::ParameterValue, 'Set a new password')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Let the mailbox receive mail and log in again')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Stop delivery and logins for the mailbox, keeping its mail')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)')
            [CompletionResult]::new('app-password', 'app-password', [CompletionResultType]::ParameterValue, 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)')
            [CompletionResult]::new('totp', 'totp', [CompletionResultType]::ParameterValue, 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;add' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Display name')
            [CompletionResult]::new('--quota-mb', '--quota-mb', [CompletionResultType]::ParameterName, 'Quota in MB (0 unlimited) [default: the domain''s max quota per mailbox]')
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Create it inactive')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--random-password', '--random-password', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--random', '--random', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;add' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Display name')
            [CompletionResult]::new('--quota-mb', '--quota-mb', [CompletionResultType]::ParameterName, 'Quota in MB (0 unlimited) [default: the domain''s max quota per mailbox]')
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Create it inactive')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--random-password', '--random-password', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--random', '--random', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;update' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Display name')
            [CompletionResult]::new('--quota-mb', '--quota-mb', [CompletionResultType]::ParameterName, 'Quota in MB (0 unlimited)')
            [CompletionResult]::new('--smtp', '--smtp', [CompletionResultType]::ParameterName, 'Allow (true) or refuse (false) SMTP AUTH for this mailbox')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--active', '--active', [CompletionResultType]::ParameterName, 'Mark as active')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Mark as inactive (kept, but mail is not accepted or delivered)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;update' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Display name')
            [CompletionResult]::new('--quota-mb', '--quota-mb', [CompletionResultType]::ParameterName, 'Quota in MB (0 unlimited)')
            [CompletionResult]::new('--smtp', '--smtp', [CompletionResultType]::ParameterName, 'Allow (true) or refuse (false) SMTP AUTH for this mailbox')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--active', '--active', [CompletionResultType]::ParameterName, 'Mark as active')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Mark as inactive (kept, but mail is not accepted or delivered)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;passwd' {
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--random-password', '--random-password', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--random', '--random', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;passwd' {
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--random-password', '--random-password', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--random', '--random', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;enable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;enable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;disable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;disable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;app-password' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;app-password;add' {
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'What it is for, like "phone" or "laptop"')
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--random-password', '--random-password', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--random', '--random', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;app-password;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;app-password;revoke' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;app-password;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;app-password;help;add' {
            break
        }
        'mailctl;mailbox;app-password;help;list' {
            break
        }
        'mailctl;mailbox;app-password;help;revoke' {
            break
        }
        'mailctl;mailbox;app-password;help;help' {
            break
        }
        'mailctl;user;app-password' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;app-password;add' {
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'What it is for, like "phone" or "laptop"')
            [CompletionResult]::new('--scheme', '--scheme', [CompletionResultType]::ParameterName, 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the password from the first line of standard input')
            [CompletionResult]::new('--random-password', '--random-password', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--random', '--random', [CompletionResultType]::ParameterName, 'Generate a random password and print it once')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;app-password;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;app-password;revoke' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;app-password;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;app-password;help;add' {
            break
        }
        'mailctl;user;app-password;help;list' {
            break
        }
        'mailctl;user;app-password;help;revoke' {
            break
        }
        'mailctl;user;app-password;help;help' {
            break
        }
        'mailctl;mailbox;totp' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;totp;enable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;totp;disable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;totp;exception' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;totp;exception;add' {
            [CompletionResult]::new('--for', '--for', [CompletionResultType]::ParameterName, 'A mailbox address or a domain')
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'Why (e.g. "office webmail")')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;totp;exception;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;totp;exception;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;mailbox;totp;exception;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;totp;exception;help;add' {
            break
        }
        'mailctl;mailbox;totp;exception;help;list' {
            break
        }
        'mailctl;mailbox;totp;exception;help;delete' {
            break
        }
        'mailctl;mailbox;totp;exception;help;help' {
            break
        }
        'mailctl;mailbox;totp;help' {
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;totp;help;enable' {
            break
        }
        'mailctl;mailbox;totp;help;disable' {
            break
        }
        'mailctl;mailbox;totp;help;exception' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            break
        }
        'mailctl;mailbox;totp;help;exception;add' {
            break
        }
        'mailctl;mailbox;totp;help;exception;list' {
            break
        }
        'mailctl;mailbox;totp;help;exception;delete' {
            break
        }
        'mailctl;mailbox;totp;help;help' {
            break
        }
        'mailctl;user;totp' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;totp;enable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;totp;disable' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;totp;exception' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;totp;exception;add' {
            [CompletionResult]::new('--for', '--for', [CompletionResultType]::ParameterName, 'A mailbox address or a domain')
            [CompletionResult]::new('--description', '--description', [CompletionResultType]::ParameterName, 'Why (e.g. "office webmail")')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;totp;exception;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;totp;exception;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;user;totp;exception;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;totp;exception;help;add' {
            break
        }
        'mailctl;user;totp;exception;help;list' {
            break
        }
        'mailctl;user;totp;exception;help;delete' {
            break
        }
        'mailctl;user;totp;exception;help;help' {
            break
        }
        'mailctl;user;totp;help' {
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;totp;help;enable' {
            break
        }
        'mailctl;user;totp;help;disable' {
            break
        }
        'mailctl;user;totp;help;exception' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            break
        }
        'mailctl;user;totp;help;exception;add' {
            break
        }
        'mailctl;user;totp;help;exception;list' {
            break
        }
        'mailctl;user;totp;help;exception;delete' {
            break
        }
        'mailctl;user;totp;help;help' {
            break
        }
        'mailctl;mailbox;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a mailbox (and its self-alias row, as postfixadmin does)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List mailboxes, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one mailbox')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a mailbox''s name, quota or flags')
            [CompletionResult]::new('passwd', 'passwd', [CompletionResultType]::ParameterValue, 'Set a new password')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Let the mailbox receive mail and log in again')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Stop delivery and logins for the mailbox, keeping its mail')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)')
            [CompletionResult]::new('app-password', 'app-password', [CompletionResultType]::ParameterValue, 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)')
            [CompletionResult]::new('totp', 'totp', [CompletionResultType]::ParameterValue, 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;mailbox;help;add' {
            break
        }
        'mailctl;mailbox;help;list' {
            break
        }
        'mailctl;mailbox;help;show' {
            break
        }
        'mailctl;mailbox;help;update' {
            break
        }
        'mailctl;mailbox;help;passwd' {
            break
        }
        'mailctl;mailbox;help;enable' {
            break
        }
        'mailctl;mailbox;help;disable' {
            break
        }
        'mailctl;mailbox;help;delete' {
            break
        }
        'mailctl;mailbox;help;app-password' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            break
        }
        'mailctl;mailbox;help;app-password;add' {
            break
        }
        'mailctl;mailbox;help;app-password;list' {
            break
        }
        'mailctl;mailbox;help;app-password;revoke' {
            break
        }
        'mailctl;mailbox;help;totp' {
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            break
        }
        'mailctl;mailbox;help;totp;enable' {
            break
        }
        'mailctl;mailbox;help;totp;disable' {
            break
        }
        'mailctl;mailbox;help;totp;exception' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            break
        }
        'mailctl;mailbox;help;totp;exception;add' {
            break
        }
        'mailctl;mailbox;help;totp;exception;list' {
            break
        }
        'mailctl;mailbox;help;totp;exception;delete' {
            break
        }
        'mailctl;mailbox;help;help' {
            break
        }
        'mailctl;user;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a mailbox (and its self-alias row, as postfixadmin does)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List mailboxes, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one mailbox')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a mailbox''s name, quota or flags')
            [CompletionResult]::new('passwd', 'passwd', [CompletionResultType]::ParameterValue, 'Set a new password')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Let the mailbox receive mail and log in again')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Stop delivery and logins for the mailbox, keeping its mail')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)')
            [CompletionResult]::new('app-password', 'app-password', [CompletionResultType]::ParameterValue, 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)')
            [CompletionResult]::new('totp', 'totp', [CompletionResultType]::ParameterValue, 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;user;help;add' {
            break
        }
        'mailctl;user;help;list' {
            break
        }
        'mailctl;user;help;show' {
            break
        }
        'mailctl;user;help;update' {
            break
        }
        'mailctl;user;help;passwd' {
            break
        }
        'mailctl;user;help;enable' {
            break
        }
        'mailctl;user;help;disable' {
            break
        }
        'mailctl;user;help;delete' {
            break
        }
        'mailctl;user;help;app-password' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            break
        }
        'mailctl;user;help;app-password;add' {
            break
        }
        'mailctl;user;help;app-password;list' {
            break
        }
        'mailctl;user;help;app-password;revoke' {
            break
        }
        'mailctl;user;help;totp' {
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            break
        }
        'mailctl;user;help;totp;enable' {
            break
        }
        'mailctl;user;help;totp;disable' {
            break
        }
        'mailctl;user;help;totp;exception' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            break
        }
        'mailctl;user;help;totp;exception;add' {
            break
        }
        'mailctl;user;help;totp;exception;list' {
            break
        }
        'mailctl;user;help;totp;exception;delete' {
            break
        }
        'mailctl;user;help;help' {
            break
        }
        'mailctl;alias' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an alias forwarding to one or more destinations; @domain makes a catch-all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List aliases, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one alias')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Replace an alias''s destinations and/or switch it on or off')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an alias')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;alias;add' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Create it inactive')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Also list mailboxes'' own alias rows (address = destination)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias;update' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--active', '--active', [CompletionResultType]::ParameterName, 'Mark as active')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Mark as inactive (kept, but mail is not accepted or delivered)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an alias forwarding to one or more destinations; @domain makes a catch-all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List aliases, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one alias')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Replace an alias''s destinations and/or switch it on or off')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an alias')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;alias;help;add' {
            break
        }
        'mailctl;alias;help;list' {
            break
        }
        'mailctl;alias;help;show' {
            break
        }
        'mailctl;alias;help;update' {
            break
        }
        'mailctl;alias;help;delete' {
            break
        }
        'mailctl;alias;help;help' {
            break
        }
        'mailctl;alias-domain' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List alias domains')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Remove an alias domain (and its domain row when it holds nothing else)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;alias-domain;add' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--inactive', '--inactive', [CompletionResultType]::ParameterName, 'Create the mapping inactive')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias-domain;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias-domain;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;alias-domain;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List alias domains')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Remove an alias domain (and its domain row when it holds nothing else)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;alias-domain;help;add' {
            break
        }
        'mailctl;alias-domain;help;list' {
            break
        }
        'mailctl;alias-domain;help;delete' {
            break
        }
        'mailctl;alias-domain;help;help' {
            break
        }
        'mailctl;dkim' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('generate', 'generate', [CompletionResultType]::ParameterValue, 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their state; --check-dns also asks DNS whether each key is published')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print a key''s DNS record (the active key unless --selector)')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Generate a new pending key to replace the active one; publish it, then `dkim activate`')
            [CompletionResult]::new('activate', 'activate', [CompletionResultType]::ParameterValue, 'Make a key the signing key once DNS serves it; the previous key becomes retiring')
            [CompletionResult]::new('retire', 'retire', [CompletionResultType]::ParameterValue, 'Delete a pending or retiring key (its record can then leave DNS)')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)')
            [CompletionResult]::new('sign', 'sign', [CompletionResultType]::ParameterValue, 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Verify every DKIM-Signature of a message from standard input through DNS')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;dkim;generate' {
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]')
            [CompletionResult]::new('--algorithm', '--algorithm', [CompletionResultType]::ParameterName, 'Key type')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;list' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask this nameserver (IP or IP:PORT) instead of the system resolver')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--check-dns', '--check-dns', [CompletionResultType]::ParameterName, 'Look each key''s record up in DNS and compare it with the key')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;show' {
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Selector [default: the active key]')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'zone: BIND syntax, split in 255-byte strings; plain: name and value on two lines; json')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;rotate' {
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]')
            [CompletionResult]::new('--algorithm', '--algorithm', [CompletionResultType]::ParameterName, 'Key type')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;activate' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask this nameserver (IP or IP:PORT) instead of the system resolver')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Activate without checking DNS')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;retire' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;export' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'File to write')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Overwrite FILE if it exists')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;import' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'PEM file')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;sign' {
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Domain whose key signs (d=)')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'Selector of the key [default: the active key]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;verify' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask this nameserver (IP or IP:PORT) instead of the system resolver')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dkim;help' {
            [CompletionResult]::new('generate', 'generate', [CompletionResultType]::ParameterValue, 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their state; --check-dns also asks DNS whether each key is published')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print a key''s DNS record (the active key unless --selector)')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Generate a new pending key to replace the active one; publish it, then `dkim activate`')
            [CompletionResult]::new('activate', 'activate', [CompletionResultType]::ParameterValue, 'Make a key the signing key once DNS serves it; the previous key becomes retiring')
            [CompletionResult]::new('retire', 'retire', [CompletionResultType]::ParameterValue, 'Delete a pending or retiring key (its record can then leave DNS)')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)')
            [CompletionResult]::new('sign', 'sign', [CompletionResultType]::ParameterValue, 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Verify every DKIM-Signature of a message from standard input through DNS')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;dkim;help;generate' {
            break
        }
        'mailctl;dkim;help;list' {
            break
        }
        'mailctl;dkim;help;show' {
            break
        }
        'mailctl;dkim;help;rotate' {
            break
        }
        'mailctl;dkim;help;activate' {
            break
        }
        'mailctl;dkim;help;retire' {
            break
        }
        'mailctl;dkim;help;export' {
            break
        }
        'mailctl;dkim;help;import' {
            break
        }
        'mailctl;dkim;help;sign' {
            break
        }
        'mailctl;dkim;help;verify' {
            break
        }
        'mailctl;dkim;help;help' {
            break
        }
        'mailctl;dns' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('records', 'records', [CompletionResultType]::ParameterValue, 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;dns;records' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'zone: a BIND zone fragment; json; table')
            [CompletionResult]::new('--mx-host', '--mx-host', [CompletionResultType]::ParameterName, 'MX host name [default: config server.hostname, else mail.DOMAIN]')
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'Public IP of the mail server (repeat for several) [default: config server.public_ips]')
            [CompletionResult]::new('--dmarc-policy', '--dmarc-policy', [CompletionResultType]::ParameterName, 'DMARC policy for mail that fails')
            [CompletionResult]::new('--report-address', '--report-address', [CompletionResultType]::ParameterName, 'Address that receives DMARC and TLS-RPT reports [default: postmaster@DOMAIN]')
            [CompletionResult]::new('--mta-sts-mode', '--mta-sts-mode', [CompletionResultType]::ParameterName, 'MTA-STS mode; start with testing, move to enforce once TLS reports are clean [default: [server.https] mta_sts_mode, else testing]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;dns;help' {
            [CompletionResult]::new('records', 'records', [CompletionResultType]::ParameterValue, 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;dns;help;records' {
            break
        }
        'mailctl;dns;help;help' {
            break
        }
        'mailctl;audit' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask these nameservers (IP or IP:PORT, repeatable) instead of the system resolver')
            [CompletionResult]::new('--ip', '--ip', [CompletionResultType]::ParameterName, 'An outbound IP of your server (repeatable) [default: config server.public_ips]')
            [CompletionResult]::new('--selector', '--selector', [CompletionResultType]::ParameterName, 'A DKIM selector to check (repeatable) [default: the database''s keys, else common selectors]')
            [CompletionResult]::new('--rbl', '--rbl', [CompletionResultType]::ParameterName, 'An IP blocklist zone (repeatable; replaces the defaults: zen.spamhaus.org, bl.spamcop.net, b.barracudacentral.org, psbl.surriel.com)')
            [CompletionResult]::new('--dbl', '--dbl', [CompletionResultType]::ParameterName, 'A domain blocklist zone (repeatable; replaces the default dbl.spamhaus.org)')
            [CompletionResult]::new('--only', '--only', [CompletionResultType]::ParameterName, 'Only these check ids or families (comma-separated: spf,dkim.record)')
            [CompletionResult]::new('--skip', '--skip', [CompletionResultType]::ParameterName, 'Skip these check ids or families (comma-separated)')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Seconds to wait for each DNS answer or SMTP reply')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--extra-ca', '--extra-ca', [CompletionResultType]::ParameterName, 'Also trust the CA certificates in this PEM file (a private CA, a lab) for the SMTP certificate and the MTA-STS policy fetch')
            [CompletionResult]::new('--smtp-port', '--smtp-port', [CompletionResultType]::ParameterName, 'Port the SMTP probe connects to (25 is what senders use; another port audits a lab or test server)')
            [CompletionResult]::new('--https-port', '--https-port', [CompletionResultType]::ParameterName, 'Port of the MTA-STS policy fetch (443 is what senders use)')
            [CompletionResult]::new('--connect-to', '--connect-to', [CompletionResultType]::ParameterName, 'Connect the SMTP probe to this IP instead of each MX address (a lab, or a server behind NAT); names, PTR and certificate checks still use the MX''s own address and name')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Audit every active domain in the database')
            [CompletionResult]::new('--no-connect', '--no-connect', [CompletionResultType]::ParameterName, 'Do not connect to the MX hosts (DNS checks only)')
            [CompletionResult]::new('--relay-test', '--relay-test', [CompletionResultType]::ParameterName, 'Also try to relay an outside address through each MX (never sends DATA)')
            [CompletionResult]::new('--fetch-policy', '--fetch-policy', [CompletionResultType]::ParameterName, 'Fetch the MTA-STS policy over HTTPS and compare it with the MX records')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;serve' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Run only these listeners, at these addresses (NAME = smtp, submission or submissions; repeatable; replaces [server.listen] entirely; port 0 picks a free port)')
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask this nameserver (IP or IP:PORT) instead of the system resolver')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--check-config', '--check-config', [CompletionResultType]::ParameterName, 'Check the configuration and the setup (TLS files, Maildir root, spool, LMTP, database) as the user the daemon runs as, list every problem and exit')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers')
            [CompletionResult]::new('flush', 'flush', [CompletionResultType]::ParameterValue, 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll')
            [CompletionResult]::new('hold', 'hold', [CompletionResultType]::ParameterValue, 'Hold a message: it is not delivered until released (a delivery already running finishes)')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'Release a held message')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a message from the queue (refused while a running serve is delivering it)')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts: messages by state, recipients by status, bytes, age of the oldest message')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;queue;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--body', '--body', [CompletionResultType]::ParameterName, 'Print the whole message instead of its header block')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;flush' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;hold' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;release' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--bounce', '--bounce', [CompletionResultType]::ParameterName, 'Send the sender a bounce naming every recipient not yet delivered')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;stats' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;queue;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers')
            [CompletionResult]::new('flush', 'flush', [CompletionResultType]::ParameterValue, 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll')
            [CompletionResult]::new('hold', 'hold', [CompletionResultType]::ParameterValue, 'Hold a message: it is not delivered until released (a delivery already running finishes)')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'Release a held message')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a message from the queue (refused while a running serve is delivering it)')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts: messages by state, recipients by status, bytes, age of the oldest message')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;queue;help;list' {
            break
        }
        'mailctl;queue;help;show' {
            break
        }
        'mailctl;queue;help;flush' {
            break
        }
        'mailctl;queue;help;hold' {
            break
        }
        'mailctl;queue;help;release' {
            break
        }
        'mailctl;queue;help;delete' {
            break
        }
        'mailctl;queue;help;stats' {
            break
        }
        'mailctl;queue;help;help' {
            break
        }
        'mailctl;relay' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Send DOMAIN''s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain''s route')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the routes (passwords are never shown)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Send DOMAIN''s mail as configured again ([server.outbound.relay] or the recipients'' MX hosts)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;relay;set' {
            [CompletionResult]::new('--tls', '--tls', [CompletionResultType]::ParameterName, '"required" (a verified certificate for HOST) or "none" (a relay on this machine only)')
            [CompletionResult]::new('--username', '--username', [CompletionResultType]::ParameterName, 'Log in as this user (AUTH PLAIN or LOGIN; the password is read from standard input)')
            [CompletionResult]::new('--spf-include', '--spf-include', [CompletionResultType]::ParameterName, 'The provider''s SPF include: domain, which `dns records` adds to the domain''s SPF record')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the AUTH password from the first line of standard input')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;relay;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;relay;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;relay;help' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Send DOMAIN''s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain''s route')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the routes (passwords are never shown)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Send DOMAIN''s mail as configured again ([server.outbound.relay] or the recipients'' MX hosts)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;relay;help;set' {
            break
        }
        'mailctl;relay;help;list' {
            break
        }
        'mailctl;relay;help;delete' {
            break
        }
        'mailctl;relay;help;help' {
            break
        }
        'mailctl;limits' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show the limits set for every scope')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Remove every limit of default, a domain or an address')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'What a mailbox sent this hour and today, against the limits in force and where each comes from')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;limits;set' {
            [CompletionResult]::new('--messages-per-hour', '--messages-per-hour', [CompletionResultType]::ParameterName, 'Messages per hour')
            [CompletionResult]::new('--recipients-per-day', '--recipients-per-day', [CompletionResultType]::ParameterName, 'Recipients per day')
            [CompletionResult]::new('--new-recipients-per-day', '--new-recipients-per-day', [CompletionResultType]::ParameterName, 'Recipients the sender never wrote to before, per day')
            [CompletionResult]::new('--unknown-recipients-per-day', '--unknown-recipients-per-day', [CompletionResultType]::ParameterName, 'Recipients other servers may refuse as unknown per day; beyond it the breaker turns SMTP off')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;limits;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;limits;delete' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;limits;usage' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;limits;help' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show the limits set for every scope')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Remove every limit of default, a domain or an address')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'What a mailbox sent this hour and today, against the limits in force and where each comes from')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;limits;help;set' {
            break
        }
        'mailctl;limits;help;show' {
            break
        }
        'mailctl;limits;help;delete' {
            break
        }
        'mailctl;limits;help;usage' {
            break
        }
        'mailctl;limits;help;help' {
            break
        }
        'mailctl;srs' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd''s secret file); older secrets keep verifying until every address they signed has expired (21 days)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the secrets by id and age (never the secrets themselves)')
            [CompletionResult]::new('forward', 'forward', [CompletionResultType]::ParameterValue, 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN')
            [CompletionResult]::new('reverse', 'reverse', [CompletionResultType]::ParameterValue, 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;srs;rotate' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--secret-stdin', '--secret-stdin', [CompletionResultType]::ParameterName, 'Read the secret from the first line of standard input instead of generating one')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;srs;list' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;srs;forward' {
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'The forwarding (hosted) domain')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;srs;reverse' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;srs;help' {
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd''s secret file); older secrets keep verifying until every address they signed has expired (21 days)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the secrets by id and age (never the secrets themselves)')
            [CompletionResult]::new('forward', 'forward', [CompletionResultType]::ParameterValue, 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN')
            [CompletionResult]::new('reverse', 'reverse', [CompletionResultType]::ParameterValue, 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;srs;help;rotate' {
            break
        }
        'mailctl;srs;help;list' {
            break
        }
        'mailctl;srs;help;forward' {
            break
        }
        'mailctl;srs;help;reverse' {
            break
        }
        'mailctl;srs;help;help' {
            break
        }
        'mailctl;reports' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List stored reports, oldest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one report with its records (DMARC) or results (TLS)')
            [CompletionResult]::new('summary', 'summary', [CompletionResultType]::ParameterValue, 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;reports;import' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;reports;list' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only reports whose period ended within this time (30d, 12h) or since this date (2026-11-01)')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Only reports about these domains')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--sent', '--sent', [CompletionResultType]::ParameterName, 'The reports this server sent to other domains instead (`reports send`, or serve''s daily run)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;reports;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;reports;summary' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Reports whose period ended within this time (7d, 12h) or since this date (2026-11-01)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output: table, json (same as --json) or nagios (one line and performance data)')
            [CompletionResult]::new('--warn', '--warn', [CompletionResultType]::ParameterName, 'WARNING when at least this share of own mail failed DMARC, or of TLS sessions failed')
            [CompletionResult]::new('--crit', '--crit', [CompletionResultType]::ParameterName, 'CRITICAL from this share on')
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask this nameserver for PTR names and the relay''s addresses (IP or IP:PORT; repeatable)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;reports;send' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'Ask this nameserver for the destinations'' authorization records (IP or IP:PORT; repeatable)')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--now', '--now', [CompletionResultType]::ParameterName, 'Include what was seen today (by default a report covers one whole UTC day and today''s waits for tomorrow, as `serve` does it)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be sent, build nothing and change nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;reports;help' {
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List stored reports, oldest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one report with its records (DMARC) or results (TLS)')
            [CompletionResult]::new('summary', 'summary', [CompletionResultType]::ParameterValue, 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;reports;help;import' {
            break
        }
        'mailctl;reports;help;list' {
            break
        }
        'mailctl;reports;help;show' {
            break
        }
        'mailctl;reports;help;summary' {
            break
        }
        'mailctl;reports;help;send' {
            break
        }
        'mailctl;reports;help;help' {
            break
        }
        'mailctl;bench' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('smtp', 'smtp', [CompletionResultType]::ParameterValue, 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency')
            [CompletionResult]::new('connections', 'connections', [CompletionResultType]::ParameterValue, 'Open many idle connections and hold them; report how many the server kept and its memory use')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;bench;smtp' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Recipient of every message')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'Sender of every message [default: the --auth user, else bench@bench.test]')
            [CompletionResult]::new('--sessions', '--sessions', [CompletionResultType]::ParameterName, 'Concurrent SMTP sessions')
            [CompletionResult]::new('--messages', '--messages', [CompletionResultType]::ParameterName, 'Messages to send in total')
            [CompletionResult]::new('--size', '--size', [CompletionResultType]::ParameterName, 'Size of each message in bytes (headers and body)')
            [CompletionResult]::new('--server-pid', '--server-pid', [CompletionResultType]::ParameterName, 'PID of the server: report its CPU time (user + system, from /proc) per accepted message')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Stop after this many seconds even if not every message was sent')
            [CompletionResult]::new('--log', '--log', [CompletionResultType]::ParameterName, 'Append "Message-ID reply" for every accepted message to FILE, each line written as it happens')
            [CompletionResult]::new('--auth', '--auth', [CompletionResultType]::ParameterName, 'Log in once per session with AUTH PLAIN after STARTTLS (implies --starttls), e.g. to benchmark a submission listener. The server''s certificate is NOT verified (this is a benchmark tool), so the password goes to whatever answers at ADDR: use it only against your own server and a test account')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--pipelining', '--pipelining', [CompletionResultType]::ParameterName, 'Send MAIL, RCPT and DATA in one write when the server offers PIPELINING')
            [CompletionResult]::new('--new-connection', '--new-connection', [CompletionResultType]::ParameterName, 'Open a new connection for every message (QUIT after each), as Postfix''s smtp-source does by default and most MX traffic arrives; without it each session sends all its messages over one connection')
            [CompletionResult]::new('--starttls', '--starttls', [CompletionResultType]::ParameterName, 'Start every session with STARTTLS (any certificate is accepted: this is a benchmark tool, not a mail client)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;bench;connections' {
            [CompletionResult]::new('--count', '--count', [CompletionResultType]::ParameterName, 'Connections to open')
            [CompletionResult]::new('--hold', '--hold', [CompletionResultType]::ParameterName, 'Seconds to hold them once all are open')
            [CompletionResult]::new('--batch', '--batch', [CompletionResultType]::ParameterName, 'Connections opened at once while ramping up')
            [CompletionResult]::new('--server-pid', '--server-pid', [CompletionResultType]::ParameterName, 'PID of the server, to report its VmRSS and VmHWM while the connections are held')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;bench;help' {
            [CompletionResult]::new('smtp', 'smtp', [CompletionResultType]::ParameterValue, 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency')
            [CompletionResult]::new('connections', 'connections', [CompletionResultType]::ParameterValue, 'Open many idle connections and hold them; report how many the server kept and its memory use')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;bench;help;smtp' {
            break
        }
        'mailctl;bench;help;connections' {
            break
        }
        'mailctl;bench;help;help' {
            break
        }
        'mailctl;cert' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the certificate in use: names, issuer, validity, renewal date, its key''s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)')
            [CompletionResult]::new('renew', 'renew', [CompletionResultType]::ParameterValue, 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;cert;status' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'DNS server for the name checks, IP[:PORT] [default: config dns.nameserver, else the system''s]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;cert;renew' {
            [CompletionResult]::new('--nameserver', '--nameserver', [CompletionResultType]::ParameterName, 'DNS server for the name checks and the CA, IP[:PORT] [default: config dns.nameserver]')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Seconds to wait for the running serve to finish the renewal')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Renew even when the certificate is not due')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;cert;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the certificate in use: names, issuer, validity, renewal date, its key''s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)')
            [CompletionResult]::new('renew', 'renew', [CompletionResultType]::ParameterValue, 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;cert;help;status' {
            break
        }
        'mailctl;cert;help;renew' {
            break
        }
        'mailctl;cert;help;help' {
            break
        }
        'mailctl;vacation' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Set (or replace) a mailbox''s auto-reply; the senders it answered before hear it again')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a mailbox''s auto-reply')
            [CompletionResult]::new('off', 'off', [CompletionResultType]::ParameterValue, 'Switch a mailbox''s auto-reply off')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;vacation;set' {
            [CompletionResult]::new('--subject', '--subject', [CompletionResultType]::ParameterName, 'Subject of the reply')
            [CompletionResult]::new('--body-file', '--body-file', [CompletionResultType]::ParameterName, 'File with the reply''s text (UTF-8); `-` reads standard input')
            [CompletionResult]::new('--from', '--from', [CompletionResultType]::ParameterName, 'First day of replies, YYYY-MM-DD (UTC) [default: now]')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Last day of replies, YYYY-MM-DD (UTC, through its end) [default: none]')
            [CompletionResult]::new('--interval', '--interval', [CompletionResultType]::ParameterName, 'Days before the same sender is answered again; 0 answers each sender once per vacation')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;vacation;show' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;vacation;off' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;vacation;help' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Set (or replace) a mailbox''s auto-reply; the senders it answered before hear it again')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a mailbox''s auto-reply')
            [CompletionResult]::new('off', 'off', [CompletionResultType]::ParameterValue, 'Switch a mailbox''s auto-reply off')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;vacation;help;set' {
            break
        }
        'mailctl;vacation;help;show' {
            break
        }
        'mailctl;vacation;help;off' {
            break
        }
        'mailctl;vacation;help;help' {
            break
        }
        'mailctl;checkpassword' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;import' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Check every row against the database and report, without changing anything')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;export' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format [default: csv, or json with --json]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;config' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('postfix', 'postfix', [CompletionResultType]::ParameterValue, 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them')
            [CompletionResult]::new('dovecot', 'dovecot', [CompletionResultType]::ParameterValue, 'Dovecot passdb/userdb SQL configuration')
            [CompletionResult]::new('systemd', 'systemd', [CompletionResultType]::ParameterValue, 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;config;postfix' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write the files into DIR (created if needed) instead of printing them')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;config;dovecot' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write the files into DIR (created if needed) instead of printing them')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;config;systemd' {
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Write mailctl.service into DIR (created if needed) instead of printing it')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'The dedicated system user (and group) the daemon runs as [default: server.user, else mailctl]')
            [CompletionResult]::new('--binary', '--binary', [CompletionResultType]::ParameterName, 'Absolute path of the mailctl binary the unit starts [default: this binary]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;config;help' {
            [CompletionResult]::new('postfix', 'postfix', [CompletionResultType]::ParameterValue, 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them')
            [CompletionResult]::new('dovecot', 'dovecot', [CompletionResultType]::ParameterValue, 'Dovecot passdb/userdb SQL configuration')
            [CompletionResult]::new('systemd', 'systemd', [CompletionResultType]::ParameterValue, 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;config;help;postfix' {
            break
        }
        'mailctl;config;help;dovecot' {
            break
        }
        'mailctl;config;help;systemd' {
            break
        }
        'mailctl;config;help;help' {
            break
        }
        'mailctl;db' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply pending schema migrations (also done automatically on first use)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the database, its schema version and pending migrations (changes nothing)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;db;migrate' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;db;status' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;db;help' {
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply pending schema migrations (also done automatically on first use)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the database, its schema version and pending migrations (changes nothing)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;db;help;migrate' {
            break
        }
        'mailctl;db;help;status' {
            break
        }
        'mailctl;db;help;help' {
            break
        }
        'mailctl;completions' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]')
            [CompletionResult]::new('--database-url', '--database-url', [CompletionResultType]::ParameterName, 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user''s data directory]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print data as JSON (one document per run) instead of tables')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print nothing but data and errors')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'mailctl;help' {
            [CompletionResult]::new('domain', 'domain', [CompletionResultType]::ParameterValue, 'Manage hosted domains')
            [CompletionResult]::new('mailbox', 'mailbox', [CompletionResultType]::ParameterValue, 'Manage mailboxes')
            [CompletionResult]::new('alias', 'alias', [CompletionResultType]::ParameterValue, 'Manage aliases, forwardings and catch-alls (@domain)')
            [CompletionResult]::new('alias-domain', 'alias-domain', [CompletionResultType]::ParameterValue, 'Manage alias domains (every address of one domain delivered to the same address of another)')
            [CompletionResult]::new('dkim', 'dkim', [CompletionResultType]::ParameterValue, 'DKIM keys: generate, rotate, publish, sign and verify')
            [CompletionResult]::new('dns', 'dns', [CompletionResultType]::ParameterValue, 'The DNS records a domain must publish')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)')
            [CompletionResult]::new('queue', 'queue', [CompletionResultType]::ParameterValue, 'Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats')
            [CompletionResult]::new('relay', 'relay', [CompletionResultType]::ParameterValue, 'Relay hosts (smarthosts) per sender domain: set, list, delete')
            [CompletionResult]::new('limits', 'limits', [CompletionResultType]::ParameterValue, 'Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show, delete, usage')
            [CompletionResult]::new('srs', 'srs', [CompletionResultType]::ParameterValue, 'SRS secrets for forwarded mail: rotate, list, forward, reverse')
            [CompletionResult]::new('reports', 'reports', [CompletionResultType]::ParameterValue, 'DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary')
            [CompletionResult]::new('bench', 'bench', [CompletionResultType]::ParameterValue, 'Load generators for measuring a running server')
            [CompletionResult]::new('cert', 'cert', [CompletionResultType]::ParameterValue, 'The listeners'' TLS certificate: status, renew (from the ACME CA of [server.acme])')
            [CompletionResult]::new('vacation', 'vacation', [CompletionResultType]::ParameterValue, 'Out-of-office auto-replies of mailboxes: set, show, off')
            [CompletionResult]::new('checkpassword', 'checkpassword', [CompletionResultType]::ParameterValue, 'Dovecot''s checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import domains, mailboxes and aliases from a CSV file, all or nothing')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Export every domain, mailbox and alias as CSV or JSON')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve')
            [CompletionResult]::new('db', 'db', [CompletionResultType]::ParameterValue, 'Database schema: migrate, status')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'mailctl;help;domain' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a hosted domain')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List hosted domains with their usage')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one domain with its limits and usage')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a domain''s description, limits or flags')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)')
            break
        }
        'mailctl;help;domain;add' {
            break
        }
        'mailctl;help;domain;list' {
            break
        }
        'mailctl;help;domain;show' {
            break
        }
        'mailctl;help;domain;update' {
            break
        }
        'mailctl;help;domain;delete' {
            break
        }
        'mailctl;help;mailbox' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add a mailbox (and its self-alias row, as postfixadmin does)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List mailboxes, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one mailbox')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a mailbox''s name, quota or flags')
            [CompletionResult]::new('passwd', 'passwd', [CompletionResultType]::ParameterValue, 'Set a new password')
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Let the mailbox receive mail and log in again')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Stop delivery and logins for the mailbox, keeping its mail')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the mailbox''s rows (its Maildir on disk is left for the admin to archive or remove)')
            [CompletionResult]::new('app-password', 'app-password', [CompletionResultType]::ParameterValue, 'Passwords for mail clients, several per mailbox (postfixadmin''s app passwords)')
            [CompletionResult]::new('totp', 'totp', [CompletionResultType]::ParameterValue, 'Restrict mail logins to app passwords (postfixadmin''s TOTP rule)')
            break
        }
        'mailctl;help;mailbox;add' {
            break
        }
        'mailctl;help;mailbox;list' {
            break
        }
        'mailctl;help;mailbox;show' {
            break
        }
        'mailctl;help;mailbox;update' {
            break
        }
        'mailctl;help;mailbox;passwd' {
            break
        }
        'mailctl;help;mailbox;enable' {
            break
        }
        'mailctl;help;mailbox;disable' {
            break
        }
        'mailctl;help;mailbox;delete' {
            break
        }
        'mailctl;help;mailbox;app-password' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an app password (one with the same description is replaced)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List a mailbox''s app passwords (never the passwords)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an app password by its id (from `list`)')
            break
        }
        'mailctl;help;mailbox;app-password;add' {
            break
        }
        'mailctl;help;mailbox;app-password;list' {
            break
        }
        'mailctl;help;mailbox;app-password;revoke' {
            break
        }
        'mailctl;help;mailbox;totp' {
            [CompletionResult]::new('enable', 'enable', [CompletionResultType]::ParameterValue, 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)')
            [CompletionResult]::new('disable', 'disable', [CompletionResultType]::ParameterValue, 'Remove the mailbox''s TOTP secret: its main password works for mail logins again')
            [CompletionResult]::new('exception', 'exception', [CompletionResultType]::ParameterValue, 'Client addresses from which a TOTP mailbox may still log in with its main password')
            break
        }
        'mailctl;help;mailbox;totp;enable' {
            break
        }
        'mailctl;help;mailbox;totp;disable' {
            break
        }
        'mailctl;help;mailbox;totp;exception' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Let IP use the main password: of one mailbox, of a domain''s mailboxes, or (without --for) of all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the exceptions')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an exception by its id (from `list`)')
            break
        }
        'mailctl;help;mailbox;totp;exception;add' {
            break
        }
        'mailctl;help;mailbox;totp;exception;list' {
            break
        }
        'mailctl;help;mailbox;totp;exception;delete' {
            break
        }
        'mailctl;help;alias' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Add an alias forwarding to one or more destinations; @domain makes a catch-all')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List aliases, all or of one domain')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one alias')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Replace an alias''s destinations and/or switch it on or off')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete an alias')
            break
        }
        'mailctl;help;alias;add' {
            break
        }
        'mailctl;help;alias;list' {
            break
        }
        'mailctl;help;alias;show' {
            break
        }
        'mailctl;help;alias;update' {
            break
        }
        'mailctl;help;alias;delete' {
            break
        }
        'mailctl;help;alias-domain' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List alias domains')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Remove an alias domain (and its domain row when it holds nothing else)')
            break
        }
        'mailctl;help;alias-domain;add' {
            break
        }
        'mailctl;help;alias-domain;list' {
            break
        }
        'mailctl;help;alias-domain;delete' {
            break
        }
        'mailctl;help;dkim' {
            [CompletionResult]::new('generate', 'generate', [CompletionResultType]::ParameterValue, 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List keys with their state; --check-dns also asks DNS whether each key is published')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Print a key''s DNS record (the active key unless --selector)')
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Generate a new pending key to replace the active one; publish it, then `dkim activate`')
            [CompletionResult]::new('activate', 'activate', [CompletionResultType]::ParameterValue, 'Make a key the signing key once DNS serves it; the previous key becomes retiring')
            [CompletionResult]::new('retire', 'retire', [CompletionResultType]::ParameterValue, 'Delete a pending or retiring key (its record can then leave DNS)')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)')
            [CompletionResult]::new('sign', 'sign', [CompletionResultType]::ParameterValue, 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Verify every DKIM-Signature of a message from standard input through DNS')
            break
        }
        'mailctl;help;dkim;generate' {
            break
        }
        'mailctl;help;dkim;list' {
            break
        }
        'mailctl;help;dkim;show' {
            break
        }
        'mailctl;help;dkim;rotate' {
            break
        }
        'mailctl;help;dkim;activate' {
            break
        }
        'mailctl;help;dkim;retire' {
            break
        }
        'mailctl;help;dkim;export' {
            break
        }
        'mailctl;help;dkim;import' {
            break
        }
        'mailctl;help;dkim;sign' {
            break
        }
        'mailctl;help;dkim;verify' {
            break
        }
        'mailctl;help;dns' {
            [CompletionResult]::new('records', 'records', [CompletionResultType]::ParameterValue, 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain')
            break
        }
        'mailctl;help;dns;records' {
            break
        }
        'mailctl;help;audit' {
            break
        }
        'mailctl;help;serve' {
            break
        }
        'mailctl;help;queue' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers')
            [CompletionResult]::new('flush', 'flush', [CompletionResultType]::ParameterValue, 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll')
            [CompletionResult]::new('hold', 'hold', [CompletionResultType]::ParameterValue, 'Hold a message: it is not delivered until released (a delivery already running finishes)')
            [CompletionResult]::new('release', 'release', [CompletionResultType]::ParameterValue, 'Release a held message')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a message from the queue (refused while a running serve is delivering it)')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Counts: messages by state, recipients by status, bytes, age of the oldest message')
            break
        }
        'mailctl;help;queue;list' {
            break
        }
        'mailctl;help;queue;show' {
            break
        }
        'mailctl;help;queue;flush' {
            break
        }
        'mailctl;help;queue;hold' {
            break
        }
        'mailctl;help;queue;release' {
            break
        }
        'mailctl;help;queue;delete' {
            break
        }
        'mailctl;help;queue;stats' {
            break
        }
        'mailctl;help;relay' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Send DOMAIN''s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain''s route')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the routes (passwords are never shown)')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Send DOMAIN''s mail as configured again ([server.outbound.relay] or the recipients'' MX hosts)')
            break
        }
        'mailctl;help;relay;set' {
            break
        }
        'mailctl;help;relay;list' {
            break
        }
        'mailctl;help;relay;delete' {
            break
        }
        'mailctl;help;limits' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show the limits set for every scope')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Remove every limit of default, a domain or an address')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'What a mailbox sent this hour and today, against the limits in force and where each comes from')
            break
        }
        'mailctl;help;limits;set' {
            break
        }
        'mailctl;help;limits;show' {
            break
        }
        'mailctl;help;limits;delete' {
            break
        }
        'mailctl;help;limits;usage' {
            break
        }
        'mailctl;help;srs' {
            [CompletionResult]::new('rotate', 'rotate', [CompletionResultType]::ParameterValue, 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd''s secret file); older secrets keep verifying until every address they signed has expired (21 days)')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the secrets by id and age (never the secrets themselves)')
            [CompletionResult]::new('forward', 'forward', [CompletionResultType]::ParameterValue, 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN')
            [CompletionResult]::new('reverse', 'reverse', [CompletionResultType]::ParameterValue, 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)')
            break
        }
        'mailctl;help;srs;rotate' {
            break
        }
        'mailctl;help;srs;list' {
            break
        }
        'mailctl;help;srs;forward' {
            break
        }
        'mailctl;help;srs;reverse' {
            break
        }
        'mailctl;help;reports' {
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List stored reports, oldest first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one report with its records (DMARC) or results (TLS)')
            [CompletionResult]::new('summary', 'summary', [CompletionResultType]::ParameterValue, 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)')
            [CompletionResult]::new('send', 'send', [CompletionResultType]::ParameterValue, 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one')
            break
        }
        'mailctl;help;reports;import' {
            break
        }
        'mailctl;help;reports;list' {
            break
        }
        'mailctl;help;reports;show' {
            break
        }
        'mailctl;help;reports;summary' {
            break
        }
        'mailctl;help;reports;send' {
            break
        }
        'mailctl;help;bench' {
            [CompletionResult]::new('smtp', 'smtp', [CompletionResultType]::ParameterValue, 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency')
            [CompletionResult]::new('connections', 'connections', [CompletionResultType]::ParameterValue, 'Open many idle connections and hold them; report how many the server kept and its memory use')
            break
        }
        'mailctl;help;bench;smtp' {
            break
        }
        'mailctl;help;bench;connections' {
            break
        }
        'mailctl;help;cert' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the certificate in use: names, issuer, validity, renewal date, its key''s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)')
            [CompletionResult]::new('renew', 'renew', [CompletionResultType]::ParameterValue, 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly')
            break
        }
        'mailctl;help;cert;status' {
            break
        }
        'mailctl;help;cert;renew' {
            break
        }
        'mailctl;help;vacation' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Set (or replace) a mailbox''s auto-reply; the senders it answered before hear it again')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a mailbox''s auto-reply')
            [CompletionResult]::new('off', 'off', [CompletionResultType]::ParameterValue, 'Switch a mailbox''s auto-reply off')
            break
        }
        'mailctl;help;vacation;set' {
            break
        }
        'mailctl;help;vacation;show' {
            break
        }
        'mailctl;help;vacation;off' {
            break
        }
        'mailctl;help;checkpassword' {
            break
        }
        'mailctl;help;import' {
            break
        }
        'mailctl;help;export' {
            break
        }
        'mailctl;help;config' {
            [CompletionResult]::new('postfix', 'postfix', [CompletionResultType]::ParameterValue, 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them')
            [CompletionResult]::new('dovecot', 'dovecot', [CompletionResultType]::ParameterValue, 'Dovecot passdb/userdb SQL configuration')
            [CompletionResult]::new('systemd', 'systemd', [CompletionResultType]::ParameterValue, 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user')
            break
        }
        'mailctl;help;config;postfix' {
            break
        }
        'mailctl;help;config;dovecot' {
            break
        }
        'mailctl;help;config;systemd' {
            break
        }
        'mailctl;help;db' {
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply pending schema migrations (also done automatically on first use)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the database, its schema version and pending migrations (changes nothing)')
            break
        }
        'mailctl;help;db;migrate' {
            break
        }
        'mailctl;help;db;status' {
            break
        }
        'mailctl;help;completions' {
            break
        }
        'mailctl;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
