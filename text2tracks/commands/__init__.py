"""Subcommands of the `text2tracks` command line."""
