"""Stand-in of qubes-builderv2-github's `githubbuilder` package (qubes-sim)."""
