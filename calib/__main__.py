"""`python -m calib ...` runs the command line, as the `calib` console script does."""

from calib.cli import main

main()
