"""People, teams, roles and how to reach them."""
