import click
@click.group()
def cli():
    """synthaug"""
