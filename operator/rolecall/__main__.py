"""`python -m rolecall` runs the operator."""

from rolecall.main import main

main()
