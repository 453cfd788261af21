"""Client programs of the server, not parts of it: the load tester and its report, the hot-path benchmark,
the IoT device agent. They use the SDK (or the core directly, for the benchmark); nothing in the server
imports them, only the CLI's subcommands do."""
