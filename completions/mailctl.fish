# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mailctl_global_optspecs
    string join \n config= database-url= json v/verbose q/quiet h/help V/version
end

function __fish_mailctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mailctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mailctl_using_subcommand
    set -l cmd (__fish_mailctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mailctl -n "__fish_mailctl_needs_command" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_needs_command" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_needs_command" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_needs_command" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_needs_command" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_needs_command" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "domain" -d 'Manage hosted domains'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "mailbox" -d 'Manage mailboxes'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "user" -d 'Manage mailboxes'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "alias" -d 'Manage aliases, forwardings and catch-alls (@domain)'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "alias-domain" -d 'Manage alias domains (every address of one domain delivered to the same address of another)'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "dkim" -d 'DKIM keys: generate, rotate, publish, sign and verify'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "dns" -d 'The DNS records a domain must publish'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "audit" -d 'Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "serve" -d 'Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "queue" -d 'Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "relay" -d 'Relay hosts (smarthosts) per sender domain: set, list, delete'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "limits" -d 'Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show, delete, usage'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "srs" -d 'SRS secrets for forwarded mail: rotate, list, forward, reverse'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "reports" -d 'DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "bench" -d 'Load generators for measuring a running server'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "cert" -d 'The listeners\' TLS certificate: status, renew (from the ACME CA of [server.acme])'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "vacation" -d 'Out-of-office auto-replies of mailboxes: set, show, off'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "checkpassword" -d 'Dovecot\'s checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "import" -d 'Import domains, mailboxes and aliases from a CSV file, all or nothing'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "export" -d 'Export every domain, mailbox and alias as CSV or JSON'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "config" -d 'Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "db" -d 'Database schema: migrate, status'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c mailctl -n "__fish_mailctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -f -a "add" -d 'Add a hosted domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -f -a "list" -d 'List hosted domains with their usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -f -a "show" -d 'Show one domain with its limits and usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -f -a "update" -d 'Change a domain\'s description, limits or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -f -a "delete" -d 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and not __fish_seen_subcommand_from add list show update delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l description -d 'Free-text description' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l max-mailboxes -d 'Most mailboxes allowed (0 unlimited, -1 none)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l max-aliases -d 'Most aliases allowed, catch-all included (0 unlimited, -1 none)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l max-quota-mb -d 'Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l domain-quota-mb -d 'Total quota of all mailboxes in MB (0 unlimited)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l backup-mx -d 'This server is only a backup MX for the domain (relays to the primary)' -r -f -a "true\t''
false\t''"
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l active -d 'Mark as active'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l inactive -d 'Mark as inactive (kept, but mail is not accepted or delivered)'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l description -d 'Free-text description' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l max-mailboxes -d 'Most mailboxes allowed (0 unlimited, -1 none)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l max-aliases -d 'Most aliases allowed, catch-all included (0 unlimited, -1 none)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l max-quota-mb -d 'Largest quota of one mailbox in MB (0 unlimited); new mailboxes get it by default' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l domain-quota-mb -d 'Total quota of all mailboxes in MB (0 unlimited)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l backup-mx -d 'This server is only a backup MX for the domain (relays to the primary)' -r -f -a "true\t''
false\t''"
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l active -d 'Mark as active'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l inactive -d 'Mark as inactive (kept, but mail is not accepted or delivered)'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -l force -d 'Also delete every mailbox, alias and alias-domain mapping of the domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a hosted domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from help" -f -a "list" -d 'List hosted domains with their usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one domain with its limits and usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a domain\'s description, limits or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)'
complete -c mailctl -n "__fish_mailctl_using_subcommand domain; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "add" -d 'Add a mailbox (and its self-alias row, as postfixadmin does)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "list" -d 'List mailboxes, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "show" -d 'Show one mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "update" -d 'Change a mailbox\'s name, quota or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "passwd" -d 'Set a new password'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "enable" -d 'Let the mailbox receive mail and log in again'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "disable" -d 'Stop delivery and logins for the mailbox, keeping its mail'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "delete" -d 'Delete the mailbox\'s rows (its Maildir on disk is left for the admin to archive or remove)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "app-password" -d 'Passwords for mail clients, several per mailbox (postfixadmin\'s app passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "totp" -d 'Restrict mail logins to app passwords (postfixadmin\'s TOTP rule)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l name -d 'Display name' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l quota-mb -d 'Quota in MB (0 unlimited) [default: the domain\'s max quota per mailbox]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l scheme -d 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l inactive -d 'Create it inactive'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l random-password -l random -d 'Generate a random password and print it once'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l name -d 'Display name' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l quota-mb -d 'Quota in MB (0 unlimited)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l smtp -d 'Allow (true) or refuse (false) SMTP AUTH for this mailbox' -r -f -a "true\t''
false\t''"
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l active -d 'Mark as active'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l inactive -d 'Mark as inactive (kept, but mail is not accepted or delivered)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -l scheme -d 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -l random-password -l random -d 'Generate a random password and print it once'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from passwd" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from enable" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from disable" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -f -a "add" -d 'Add an app password (one with the same description is replaced)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -f -a "list" -d 'List a mailbox\'s app passwords (never the passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -f -a "revoke" -d 'Revoke an app password by its id (from `list`)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from app-password" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -f -a "enable" -d 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -f -a "disable" -d 'Remove the mailbox\'s TOTP secret: its main password works for mail logins again'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -f -a "exception" -d 'Client addresses from which a TOTP mailbox may still log in with its main password'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from totp" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a mailbox (and its self-alias row, as postfixadmin does)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "list" -d 'List mailboxes, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a mailbox\'s name, quota or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "passwd" -d 'Set a new password'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Let the mailbox receive mail and log in again'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Stop delivery and logins for the mailbox, keeping its mail'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete the mailbox\'s rows (its Maildir on disk is left for the admin to archive or remove)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "app-password" -d 'Passwords for mail clients, several per mailbox (postfixadmin\'s app passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "totp" -d 'Restrict mail logins to app passwords (postfixadmin\'s TOTP rule)'
complete -c mailctl -n "__fish_mailctl_using_subcommand mailbox; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "add" -d 'Add a mailbox (and its self-alias row, as postfixadmin does)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "list" -d 'List mailboxes, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "show" -d 'Show one mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "update" -d 'Change a mailbox\'s name, quota or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "passwd" -d 'Set a new password'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "enable" -d 'Let the mailbox receive mail and log in again'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "disable" -d 'Stop delivery and logins for the mailbox, keeping its mail'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "delete" -d 'Delete the mailbox\'s rows (its Maildir on disk is left for the admin to archive or remove)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "app-password" -d 'Passwords for mail clients, several per mailbox (postfixadmin\'s app passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "totp" -d 'Restrict mail logins to app passwords (postfixadmin\'s TOTP rule)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and not __fish_seen_subcommand_from add list show update passwd enable disable delete app-password totp help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l name -d 'Display name' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l quota-mb -d 'Quota in MB (0 unlimited) [default: the domain\'s max quota per mailbox]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l scheme -d 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l inactive -d 'Create it inactive'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l random-password -l random -d 'Generate a random password and print it once'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l name -d 'Display name' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l quota-mb -d 'Quota in MB (0 unlimited)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l smtp -d 'Allow (true) or refuse (false) SMTP AUTH for this mailbox' -r -f -a "true\t''
false\t''"
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l active -d 'Mark as active'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l inactive -d 'Mark as inactive (kept, but mail is not accepted or delivered)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -l scheme -d 'Hash scheme: SHA512-CRYPT, BLF-CRYPT or ARGON2ID [default: config passwords.scheme or SHA512-CRYPT]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -l random-password -l random -d 'Generate a random password and print it once'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from passwd" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from enable" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from disable" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -f -a "add" -d 'Add an app password (one with the same description is replaced)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -f -a "list" -d 'List a mailbox\'s app passwords (never the passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -f -a "revoke" -d 'Revoke an app password by its id (from `list`)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from app-password" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -f -a "enable" -d 'Give the mailbox a new TOTP secret (printed once, with the otpauth:// URI for an authenticator app)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -f -a "disable" -d 'Remove the mailbox\'s TOTP secret: its main password works for mail logins again'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -f -a "exception" -d 'Client addresses from which a TOTP mailbox may still log in with its main password'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from totp" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a mailbox (and its self-alias row, as postfixadmin does)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "list" -d 'List mailboxes, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a mailbox\'s name, quota or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "passwd" -d 'Set a new password'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Let the mailbox receive mail and log in again'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Stop delivery and logins for the mailbox, keeping its mail'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete the mailbox\'s rows (its Maildir on disk is left for the admin to archive or remove)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "app-password" -d 'Passwords for mail clients, several per mailbox (postfixadmin\'s app passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "totp" -d 'Restrict mail logins to app passwords (postfixadmin\'s TOTP rule)'
complete -c mailctl -n "__fish_mailctl_using_subcommand user; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -f -a "add" -d 'Add an alias forwarding to one or more destinations; @domain makes a catch-all'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -f -a "list" -d 'List aliases, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -f -a "show" -d 'Show one alias'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -f -a "update" -d 'Replace an alias\'s destinations and/or switch it on or off'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -f -a "delete" -d 'Delete an alias'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and not __fish_seen_subcommand_from add list show update delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -l inactive -d 'Create it inactive'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -l all -d 'Also list mailboxes\' own alias rows (address = destination)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -l active -d 'Mark as active'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -l inactive -d 'Mark as inactive (kept, but mail is not accepted or delivered)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add an alias forwarding to one or more destinations; @domain makes a catch-all'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from help" -f -a "list" -d 'List aliases, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one alias'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from help" -f -a "update" -d 'Replace an alias\'s destinations and/or switch it on or off'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete an alias'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -f -a "add" -d 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -f -a "list" -d 'List alias domains'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -f -a "delete" -d 'Remove an alias domain (and its domain row when it holds nothing else)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and not __fish_seen_subcommand_from add list delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -l inactive -d 'Create the mapping inactive'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from help" -f -a "add" -d 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from help" -f -a "list" -d 'List alias domains'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Remove an alias domain (and its domain row when it holds nothing else)'
complete -c mailctl -n "__fish_mailctl_using_subcommand alias-domain; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "generate" -d 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "list" -d 'List keys with their state; --check-dns also asks DNS whether each key is published'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "show" -d 'Print a key\'s DNS record (the active key unless --selector)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "rotate" -d 'Generate a new pending key to replace the active one; publish it, then `dkim activate`'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "activate" -d 'Make a key the signing key once DNS serves it; the previous key becomes retiring'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "retire" -d 'Delete a pending or retiring key (its record can then leave DNS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "export" -d 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "import" -d 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "sign" -d 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "verify" -d 'Verify every DKIM-Signature of a message from standard input through DNS'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and not __fish_seen_subcommand_from generate list show rotate activate retire export import sign verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -l selector -d 'Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -l algorithm -d 'Key type' -r -f -a "rsa2048\t'RSA 2048 bits (rsa-sha256), the default: verified by every receiver'
rsa3072\t'RSA 3072 bits'
rsa4096\t'RSA 4096 bits (the TXT record needs several strings)'
ed25519\t'Ed25519 (RFC 8463); not every receiver verifies it yet, so pair it with an RSA key'"
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from generate" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -l nameserver -d 'Ask this nameserver (IP or IP:PORT) instead of the system resolver' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -l check-dns -d 'Look each key\'s record up in DNS and compare it with the key'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -l selector -d 'Selector [default: the active key]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -l format -d 'zone: BIND syntax, split in 255-byte strings; plain: name and value on two lines; json' -r -f -a "zone\t'BIND zone syntax'
json\t'JSON document'
plain\t'Record name and value on two lines'"
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -l selector -d 'Selector ([a-z0-9-]) [default: mYYYYMM, with a letter appended if taken]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -l algorithm -d 'Key type' -r -f -a "rsa2048\t'RSA 2048 bits (rsa-sha256), the default: verified by every receiver'
rsa3072\t'RSA 3072 bits'
rsa4096\t'RSA 4096 bits (the TXT record needs several strings)'
ed25519\t'Ed25519 (RFC 8463); not every receiver verifies it yet, so pair it with an RSA key'"
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from rotate" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -l nameserver -d 'Ask this nameserver (IP or IP:PORT) instead of the system resolver' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -l force -d 'Activate without checking DNS'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from activate" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from retire" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -l out -d 'File to write' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -l force -d 'Overwrite FILE if it exists'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -l key -d 'PEM file' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -l domain -d 'Domain whose key signs (d=)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -l selector -d 'Selector of the key [default: the active key]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from sign" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -l nameserver -d 'Ask this nameserver (IP or IP:PORT) instead of the system resolver' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "list" -d 'List keys with their state; --check-dns also asks DNS whether each key is published'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print a key\'s DNS record (the active key unless --selector)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Generate a new pending key to replace the active one; publish it, then `dkim activate`'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "activate" -d 'Make a key the signing key once DNS serves it; the previous key becomes retiring'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "retire" -d 'Delete a pending or retiring key (its record can then leave DNS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "import" -d 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "sign" -d 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Verify every DKIM-Signature of a message from standard input through DNS'
complete -c mailctl -n "__fish_mailctl_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -f -a "records" -d 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and not __fish_seen_subcommand_from records help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l format -d 'zone: a BIND zone fragment; json; table' -r -f -a "zone\t'BIND zone fragment'
json\t'JSON document'
table\t'Table'"
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l mx-host -d 'MX host name [default: config server.hostname, else mail.DOMAIN]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l ip -d 'Public IP of the mail server (repeat for several) [default: config server.public_ips]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l dmarc-policy -d 'DMARC policy for mail that fails' -r -f -a "none\t'Monitor only'
quarantine\t'Failing mail goes to spam'
reject\t'Failing mail is refused'"
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l report-address -d 'Address that receives DMARC and TLS-RPT reports [default: postmaster@DOMAIN]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l mta-sts-mode -d 'MTA-STS mode; start with testing, move to enforce once TLS reports are clean [default: [server.https] mta_sts_mode, else testing]' -r -f -a "testing\t'Senders report failures but still deliver'
enforce\t'Senders refuse to deliver without valid TLS'"
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from records" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from help" -f -a "records" -d 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand dns; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l nameserver -d 'Ask these nameservers (IP or IP:PORT, repeatable) instead of the system resolver' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l ip -d 'An outbound IP of your server (repeatable) [default: config server.public_ips]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l selector -d 'A DKIM selector to check (repeatable) [default: the database\'s keys, else common selectors]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l rbl -d 'An IP blocklist zone (repeatable; replaces the defaults: zen.spamhaus.org, bl.spamcop.net, b.barracudacentral.org, psbl.surriel.com)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l dbl -d 'A domain blocklist zone (repeatable; replaces the default dbl.spamhaus.org)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l only -d 'Only these check ids or families (comma-separated: spf,dkim.record)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l skip -d 'Skip these check ids or families (comma-separated)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l timeout -d 'Seconds to wait for each DNS answer or SMTP reply' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l format -d 'Output format' -r -f -a "text\t'A report: one line per finding, grouped by family, worst first; then the fixes, whole; then the verdict'
table\t'One row per finding and a summary, as a table'
json\t'One document with every finding of every domain'
nagios\t'One monitoring-plugin line with perfdata'"
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l extra-ca -d 'Also trust the CA certificates in this PEM file (a private CA, a lab) for the SMTP certificate and the MTA-STS policy fetch' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l smtp-port -d 'Port the SMTP probe connects to (25 is what senders use; another port audits a lab or test server)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l https-port -d 'Port of the MTA-STS policy fetch (443 is what senders use)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l connect-to -d 'Connect the SMTP probe to this IP instead of each MX address (a lab, or a server behind NAT); names, PTR and certificate checks still use the MX\'s own address and name' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l all -d 'Audit every active domain in the database'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l no-connect -d 'Do not connect to the MX hosts (DNS checks only)'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l relay-test -d 'Also try to relay an outside address through each MX (never sends DATA)'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l fetch-policy -d 'Fetch the MTA-STS policy over HTTPS and compare it with the MX records'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand audit" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -l listen -d 'Run only these listeners, at these addresses (NAME = smtp, submission or submissions; repeatable; replaces [server.listen] entirely; port 0 picks a free port)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -l nameserver -d 'Ask this nameserver (IP or IP:PORT) instead of the system resolver' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -l check-config -d 'Check the configuration and the setup (TLS files, Maildir root, spool, LMTP, database) as the user the daemon runs as, list every problem and exit'
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand serve" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "list" -d 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "show" -d 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "flush" -d 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "hold" -d 'Hold a message: it is not delivered until released (a delivery already running finishes)'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "release" -d 'Release a held message'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "delete" -d 'Delete a message from the queue (refused while a running serve is delivering it)'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "stats" -d 'Counts: messages by state, recipients by status, bytes, age of the oldest message'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and not __fish_seen_subcommand_from list show flush hold release delete stats help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -l body -d 'Print the whole message instead of its header block'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from flush" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from hold" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from release" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -l bounce -d 'Send the sender a bounce naming every recipient not yet delivered'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from stats" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "list" -d 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "flush" -d 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "hold" -d 'Hold a message: it is not delivered until released (a delivery already running finishes)'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "release" -d 'Release a held message'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a message from the queue (refused while a running serve is delivering it)'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "stats" -d 'Counts: messages by state, recipients by status, bytes, age of the oldest message'
complete -c mailctl -n "__fish_mailctl_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -f -a "set" -d 'Send DOMAIN\'s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain\'s route'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -f -a "list" -d 'List the routes (passwords are never shown)'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -f -a "delete" -d 'Send DOMAIN\'s mail as configured again ([server.outbound.relay] or the recipients\' MX hosts)'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and not __fish_seen_subcommand_from set list delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l tls -d '"required" (a verified certificate for HOST) or "none" (a relay on this machine only)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l username -d 'Log in as this user (AUTH PLAIN or LOGIN; the password is read from standard input)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l spf-include -d 'The provider\'s SPF include: domain, which `dns records` adds to the domain\'s SPF record' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l password-stdin -d 'Read the AUTH password from the first line of standard input'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from help" -f -a "set" -d 'Send DOMAIN\'s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain\'s route'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the routes (passwords are never shown)'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Send DOMAIN\'s mail as configured again ([server.outbound.relay] or the recipients\' MX hosts)'
complete -c mailctl -n "__fish_mailctl_using_subcommand relay; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -f -a "set" -d 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -f -a "show" -d 'Show the limits set for every scope'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -f -a "delete" -d 'Remove every limit of default, a domain or an address'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -f -a "usage" -d 'What a mailbox sent this hour and today, against the limits in force and where each comes from'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and not __fish_seen_subcommand_from set show delete usage help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l messages-per-hour -d 'Messages per hour' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l recipients-per-day -d 'Recipients per day' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l new-recipients-per-day -d 'Recipients the sender never wrote to before, per day' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l unknown-recipients-per-day -d 'Recipients other servers may refuse as unknown per day; beyond it the breaker turns SMTP off' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from usage" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the limits set for every scope'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Remove every limit of default, a domain or an address'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from help" -f -a "usage" -d 'What a mailbox sent this hour and today, against the limits in force and where each comes from'
complete -c mailctl -n "__fish_mailctl_using_subcommand limits; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -f -a "rotate" -d 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd\'s secret file); older secrets keep verifying until every address they signed has expired (21 days)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -f -a "list" -d 'List the secrets by id and age (never the secrets themselves)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -f -a "forward" -d 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -f -a "reverse" -d 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and not __fish_seen_subcommand_from rotate list forward reverse help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -l secret-stdin -d 'Read the secret from the first line of standard input instead of generating one'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from rotate" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -l domain -d 'The forwarding (hosted) domain' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from forward" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from reverse" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd\'s secret file); older secrets keep verifying until every address they signed has expired (21 days)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the secrets by id and age (never the secrets themselves)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from help" -f -a "forward" -d 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from help" -f -a "reverse" -d 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)'
complete -c mailctl -n "__fish_mailctl_using_subcommand srs; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -f -a "import" -d 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -f -a "list" -d 'List stored reports, oldest first'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -f -a "show" -d 'Show one report with its records (DMARC) or results (TLS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -f -a "summary" -d 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -f -a "send" -d 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and not __fish_seen_subcommand_from import list show summary send help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -l since -d 'Only reports whose period ended within this time (30d, 12h) or since this date (2026-11-01)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -l domain -d 'Only reports about these domains' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -l sent -d 'The reports this server sent to other domains instead (`reports send`, or serve\'s daily run)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l since -d 'Reports whose period ended within this time (7d, 12h) or since this date (2026-11-01)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l format -d 'Output: table, json (same as --json) or nagios (one line and performance data)' -r -f -a "table\t'Human-readable tables'
json\t'One JSON document'
nagios\t'A monitoring plugin line with performance data'"
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l warn -d 'WARNING when at least this share of own mail failed DMARC, or of TLS sessions failed' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l crit -d 'CRITICAL from this share on' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l nameserver -d 'Ask this nameserver for PTR names and the relay\'s addresses (IP or IP:PORT; repeatable)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from summary" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -l nameserver -d 'Ask this nameserver for the destinations\' authorization records (IP or IP:PORT; repeatable)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -l now -d 'Include what was seen today (by default a report covers one whole UTC day and today\'s waits for tomorrow, as `serve` does it)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -l dry-run -d 'Show what would be sent, build nothing and change nothing'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from send" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from help" -f -a "import" -d 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from help" -f -a "list" -d 'List stored reports, oldest first'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one report with its records (DMARC) or results (TLS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from help" -f -a "summary" -d 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from help" -f -a "send" -d 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one'
complete -c mailctl -n "__fish_mailctl_using_subcommand reports; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -f -a "smtp" -d 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -f -a "connections" -d 'Open many idle connections and hold them; report how many the server kept and its memory use'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and not __fish_seen_subcommand_from smtp connections help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l to -d 'Recipient of every message' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l from -d 'Sender of every message [default: the --auth user, else bench@bench.test]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l sessions -d 'Concurrent SMTP sessions' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l messages -d 'Messages to send in total' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l size -d 'Size of each message in bytes (headers and body)' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l server-pid -d 'PID of the server: report its CPU time (user + system, from /proc) per accepted message' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l duration -d 'Stop after this many seconds even if not every message was sent' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l log -d 'Append "Message-ID reply" for every accepted message to FILE, each line written as it happens' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l auth -d 'Log in once per session with AUTH PLAIN after STARTTLS (implies --starttls), e.g. to benchmark a submission listener. The server\'s certificate is NOT verified (this is a benchmark tool), so the password goes to whatever answers at ADDR: use it only against your own server and a test account' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l pipelining -d 'Send MAIL, RCPT and DATA in one write when the server offers PIPELINING'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l new-connection -d 'Open a new connection for every message (QUIT after each), as Postfix\'s smtp-source does by default and most MX traffic arrives; without it each session sends all its messages over one connection'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l starttls -d 'Start every session with STARTTLS (any certificate is accepted: this is a benchmark tool, not a mail client)'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from smtp" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l count -d 'Connections to open' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l hold -d 'Seconds to hold them once all are open' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l batch -d 'Connections opened at once while ramping up' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l server-pid -d 'PID of the server, to report its VmRSS and VmHWM while the connections are held' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from connections" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "smtp" -d 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "connections" -d 'Open many idle connections and hold them; report how many the server kept and its memory use'
complete -c mailctl -n "__fish_mailctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -f -a "status" -d 'Show the certificate in use: names, issuer, validity, renewal date, its key\'s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -f -a "renew" -d 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and not __fish_seen_subcommand_from status renew help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -l nameserver -d 'DNS server for the name checks, IP[:PORT] [default: config dns.nameserver, else the system\'s]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -l nameserver -d 'DNS server for the name checks and the CA, IP[:PORT] [default: config dns.nameserver]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -l wait -d 'Seconds to wait for the running serve to finish the renewal' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -l force -d 'Renew even when the certificate is not due'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from renew" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show the certificate in use: names, issuer, validity, renewal date, its key\'s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "renew" -d 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly'
complete -c mailctl -n "__fish_mailctl_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -f -a "set" -d 'Set (or replace) a mailbox\'s auto-reply; the senders it answered before hear it again'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -f -a "show" -d 'Show a mailbox\'s auto-reply'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -f -a "off" -d 'Switch a mailbox\'s auto-reply off'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and not __fish_seen_subcommand_from set show off help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l subject -d 'Subject of the reply' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l body-file -d 'File with the reply\'s text (UTF-8); `-` reads standard input' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l from -d 'First day of replies, YYYY-MM-DD (UTC) [default: now]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l until -d 'Last day of replies, YYYY-MM-DD (UTC, through its end) [default: none]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l interval -d 'Days before the same sender is answered again; 0 answers each sender once per vacation' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from off" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set (or replace) a mailbox\'s auto-reply; the senders it answered before hear it again'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a mailbox\'s auto-reply'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from help" -f -a "off" -d 'Switch a mailbox\'s auto-reply off'
complete -c mailctl -n "__fish_mailctl_using_subcommand vacation; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand checkpassword" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -l dry-run -d 'Check every row against the database and report, without changing anything'
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand import" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -l format -d 'Output format [default: csv, or json with --json]' -r -f -a "csv\t'The import layout (README), with password hashes'
json\t'One JSON document with domains, alias_domains, mailboxes and aliases'"
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand export" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -f -a "postfix" -d 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -f -a "dovecot" -d 'Dovecot passdb/userdb SQL configuration'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -f -a "systemd" -d 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and not __fish_seen_subcommand_from postfix dovecot systemd help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -l out -d 'Write the files into DIR (created if needed) instead of printing them' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from postfix" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -l out -d 'Write the files into DIR (created if needed) instead of printing them' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from dovecot" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -l out -d 'Write mailctl.service into DIR (created if needed) instead of printing it' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -l user -d 'The dedicated system user (and group) the daemon runs as [default: server.user, else mailctl]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -l binary -d 'Absolute path of the mailctl binary the unit starts [default: this binary]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from systemd" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "postfix" -d 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "dovecot" -d 'Dovecot passdb/userdb SQL configuration'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "systemd" -d 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user'
complete -c mailctl -n "__fish_mailctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -f -a "migrate" -d 'Apply pending schema migrations (also done automatically on first use)'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -f -a "status" -d 'Show the database, its schema version and pending migrations (changes nothing)'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and not __fish_seen_subcommand_from migrate status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "migrate" -d 'Apply pending schema migrations (also done automatically on first use)'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show the database, its schema version and pending migrations (changes nothing)'
complete -c mailctl -n "__fish_mailctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -l config -d 'Config file (TOML) [default: /etc/mailctl/mailctl.toml when it exists]' -r -F
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -l database-url -d 'Database URL: sqlite:///path/file.db or mysql://user:pass@host:3306/db [env: MAILCTL_DATABASE_URL] [default: a SQLite file in the user\'s data directory]' -r
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -l json -d 'Print data as JSON (one document per run) instead of tables'
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -s v -l verbose -d 'Print more detail on stderr'
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -s q -l quiet -d 'Print nothing but data and errors'
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c mailctl -n "__fish_mailctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "domain" -d 'Manage hosted domains'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "mailbox" -d 'Manage mailboxes'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "alias" -d 'Manage aliases, forwardings and catch-alls (@domain)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "alias-domain" -d 'Manage alias domains (every address of one domain delivered to the same address of another)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "dkim" -d 'DKIM keys: generate, rotate, publish, sign and verify'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "dns" -d 'The DNS records a domain must publish'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "audit" -d 'Check domains the way a receiving mail server does (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "serve" -d 'Run the mail server: inbound MX, submission, local delivery (SIGTERM stops, SIGHUP reloads TLS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "queue" -d 'Inspect and manage the outbound queue: list, show, flush, hold, release, delete, stats'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "relay" -d 'Relay hosts (smarthosts) per sender domain: set, list, delete'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "limits" -d 'Sending limits of logged-in users (default, per domain, per mailbox) and the breaker: set, show, delete, usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "srs" -d 'SRS secrets for forwarded mail: rotate, list, forward, reverse'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "reports" -d 'DMARC aggregate and TLS reports receivers sent about the hosted domains: import, list, show, summary'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "bench" -d 'Load generators for measuring a running server'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "cert" -d 'The listeners\' TLS certificate: status, renew (from the ACME CA of [server.acme])'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "vacation" -d 'Out-of-office auto-replies of mailboxes: set, show, off'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "checkpassword" -d 'Dovecot\'s checkpassword passdb for app passwords (run by Dovecot: see `config dovecot`)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "import" -d 'Import domains, mailboxes and aliases from a CSV file, all or nothing'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "export" -d 'Export every domain, mailbox and alias as CSV or JSON'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "config" -d 'Generate configuration: Postfix lookup maps, Dovecot SQL, the systemd unit for serve'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "db" -d 'Database schema: migrate, status'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and not __fish_seen_subcommand_from domain mailbox alias alias-domain dkim dns audit serve queue relay limits srs reports bench cert vacation checkpassword import export config db completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from domain" -f -a "add" -d 'Add a hosted domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from domain" -f -a "list" -d 'List hosted domains with their usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from domain" -f -a "show" -d 'Show one domain with its limits and usage'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from domain" -f -a "update" -d 'Change a domain\'s description, limits or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from domain" -f -a "delete" -d 'Delete a domain (refused while it holds mailboxes or aliases, unless --force)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "add" -d 'Add a mailbox (and its self-alias row, as postfixadmin does)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "list" -d 'List mailboxes, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "show" -d 'Show one mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "update" -d 'Change a mailbox\'s name, quota or flags'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "passwd" -d 'Set a new password'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "enable" -d 'Let the mailbox receive mail and log in again'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "disable" -d 'Stop delivery and logins for the mailbox, keeping its mail'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "delete" -d 'Delete the mailbox\'s rows (its Maildir on disk is left for the admin to archive or remove)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "app-password" -d 'Passwords for mail clients, several per mailbox (postfixadmin\'s app passwords)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from mailbox" -f -a "totp" -d 'Restrict mail logins to app passwords (postfixadmin\'s TOTP rule)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias" -f -a "add" -d 'Add an alias forwarding to one or more destinations; @domain makes a catch-all'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias" -f -a "list" -d 'List aliases, all or of one domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias" -f -a "show" -d 'Show one alias'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias" -f -a "update" -d 'Replace an alias\'s destinations and/or switch it on or off'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias" -f -a "delete" -d 'Delete an alias'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias-domain" -f -a "add" -d 'Deliver every address of ALIAS_DOMAIN to the same address in TARGET_DOMAIN'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias-domain" -f -a "list" -d 'List alias domains'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from alias-domain" -f -a "delete" -d 'Remove an alias domain (and its domain row when it holds nothing else)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "generate" -d 'Generate a key for a domain (the signing key if it has none yet, else pending) and print its TXT record'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "list" -d 'List keys with their state; --check-dns also asks DNS whether each key is published'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "show" -d 'Print a key\'s DNS record (the active key unless --selector)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "rotate" -d 'Generate a new pending key to replace the active one; publish it, then `dkim activate`'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "activate" -d 'Make a key the signing key once DNS serves it; the previous key becomes retiring'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "retire" -d 'Delete a pending or retiring key (its record can then leave DNS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "export" -d 'Write a private key as PEM (mode 0600) for another signer such as OpenDKIM or rspamd'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "import" -d 'Adopt an existing private key (RSA or Ed25519 PEM, PKCS#8 or PKCS#1)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "sign" -d 'Sign a message from standard input and write it, signed, to standard output (CRLF line ends)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "verify" -d 'Verify every DKIM-Signature of a message from standard input through DNS'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from dns" -f -a "records" -d 'Print MX, A/AAAA, SPF, DKIM, DMARC, MTA-STS, TLS-RPT and PTR records for a domain'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "list" -d 'List queued messages: id, sender, pending recipients, size, age, attempts, next attempt, last error, state'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "show" -d 'Show one message: envelope, DKIM, per-recipient status, lease, and its headers'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "flush" -d 'Make one message, or all, due now (retry now); a running serve picks them up at its next poll'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "hold" -d 'Hold a message: it is not delivered until released (a delivery already running finishes)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "release" -d 'Release a held message'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "delete" -d 'Delete a message from the queue (refused while a running serve is delivering it)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "stats" -d 'Counts: messages by state, recipients by status, bytes, age of the oldest message'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from relay" -f -a "set" -d 'Send DOMAIN\'s outbound mail through the relay at URL (smtp://HOST[:PORT] for STARTTLS, default port 587; smtps://HOST[:PORT] for implicit TLS, 465); replaces the domain\'s route'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from relay" -f -a "list" -d 'List the routes (passwords are never shown)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from relay" -f -a "delete" -d 'Send DOMAIN\'s mail as configured again ([server.outbound.relay] or the recipients\' MX hosts)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from limits" -f -a "set" -d 'Set the sending limits of default, a domain or an address (only the kinds given change; none removes one). Over a limit a logged-in user gets 450 4.7.1; at ten times the hourly limit in one hour the breaker turns SMTP off for the mailbox'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from limits" -f -a "show" -d 'Show the limits set for every scope'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from limits" -f -a "delete" -d 'Remove every limit of default, a domain or an address'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from limits" -f -a "usage" -d 'What a mailbox sent this hour and today, against the limits in force and where each comes from'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from srs" -f -a "rotate" -d 'Add a new signing secret (random, or the first line of standard input, e.g. postsrsd\'s secret file); older secrets keep verifying until every address they signed has expired (21 days)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from srs" -f -a "list" -d 'List the secrets by id and age (never the secrets themselves)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from srs" -f -a "forward" -d 'Print the address serve would use as MAIL FROM when it forwards mail from SENDER for DOMAIN'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from srs" -f -a "reverse" -d 'Print the address an SRS address of ours leads back to (exit 1 when forged, expired or silent)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from reports" -f -a "import" -d 'Import reports from files: report XML/JSON (also .gz and .zip), mail messages (.eml), Maildir folders, mbox files, or - for standard input. A report stored before is left as it is'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from reports" -f -a "list" -d 'List stored reports, oldest first'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from reports" -f -a "show" -d 'Show one report with its records (DMARC) or results (TLS)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from reports" -f -a "summary" -d 'What the reports say per domain: sources, pass rates, dispositions, failing sources and their likely cause, TLS failures (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: no reports)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from reports" -f -a "send" -d 'Send the reports due: DMARC aggregate reports to the domains whose mail serve received and that ask for them (rua=), TLS reports to the domains serve delivered to that ask for them (_smtp._tls); built per domain and UTC day, DKIM-signed and queued for serve to deliver (serve does this by itself daily); exit 1 when the queue did not take one'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "smtp" -d 'Send messages over concurrent SMTP sessions; report throughput and end-of-DATA latency'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "connections" -d 'Open many idle connections and hold them; report how many the server kept and its memory use'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "status" -d 'Show the certificate in use: names, issuer, validity, renewal date, its key\'s TLSA 3 1 1 value, and the last ACME attempt (exit 1 on the placeholder, an expired certificate, or a due renewal that failed)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "renew" -d 'Obtain a new certificate from the ACME CA now if it is due (names changed, or within renew_days of expiry), through the running serve or, when none holds the challenge port, directly'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from vacation" -f -a "set" -d 'Set (or replace) a mailbox\'s auto-reply; the senders it answered before hear it again'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from vacation" -f -a "show" -d 'Show a mailbox\'s auto-reply'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from vacation" -f -a "off" -d 'Switch a mailbox\'s auto-reply off'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "postfix" -d 'Postfix lookup maps (mysql: or sqlite:) and the main.cf lines that use them'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "dovecot" -d 'Dovecot passdb/userdb SQL configuration'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "systemd" -d 'A hardened systemd unit (mailctl.service) that runs `mailctl serve` as a dedicated user'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "migrate" -d 'Apply pending schema migrations (also done automatically on first use)'
complete -c mailctl -n "__fish_mailctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "status" -d 'Show the database, its schema version and pending migrations (changes nothing)'
