"""Command-line entry points (argparse and ``main``): nothing in the library imports this package."""
