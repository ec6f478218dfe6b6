"""The web console: server-rendered pages for MASH practitioners and auditors."""
