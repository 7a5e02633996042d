"""Stand-in of qubes-builderv2's `qubesbuilder` package (qubes-sim): only the configuration loader."""
