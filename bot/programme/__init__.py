"""The programme file: one YAML document describing a change programme as data."""
