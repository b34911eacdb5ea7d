"""`python -m builder ...` is `lvs-builder ...` (the lab runs its helpers this way)."""

from .cli import main

main()
