"""`python -m synthaug_cli` runs the command line."""
from synthaug_cli.main import cli

cli(prog_name="synthaug")
