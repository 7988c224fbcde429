"""Dashboard pages, one module each; each registers itself with `dashboard.page`."""
