"""The web surface beside the chat adapters: shared site machinery (templates, security
headers, sessions, CSRF) and the dashboard under /app/. Application layer: uses bot/ and
storage/, never imported by them."""
