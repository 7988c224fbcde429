"""`python -m staffvoice`: the same as the `staffvoice` command."""

from staffvoice.cli import main

raise SystemExit(main())
