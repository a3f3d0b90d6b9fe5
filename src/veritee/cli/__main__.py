"""`python -m veritee.cli` runs the command line."""

from veritee.cli.main import main

main()
