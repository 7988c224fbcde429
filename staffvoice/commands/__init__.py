"""One module per `staffvoice` command; each adds itself to the parser with `add_to`."""
