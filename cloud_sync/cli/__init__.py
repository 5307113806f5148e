"""The `visual-search` command: one module per group of subcommands, wired together in `main`."""
