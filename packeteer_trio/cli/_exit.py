"""The exit codes every subcommand answers with (docs/cli.md lists them)."""

EXIT_OK = 0
EXIT_FAILURE = 1  # at run time: refused, peer gone, timed out
EXIT_USAGE = 2  # a bad option, value or URL: one line, nothing ran
EXIT_INTERRUPTED = 130  # Ctrl-C on a one-shot command (servers exit 0)
