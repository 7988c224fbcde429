"""The public pages for children and families: /families and /young-people."""
