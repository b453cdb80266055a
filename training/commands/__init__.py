"""The `routerllm` subcommands, one module each: `add_command(subparsers)` adds its parser and sets `run`."""
