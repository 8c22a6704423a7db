"""synthaug command line."""
